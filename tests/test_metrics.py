"""Metrics against scikit-image / piq references and closed-form properties; DISTS; dynamic regions."""

from __future__ import annotations

import copy
import importlib
import sys
import types

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cinerecon.errors import DataError, WeightsNotFoundError
from cinerecon.evaluate import dists as D
from cinerecon.evaluate import metrics as M
from cinerecon.evaluate.dynamic import dynamic_mask, region_metrics, temporal_std


def _pair(shape, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    y = rng.random(shape)
    x = np.clip(y + noise * rng.standard_normal(shape), 0, None)
    return x, y


def _import_piq():
    """Import piq; when torchvision is absent, a stub satisfies only piq's module-level imports.

    piq's HaarPSI and DISTS code paths used here never touch torchvision; the stub is
    removed from ``sys.modules`` right after the import.
    """
    if importlib.util.find_spec("piq") is None:
        pytest.skip("piq not installed (pip install --no-deps piq==0.8.0)")
    if "piq" in sys.modules:
        return sys.modules["piq"]
    if importlib.util.find_spec("torchvision") is not None:
        return importlib.import_module("piq")
    names = ("torchvision", "torchvision.models", "torchvision.models.inception")
    tv, tm, ti = (types.ModuleType(n) for n in names)

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision stub: pretrained models are not available in tests")

    tm.vgg16 = tm.vgg19 = tm.inception_v3 = unavailable
    for cls in ("InceptionA", "InceptionC", "InceptionE"):
        setattr(ti, cls, type(cls, (torch.nn.Module,), {}))
    tv.models, tm.inception = tm, ti
    sys.modules.update(dict(zip(names, (tv, tm, ti))))
    try:
        return importlib.import_module("piq")
    finally:
        for n in names:
            sys.modules.pop(n, None)


# ---------------------------------------------------------------- SSIM / PSNR / NMSE references


@pytest.mark.parametrize("shape", [(20, 23), (7, 9), (31, 16)])
def test_ssim_uniform_matches_skimage(shape):
    x, y = _pair(shape, seed=1)
    ref = structural_similarity(x, y, data_range=y.max())
    got = M.ssim(torch.tensor(x), torch.tensor(y), y.max(), M.UNIFORM7_SSIM)
    assert got.item() == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("shape", [(20, 23), (33, 24)])
def test_ssim_gaussian_matches_skimage(shape):
    x, y = _pair(shape, seed=2)
    ref = structural_similarity(x, y, data_range=y.max(), gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    got = M.ssim(torch.tensor(x), torch.tensor(y), y.max(), M.GAUSSIAN_SSIM)
    assert got.item() == pytest.approx(ref, abs=1e-10)


def test_ssim_map_matches_skimage_full_map_interior():
    x, y = _pair((18, 21), seed=3)
    _, full = structural_similarity(x, y, data_range=1.0, full=True)
    got = M.ssim_map(torch.tensor(x), torch.tensor(y), 1.0).numpy()
    np.testing.assert_allclose(got, full[3:-3, 3:-3], atol=1e-10)


def test_batched_ssim_equals_loop_and_float32_close():
    x, y = _pair((2, 3, 16, 17), seed=4)
    xt, yt = torch.tensor(x), torch.tensor(y)
    r = torch.tensor(y.max(axis=(-2, -1)))
    batched = M.ssim(xt, yt, r)
    for i in range(2):
        for t in range(3):
            ref = structural_similarity(x[i, t], y[i, t], data_range=y[i, t].max())
            assert batched[i, t].item() == pytest.approx(ref, abs=1e-10)
    f32 = M.ssim(xt.float(), yt.float(), r.float())
    np.testing.assert_allclose(f32.numpy(), batched.numpy(), atol=1e-4)


def test_psnr_nmse_match_references():
    x, y = _pair((3, 12, 10), seed=5)
    got = M.psnr(torch.tensor(x), torch.tensor(y), y.max(), dims=3).item()
    assert got == pytest.approx(peak_signal_noise_ratio(y, x, data_range=y.max()), abs=1e-9)
    nm = M.nmse(torch.tensor(x), torch.tensor(y), dims=3).item()
    assert nm == pytest.approx(np.linalg.norm(x - y) ** 2 / np.linalg.norm(y) ** 2, rel=1e-12)


def test_paper_protocol_matches_authors_recipe():
    """Each frame scaled by its own maximum, skimage defaults (7x7 uniform), mean over frames."""
    rng = np.random.default_rng(6)
    tgt = rng.standard_normal((5, 18, 20)) + 1j * rng.standard_normal((5, 18, 20))
    rec = 0.7 * tgt + 0.2 * (rng.standard_normal(tgt.shape) + 1j * rng.standard_normal(tgt.shape))
    m = M.series_metrics(torch.tensor(rec), torch.tensor(tgt), "paper", with_haarpsi=False)
    ps, ss, nm = [], [], []
    for t in range(5):
        g, p = np.abs(tgt[t]), np.abs(rec[t])
        g, p = g / g.max(), p / p.max()
        ps.append(peak_signal_noise_ratio(g, p, data_range=g.max()))
        ss.append(structural_similarity(g, p, data_range=g.max()))
        nm.append(np.linalg.norm(g - p) ** 2 / np.linalg.norm(g) ** 2)
    assert m.psnr.item() == pytest.approx(np.mean(ps), abs=1e-9)
    assert m.ssim.item() == pytest.approx(np.mean(ss), abs=1e-9)
    assert m.nmse.item() == pytest.approx(np.mean(nm), rel=1e-9)


def test_global_protocol_uses_target_series_range_and_is_scale_invariant():
    rng = np.random.default_rng(7)
    tgt = rng.random((4, 20, 20))
    tgt[2] *= 3.0  # frames with different brightness
    rec = tgt + 0.05 * rng.standard_normal(tgt.shape)
    m = M.series_metrics(torch.tensor(rec), torch.tensor(tgt), "global", with_haarpsi=False)
    assert m.psnr.item() == pytest.approx(peak_signal_noise_ratio(tgt, np.abs(rec), data_range=tgt.max()), abs=1e-9)
    frames = M.frame_metrics(torch.tensor(rec), torch.tensor(tgt), "global", with_haarpsi=False)
    ref = [structural_similarity(np.abs(rec[t]), tgt[t], data_range=tgt.max(), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False) for t in range(4)]
    np.testing.assert_allclose(frames.ssim.numpy(), ref, atol=1e-10)
    scaled = M.series_metrics(torch.tensor(7 * rec), torch.tensor(7 * tgt), "global", with_haarpsi=False)
    for name in ("psnr", "ssim", "nmse"):
        assert scaled.get(name).item() == pytest.approx(m.get(name).item(), rel=1e-9)


def test_series_metrics_batch_consistency_and_shapes():
    x, y = _pair((2, 3, 20, 18), seed=8)
    both = M.series_metrics(torch.tensor(x), torch.tensor(y), "global")
    assert both.psnr.shape == (2,) and both.haarpsi.shape == (2,)
    for i in range(2):
        one = M.series_metrics(torch.tensor(x[i]), torch.tensor(y[i]), "global")
        for n in both.names():
            assert both.get(n)[i].item() == pytest.approx(one.get(n).item(), rel=1e-9)


def test_metric_inputs_are_checked():
    with pytest.raises(DataError):
        M.ssim(torch.zeros(10, 10), torch.zeros(10, 11), 1.0)
    with pytest.raises(DataError):
        M.ssim(torch.zeros(5, 5), torch.zeros(5, 5), 1.0)  # smaller than the 7x7 window
    with pytest.raises(Exception, match="protocol"):
        M.series_metrics(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8), "nope")


# ---------------------------------------------------------------- HaarPSI


def test_haarpsi_properties():
    x, y = _pair((3, 32, 36), seed=9, noise=0.05)
    xt, yt = torch.tensor(x), torch.tensor(y)
    same = M.haarpsi(yt, yt, 1.0)
    np.testing.assert_allclose(same.numpy(), 1.0, atol=1e-9)
    a, b = M.haarpsi(xt, yt, 1.0), M.haarpsi(yt, xt, 1.0)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
    assert bool(((a > 0) & (a < 1)).all())
    worse, _ = _pair((3, 32, 36), seed=9, noise=0.3)
    assert bool((M.haarpsi(torch.tensor(worse), yt, 1.0) < a).all())


@pytest.mark.parametrize("shape,subsample", [((32, 32), True), ((33, 37), True), ((40, 34), False)])
def test_haarpsi_matches_piq(shape, subsample):
    piq = _import_piq()
    g = torch.Generator().manual_seed(10)
    y = torch.rand(3, 1, *shape, dtype=torch.float64, generator=g)
    x = (y + 0.1 * torch.randn(y.shape, dtype=torch.float64, generator=g)).clamp(0, 1)
    ref = piq.haarpsi(x, y, data_range=1.0, reduction="none", subsample=subsample)
    got = M.haarpsi(x[:, 0], y[:, 0], 1.0, M.HaarPSIConfig(subsample=subsample))
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-10)


# ---------------------------------------------------------------- DISTS


@pytest.fixture(scope="module")
def rdists():
    """DISTS with random VGG16 and alpha / beta weights (float32; inputs kept tiny for speed)."""
    torch.manual_seed(0)
    return D.DISTS(D.VGG16Features())


def test_dists_properties(rdists):
    g = torch.Generator().manual_seed(11)
    y = torch.rand(2, 1, 24, 24, generator=g)
    x1 = (y + 0.05 * torch.randn(y.shape, generator=g)).clamp(0, 1)
    x2 = (y + 0.4 * torch.randn(y.shape, generator=g)).clamp(0, 1)
    out = rdists(torch.cat([y, x1, y, x2]), torch.cat([y, y, x1, y])).reshape(4, 2)
    np.testing.assert_allclose(out[0].numpy(), 0.0, atol=1e-6)  # identical -> 0
    np.testing.assert_allclose(out[1].numpy(), out[2].numpy(), rtol=1e-4)  # symmetric
    assert bool(((out[1] > 0) & (out[1] < 1)).all()) and bool((out[3] > out[1]).all())
    rgb = rdists(x1.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1))  # grey == grey repeated on RGB
    np.testing.assert_allclose(rgb.numpy(), out[1].numpy(), rtol=1e-5)


def test_dists_matches_piq_with_same_random_weights(rdists):
    piq = _import_piq()
    plain = copy.deepcopy(rdists.features)
    for i in (4, 9, 16, 23):  # torchvision's max-pooling layers; piq swaps them for L2 pooling itself
        plain[i] = torch.nn.MaxPool2d(2, 2)
    total = rdists.alpha.sum() + rdists.beta.sum()
    weights = (list(torch.split(rdists.alpha / total, D.CHANNELS, 1))
               + list(torch.split(rdists.beta / total, D.CHANNELS, 1)))
    ref = piq.DISTS.__new__(piq.DISTS)  # bypass __init__, which downloads pretrained weights
    piq.perceptual.ContentLoss.__init__(ref, plain, layers=[str(i) for i in D.STAGE_ENDS], weights=weights,
                                        replace_pooling=True, reduction="none", normalize_features=False,
                                        allow_layers_weights_mismatch=True)
    g = torch.Generator().manual_seed(12)
    y = torch.rand(2, 1, 24, 20, generator=g)
    x = (y + 0.1 * torch.randn(y.shape, generator=g)).clamp(0, 1)
    np.testing.assert_allclose(rdists(x, y).numpy(), ref(x, y).numpy(), rtol=1e-4)


def _save_weights(tmp_path, d):
    vgg = {f"features.{k}": v for k, v in d.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision state dict also has these
    torch.save(vgg, tmp_path / "vgg16-397923af.pth")
    torch.save({"alpha": d.alpha.clone(), "beta": d.beta.clone()}, tmp_path / "weights.pt")


def test_dists_loads_local_files_only(tmp_path, monkeypatch, rdists):
    monkeypatch.delenv(D.ENV_DISTS, raising=False)
    monkeypatch.delenv(D.ENV_VGG16, raising=False)
    with pytest.raises(WeightsNotFoundError, match=D.ENV_DISTS):
        D.load_dists()
    assert D.try_load_dists() is None
    with pytest.raises(WeightsNotFoundError, match="vgg16"):
        D.load_dists(tmp_path / "missing.pt")
    _save_weights(tmp_path, rdists)
    x, y = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    want = rdists(x, y)
    torch.testing.assert_close(D.load_dists(tmp_path)(x, y), want)  # a folder holding both files
    monkeypatch.setenv(D.ENV_DISTS, str(tmp_path / "weights.pt"))
    monkeypatch.setenv(D.ENV_VGG16, str(tmp_path / "vgg16-397923af.pth"))
    files = D.resolve_weight_files()
    assert files == D.DistsWeightFiles(tmp_path / "weights.pt", tmp_path / "vgg16-397923af.pth")
    torch.save({"alpha": rdists.alpha}, tmp_path / "bad.pt")
    with pytest.raises(DataError, match="beta"):
        D.load_dists(tmp_path / "bad.pt")
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "vgg16-bad.pth")
    with pytest.raises(DataError, match="VGG16"):
        D.load_dists(tmp_path / "weights.pt", tmp_path / "vgg16-bad.pth")


def test_dists_in_frame_metrics_uses_protocol_scaling(rdists):
    x, y = _pair((5, 16, 16), seed=13)  # more frames than DISTS_CHUNK
    x, y = x.astype(np.float32), y.astype(np.float32)
    fm = M.frame_metrics(torch.tensor(5 * x), torch.tensor(5 * y), "global", with_haarpsi=False, dists_model=rdists)
    r = 5 * y.max()
    ref = rdists(torch.tensor(5 * x / r).clamp(0, 1)[:, None], torch.tensor(5 * y / r)[:, None])
    np.testing.assert_allclose(fm.dists.numpy(), ref.numpy(), rtol=1e-5)


# ---------------------------------------------------------------- dynamic regions


def _moving_series(t=8, h=32, w=30, seed=14):
    """Static background with tiny temporal noise, a 10x10 block (rows/cols 3..12) that beats."""
    rng = np.random.default_rng(seed)
    base = np.broadcast_to(0.5 + 0.1 * rng.random((h, w)), (t, h, w)).copy()
    base += 1e-3 * rng.random((t, h, w))
    phase = np.sin(2 * np.pi * np.arange(t) / t)
    amp = 0.2 + 0.2 * rng.random((10, 10))
    base[:, 3:13, 3:13] += amp * phase[:, None, None]
    return base


def test_dynamic_mask_is_the_moving_region():
    tgt = _moving_series()
    s = temporal_std(torch.tensor(tgt)).numpy()
    np.testing.assert_allclose(s, tgt.std(axis=0), rtol=1e-10)
    m = dynamic_mask(torch.tensor(tgt), 90.0).numpy()
    assert (m == (s >= np.percentile(s, 90.0))).all()
    assert m.sum() == int(np.ceil(0.1 * m.size)) or m.sum() == int(0.1 * m.size) + 1
    block = np.zeros_like(m)
    block[3:13, 3:13] = True
    assert not (m & ~block).any()  # the top 10 % all lie in the beating block


def test_region_metrics_separate_errors():
    tgt = _moving_series()
    rec = tgt.copy()
    rec[:, 22:, :] += 0.05  # error only far from the moving block
    rm = region_metrics(torch.tensor(rec), torch.tensor(tgt), "global", 90.0)
    assert rm.ssim_dynamic.item() == pytest.approx(1.0, abs=1e-9)
    assert rm.psnr_dynamic.item() > 100
    m = dynamic_mask(torch.tensor(tgt)).numpy()
    mse_static = ((rec - tgt) ** 2)[:, ~m].mean()
    assert rm.psnr_static.item() == pytest.approx(10 * np.log10(tgt.max() ** 2 / mse_static), abs=1e-9)
    assert rm.fraction.item() == pytest.approx(m.mean())


def test_dists_downsizes_large_images_like_piq(rdists, monkeypatch):
    """piq's DISTS.forward bilinearly rescales inputs whose shorter side exceeds 256 to a shorter side of 256."""
    piq = _import_piq()
    seen = {}

    def capture(self, x, y):  # stands in for piq's feature comparison: record what it is given
        seen["x"], seen["y"] = x, y
        return torch.zeros(x.shape[0])

    monkeypatch.setattr(piq.perceptual.ContentLoss, "forward", capture)
    ref = piq.DISTS.__new__(piq.DISTS)  # bypass __init__, which downloads pretrained weights
    g = torch.Generator().manual_seed(14)
    for shape in ((300, 270), (257, 400), (256, 300), (40, 31)):
        x, y = torch.rand(2, 3, *shape, generator=g), torch.rand(2, 3, *shape, generator=g)
        piq.DISTS.forward(ref, x, y)
        torch.testing.assert_close(D.downsize(x), seen["x"], rtol=0, atol=0)
        torch.testing.assert_close(D.downsize(y), seen["y"], rtol=0, atol=0)
        assert min(seen["x"].shape[-2:]) == min(256, min(shape))

    class Stop(Exception):
        pass

    def stop(x):
        raise Stop(tuple(x.shape))

    monkeypatch.setattr(rdists, "feature_list", stop)  # our DISTS scores the downsized images
    with pytest.raises(Stop) as e:
        rdists(torch.rand(1, 1, 300, 270), torch.rand(1, 1, 300, 270))
    assert e.value.args[0] == (2, 3, 284, 256)
