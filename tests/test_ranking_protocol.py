"""The CMRxRecon2023 ranking protocol (``--protocol cmrxrecon``) against a line-by-line NumPy /
scikit-image re-implementation of the challenge's rules, written here independently:

* ``run4Ranking.m``: slices ``(round(sz/2)-1):(round(sz/2))`` (all when sz < 3), frames ``1:3``,
  ``single(crop(abs(img), [round(sx/3), round(sy/2), ...]))`` with MATLAB's ``round`` (halves
  away from zero);
* ``crop.m``: ``idx = floor(m/2)+1+ceil(-s/2) : floor(m/2)+ceil(s/2)`` (1-based);
* ``Evaluation.py`` ``calmetric``: every (slice, frame) image divided by its own maximum,
  scikit-image PSNR / SSIM with ``data_range = gt.max()``, NMSE ``||gt - pred||^2 / ||gt||^2``;
* ``Main_Score.py`` ``CalValue``: the mean over a subject's (slice, frame) values.

MATLAB arrays are (sx, sy, sz, t) = (H, W, slices, frames) here, as in the challenge.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cinerecon.errors import DataError
from cinerecon.evaluate import metrics as M
from cinerecon.evaluate.runner import EvaluationOptions, evaluate_dir
from cinerecon.evaluate.timing import TimingConfig
from cinerecon.masks import equispaced
from cinerecon.operators import SenseOp

FAST = EvaluationOptions(timing=TimingConfig(warmup=0, runs=1), figures=False)
FRAMES, COILS = 4, 2


# ----------------------------------------------------------------------------- the reference, line by line


def matlab_round(x: float) -> int:
    """MATLAB round for x >= 0: halves go up (away from zero)."""
    return int(np.floor(x + 0.5))


def crop_m(x: np.ndarray, s: list[int]) -> np.ndarray:
    """crop.m: res = x(idx{1}, idx{2}, ...), idx{n} = floor(m(n)/2)+1+ceil(-s(n)/2) : floor(m(n)/2)+ceil(s(n)/2)."""
    m = x.shape
    if list(m) == list(s):
        return x
    idx = []
    for n in range(len(s)):
        first = math.floor(m[n] / 2) + 1 + math.ceil(-s[n] / 2)  # 1-based, inclusive
        last = math.floor(m[n] / 2) + math.ceil(s[n] / 2)
        idx.append(np.arange(first, last + 1) - 1)
    return x[np.ix_(*idx)]


def run4ranking(img: np.ndarray) -> np.ndarray:
    """run4Ranking.m for a cine volume img (sx, sy, sz, t) complex -> single (sx/3, sy/2, 2, 3)."""
    sx, sy, sz, t = img.shape
    if sz < 3:
        slice_to_use = np.arange(1, sz + 1)
    else:
        slice_to_use = np.arange(matlab_round(sz / 2) - 1, matlab_round(sz / 2) + 1)  # (round(sz/2)-1):(round(sz/2))
    frames_to_use = np.arange(1, 4)
    selected = img[:, :, slice_to_use - 1][:, :, :, frames_to_use - 1]
    size = [matlab_round(sx / 3), matlab_round(sy / 2), len(slice_to_use), len(frames_to_use)]
    return crop_m(np.abs(selected), size).astype(np.float32)


def calmetric(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluation.py calmetric for 4-D (x, y, slice, frame) single-precision arrays."""
    shape = (gt.shape[-2], gt.shape[-1])
    psnr_a, ssim_a, nmse_a = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for i in range(gt.shape[-2]):
        for j in range(gt.shape[-1]):
            p, g = pred[:, :, i, j], gt[:, :, i, j]
            gs, ps = g / g.max(), p / p.max()
            psnr_a[i, j] = peak_signal_noise_ratio(gs, ps, data_range=gs.max())
            ssim_a[i, j] = structural_similarity(gs, ps, data_range=gs.max())
            nmse_a[i, j] = np.linalg.norm(gs - ps) ** 2 / np.linalg.norm(gs) ** 2
    return psnr_a, ssim_a, nmse_a


def subject_scores(pred_volume: np.ndarray, gt_volume: np.ndarray) -> dict[str, float]:
    """Main_Score.py CalValue for one subject: the means of the calmetric arrays."""
    psnr_a, ssim_a, nmse_a = calmetric(run4ranking(pred_volume), run4ranking(gt_volume))
    return {"psnr": float(np.mean(psnr_a)), "ssim": float(np.mean(ssim_a)), "nmse": float(np.mean(nmse_a))}


# ----------------------------------------------------------------------------- data


def _ifft2c(k: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=axes), axes=axes, norm="ortho"), axes=axes)


def zero_filled(kspace, mask, maps):
    return SenseOp(maps, mask).adjoint(kspace)


def scaled(kspace, mask, maps):
    """A second method whose frames differ in brightness (per-image max scaling must undo it)."""
    x = zero_filled(kspace, mask, maps)
    return x * torch.linspace(0.5, 2.0, x.shape[1])[None, :, None, None]


def _volume(root, subject: str, slices: int, h: int, w: int, seed: int) -> list[dict]:
    """Write ``slices`` HDF5 slices named ``<subject>/cine_sax/sliceNN``; return their arrays (NumPy)."""
    from cinerecon.data.h5 import write_h5
    from cinerecon.data.sample import CineSample, SampleMeta

    g = torch.Generator().manual_seed(seed)
    mask = torch.from_numpy(equispaced(w, 4, acs=4)).float()[None]
    out = []
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    for z in range(slices):
        r = (0.25 + 0.05 * z + 0.1 * torch.rand(FRAMES, generator=g))[:, None, None]
        img = (xx**2 + yy**2 < r**2).float() * (1 + z) + 0.2 + 0.3 * torch.rand(FRAMES, h, w, generator=g)
        target = (img * torch.exp(1j * (0.4 * xx + 0.2 * z))).to(torch.complex64)
        maps = torch.randn(COILS, 1, h, w, dtype=torch.complex64, generator=g)
        maps = maps / (maps.abs() ** 2).sum(0, keepdim=True).sqrt()
        kspace = SenseOp(maps[None]).expand(target[None])[0]
        name = f"{subject}/cine_sax/slice{z:02d}"
        sample = CineSample(kspace, torch.ones(1, 1, 1, w), maps, target, SampleMeta(name=name, view="sax"))
        write_h5(root / f"{subject}_s{z:02d}.h5", sample, {"R04": mask})
        out.append({"kspace": kspace.numpy(), "maps": maps.numpy(), "target": target.numpy(),
                    "mask": mask.numpy()[0]})
    return out


def _matlab_volume(slices: list[dict], method: str) -> tuple[np.ndarray, np.ndarray]:
    """(reconstruction, target) volumes (sx, sy, sz, t) computed with NumPy from the stored arrays."""
    recs, gts = [], []
    for s in slices:
        zf = (np.conj(s["maps"]) * _ifft2c(s["kspace"] * s["mask"][None, None, None, :])).sum(axis=0)  # (T, H, W)
        if method == "scaled":
            zf = zf * np.linspace(0.5, 2.0, zf.shape[0], dtype=np.float32)[:, None, None]
        recs.append(zf)
        gts.append(s["target"])
    to_matlab = lambda v: np.stack(v).transpose(2, 3, 0, 1)  # (sz, t, sx, sy) -> (sx, sy, sz, t)  # noqa: E731
    return to_matlab(recs), to_matlab(gts)


# ----------------------------------------------------------------------------- tests


def test_selection_rules_match_run4ranking_and_crop_m():
    for n in range(1, 13):  # slices: odd n exercise MATLAB's rounding of n / 2
        ref = (np.arange(1, n + 1) if n < 3 else np.arange(matlab_round(n / 2) - 1, matlab_round(n / 2) + 1)) - 1
        assert M.ranking_slices(n) == tuple(ref.tolist()), n
    assert M.ranking_slices(5) == (1, 2) and round(5 / 2) == 2  # Python's round would pick (0, 1)
    for h in range(7, 41):
        for w in range(7, 41):
            x = np.arange(h * w, dtype=np.float64).reshape(h, w)
            ref = crop_m(x, [matlab_round(h / 3), matlab_round(w / 2)])
            got = M.select_for_ranking(torch.from_numpy(x)[None])[0].numpy()
            np.testing.assert_array_equal(got, ref, err_msg=f"{h}x{w}")
    assert M.ranking_crop_size(24, 17) == (8, 9)  # 8.5 -> 9 (Python's round: 8)


def test_series_metrics_match_the_challenge_on_one_slice():
    rng = np.random.default_rng(0)
    t, h, w = 5, 25, 19  # 5 frames (3 scored), W / 2 = 9.5
    gt = (rng.random((t, h, w)) + 0.5) * np.exp(1j * rng.random((t, h, w)))
    pred = gt + 0.1 * (rng.standard_normal(gt.shape) + 1j * rng.standard_normal(gt.shape))
    m = M.series_metrics(torch.tensor(pred), torch.tensor(gt), "cmrxrecon", with_haarpsi=False)
    assert m.psnr.dtype == torch.float32
    vol = lambda a: a.transpose(1, 2, 0)[:, :, None, :]  # (t, sx, sy) -> (sx, sy, 1, t)  # noqa: E731
    ref = subject_scores(vol(pred), vol(gt))
    for name in ("psnr", "ssim", "nmse"):
        assert float(m.get(name)) == pytest.approx(ref[name], rel=2e-5), name
    frames = M.frame_metrics(torch.tensor(pred), torch.tensor(gt), "cmrxrecon", with_haarpsi=False)
    assert frames.psnr.shape == (3,)


def test_evaluate_dir_cmrxrecon_matches_the_challenge_per_subject(tmp_path):
    pytest.importorskip("cinerecon.data.h5")
    root = tmp_path / "data"
    volumes = {"P001": _volume(root, "P001", 5, 24, 17, seed=1),  # 5 slices: scored 1, 2 (MATLAB round)
               "P002": _volume(root, "P002", 2, 23, 16, seed=2)}  # fewer than 3: both scored
    res = evaluate_dir(root, {"zero_filled": zero_filled, "scaled": scaled}, out_dir=tmp_path / "out",
                       accels=("R04",), protocol="cmrxrecon", options=FAST)
    assert res.unit == "volumes" and len(res.records) == 2 * 2
    for r in res.records:
        subject = r.file.split("/")[0]
        assert r.file == f"{subject}/cine_sax" and r.view == "sax"
        ref = subject_scores(*_matlab_volume(volumes[subject], r.method))
        for name in ("psnr", "ssim", "nmse"):
            assert r.value(name) == pytest.approx(ref[name], rel=2e-5), (subject, r.method, name)
    # only the scored slices were evaluated: 2 per volume in the dynamic-region table
    assert sorted({d.name for d in res.dynamic}) == ["P001/cine_sax/slice01", "P001/cine_sax/slice02",
                                                     "P002/cine_sax/slice00", "P002/cine_sax/slice01"]
    table = (tmp_path / "out" / "table1.md").read_text()
    assert "`cmrxrecon`" in table and "(n = 2 volumes)" in table


def test_cmrxrecon_needs_the_central_slices(tmp_path):
    pytest.importorskip("cinerecon.data.h5")
    root = tmp_path / "data"
    _volume(root, "P003", 5, 24, 17, seed=3)
    (root / "P003_s02.h5").unlink()  # slice 2 of 5 is scored
    with pytest.raises(DataError, match=r"P003/cine_sax.*\[2\]"):
        evaluate_dir(root, {"zero_filled": zero_filled}, out_dir=tmp_path / "out", accels=("R04",),
                     protocol="cmrxrecon", options=FAST)
