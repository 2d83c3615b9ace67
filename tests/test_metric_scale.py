"""Metrics do not depend on the intensity units; undefined metrics never reach the tables.

Scanner k-space comes in arbitrary units: multiplying reconstruction and target (or the
k-space a method reconstructs from) by a common positive factor must leave PSNR, SSIM,
NMSE, HaarPSI and the dynamic-region metrics unchanged, in float32 as in float64, from
1e-20 to 1e20. A metric that is still not finite (an all-zero target) stops ``evaluate``
with a DataError naming the slice and metric instead of being written as NaN.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from cinerecon.errors import DataError
from cinerecon.evaluate import metrics as M
from cinerecon.evaluate.dynamic import region_metrics
from test_evaluate_cli import W, zero_filled
from test_evaluate_cli import _sample as _slice

SCALES = (1e-20, 1e-17, 1e-15, 1e-12, 1e-9, 1e-8, 1e12, 1e15, 1e20)


def _noisy_pair(dtype=torch.complex64, seed=0, t=4, h=48, w=40):
    """A bright disc on a background (target) and the target plus complex noise (reconstruction)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    r = torch.linspace(0.3, 0.5, t)[:, None, None]
    img = (xx**2 + yy**2 < r**2).double() + 0.3 + 0.05 * torch.rand(t, h, w, generator=g, dtype=torch.float64)
    tgt = img * torch.exp(1j * 0.3 * xx.double())
    rec = tgt + 0.1 * torch.randn(t, h, w, generator=g, dtype=torch.complex128)
    return rec.to(dtype), tgt.to(dtype)


def _assert_same(got: M.Metrics, want: M.Metrics, rel: float, what: str):
    assert got.names() == want.names()
    for n in want.names():
        a, b = got.get(n).double(), want.get(n).double()
        assert bool(torch.isfinite(a).all()), f"{what}: {n} = {a}"
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rel, atol=0, err_msg=f"{what}: {n}")


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("protocol", ["paper", "global", "cmrxrecon"])
def test_series_and_frame_metrics_do_not_depend_on_the_intensity_scale(protocol, dtype):
    rec, tgt = _noisy_pair(dtype)
    want = M.series_metrics(rec, tgt, protocol)
    want_frames = M.frame_metrics(rec, tgt, protocol)
    assert 0.3 < float(want.ssim) < 0.95 and 10 < float(want.psnr) < 40  # a real, imperfect pair
    # in single precision (complex64 input, or the cmrxrecon protocol's float32) a harmless
    # factor such as 3 already moves a frame's SSIM by ~1e-5 (rounding of mxx - mx^2): allow 5e-5
    single = dtype == torch.complex64 or protocol == "cmrxrecon"
    for s in SCALES:
        _assert_same(M.series_metrics(s * rec, s * tgt, protocol), want, 1e-5 if single else 1e-9,
                     f"{protocol} {dtype} x{s:g}")
        _assert_same(M.frame_metrics(s * rec, s * tgt, protocol), want_frames, 5e-5 if single else 1e-9,
                     f"{protocol} {dtype} frames x{s:g}")


@pytest.mark.parametrize("protocol", ["paper", "global"])
def test_dynamic_region_metrics_do_not_depend_on_the_intensity_scale(protocol):
    rec, tgt = _noisy_pair(torch.complex64)
    want = region_metrics(rec, tgt, protocol)
    for s in SCALES:
        got = region_metrics(s * rec, s * tgt, protocol)
        for f in ("psnr_dynamic", "psnr_static", "ssim_dynamic", "ssim_static", "fraction"):
            a, b = float(getattr(got, f)), float(getattr(want, f))
            assert a == pytest.approx(b, rel=1e-5), f"{protocol} x{s:g}: {f} {a} != {b}"


def test_error_free_dynamic_region_is_capped_at_every_scale():
    """An error-free region scores the same finite cap (MSE floored relative to the data range)."""
    _, tgt = _noisy_pair(torch.complex128)
    tgt = tgt.abs()
    rec = tgt.clone()
    rec[:, 40:, :] += 0.05  # an error far from the moving disc only
    want = region_metrics(rec, tgt, "global")
    assert 200 < float(want.psnr_dynamic) < math.inf
    for s in (1e-20, 1e-9, 1e20):
        got = region_metrics(s * rec, s * tgt, "global")
        assert float(got.psnr_dynamic) == pytest.approx(float(want.psnr_dynamic), rel=1e-9)
        assert float(got.psnr_static) == pytest.approx(float(want.psnr_static), rel=1e-9)


@pytest.mark.parametrize("s", [1e-20, 1e-12, 1e12, 1e20])
def test_low_level_metrics_with_a_scaled_data_range_in_float32(s):
    rec, tgt = _noisy_pair(torch.complex128)
    x, y = rec.abs()[0].float(), tgt.abs()[0].float()
    r = float(y.max())
    for fn, cfg in ((M.psnr, None), (M.ssim, M.UNIFORM7_SSIM), (M.ssim, M.GAUSSIAN_SSIM), (M.haarpsi, None)):
        args = () if cfg is None else (cfg,)
        want = float(fn(x, y, r, *args))
        got = float(fn(s * x, s * y, s * r, *args))
        assert got == pytest.approx(want, rel=1e-5), f"{fn.__name__} x{s:g}"
    assert float(M.nmse(s * x, s * y)) == pytest.approx(float(M.nmse(x, y)), rel=1e-5)
    assert float(M.psnr_from_mse(torch.tensor(s * s * 1e-3, dtype=torch.float64), s)) == pytest.approx(30.0, rel=1e-12)


def test_an_all_zero_target_gives_non_finite_metrics_not_made_up_numbers():
    rec, tgt = _noisy_pair(torch.complex64)
    zero = torch.zeros_like(tgt)
    g = M.series_metrics(rec, zero, "global", with_haarpsi=False)
    assert not any(math.isfinite(float(g.get(n))) for n in g.names())
    p = M.series_metrics(rec, zero, "paper", with_haarpsi=False)
    assert float(p.nmse) == math.inf  # ||x - 0||^2 / 0
    assert float(M.nmse(rec.abs(), zero.abs(), dims=3)) == math.inf
    assert math.isnan(float(M.nmse(zero.abs(), zero.abs(), dims=3)))


# ---------------------------------------------------------------- evaluate_dir


def _sample(seed, view, scale=1.0, zero_target=False):
    """test_evaluate_cli's slice, its k-space and target times ``scale`` (target zeroed on request)."""
    from cinerecon.data.sample import CineSample

    s = _slice(seed, view)
    target = torch.zeros_like(s.target) if zero_target else s.target
    return CineSample(scale * s.kspace, s.mask, s.maps, scale * target, s.meta)


def _write(root, scale=1.0, zero=()):
    h5 = pytest.importorskip("cinerecon.data.h5")
    from cinerecon.masks import equispaced

    masks = {"R04": torch.from_numpy(equispaced(W, 4, acs=4)).float()[None]}
    for i in range(3):
        h5.write_h5(root / f"slice{i}.h5", _sample(i, "sax", scale, zero_target=i in zero), masks)
    return root


def _options():
    from cinerecon.evaluate.runner import EvaluationOptions
    from cinerecon.evaluate.timing import TimingConfig

    return EvaluationOptions(timing=TimingConfig(warmup=0, runs=1), figures=False)


@pytest.mark.parametrize("protocol", ["paper", "global"])
def test_evaluate_dir_tables_do_not_depend_on_the_kspace_units(tmp_path, protocol):
    from cinerecon.evaluate.runner import evaluate_dir

    res = {}
    for s in (1.0, 1e-15, 1e12):
        root = _write(tmp_path / f"data{s:g}", s)
        res[s] = evaluate_dir(root, {"zf": zero_filled}, out_dir=tmp_path / f"out{s:g}", accels=("R04",),
                              protocol=protocol, options=_options())
    for s in (1e-15, 1e12):
        for a, b in zip(res[s].records, res[1.0].records):
            for m in ("psnr", "ssim", "nmse", "haarpsi"):
                assert math.isfinite(a.value(m)), f"x{s:g} {a.name} {m}"
                assert a.value(m) == pytest.approx(b.value(m), rel=1e-5), f"x{s:g} {a.name} {m}"
        for a, b in zip(res[s].dynamic, res[1.0].dynamic):
            for f in ("psnr_dynamic", "psnr_static", "ssim_dynamic", "ssim_static"):
                assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-5), f"x{s:g} {a.name} {f}"
        out = tmp_path / f"out{s:g}"
        text = "".join((out / n).read_text() for n in ("table1.csv", "dynamic.csv", "metrics_per_slice.csv"))
        assert "nan" not in text.lower() and "inf" not in text.lower()


@pytest.mark.parametrize("protocol", ["paper", "global"])
def test_evaluate_dir_refuses_to_write_a_non_finite_metric(tmp_path, protocol):
    from cinerecon.evaluate.runner import evaluate_dir

    root = _write(tmp_path / "data", zero=(1,))
    out = tmp_path / "out"
    opts = dataclasses.replace(_options(), figures=True)  # slice 0 is fine: its figures must not be drawn either
    with pytest.raises(DataError, match=r"slice 's1'.*metric (psnr|ssim|nmse|haarpsi)") as e:
        evaluate_dir(root, {"zf": zero_filled}, out_dir=out, accels=("R04",), protocol=protocol, options=opts)
    assert "\n" not in str(e.value)
    assert not any((out / n).exists() for n in ("table1.md", "table1.csv", "metrics_per_slice.csv", "dynamic.csv"))
    assert not (out / "figures").exists()


@pytest.mark.parametrize("protocol", ["paper", "global"])
def test_equal_images_score_240_db_not_inf(protocol):
    """A fully sampled R01 'reconstruction' equals its target: a finite PSNR that evaluate can tabulate."""
    x = torch.rand(3, 16, 16, dtype=torch.float64) + 0.1
    m = M.series_metrics(x.to(torch.complex128), x.to(torch.complex128), protocol, with_haarpsi=False)
    assert float(m.psnr) == pytest.approx(240.0) and float(m.nmse) == 0.0 and float(m.ssim) == pytest.approx(1.0)
