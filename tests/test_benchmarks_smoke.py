"""End-to-end smoke runs of benchmarks/study.py and benchmarks/mask_robustness.py at a tiny size.

The scripts are imported from the benchmarks folder by path. Numbers the scripts report are
checked against independent computations (NumPy FFTs, skimage PSNR, SciPy's Wilcoxon test)
and against the training checkpoints, not against what the scripts just wrote alone.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_benchmark

DEEP = ("crunet", "crnn", "unet3d", "cinenet", "promptmr")


def _load(name: str):
    """Import benchmarks/<name>.py, skipping cleanly when a component it needs is not written yet."""
    for mod in ("cinerecon.data.simulate", "cinerecon.data.h5", "cinerecon.train.loop", "cinerecon.evaluate.metrics",
                "cinerecon.classical.zero_filled", "cinerecon.classical.cg_sense", "cinerecon.coils"):
        pytest.importorskip(mod)
    try:
        return load_benchmark(name)
    except ImportError as e:
        pytest.skip(f"benchmarks/{name}.py cannot be imported yet: {e}")


def _require_models(names):
    from cinerecon.models import MODELS

    missing = [n for n in names if n not in MODELS]
    if missing:
        pytest.skip(f"models not registered yet: {missing}")


def _ifft2c(k: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=axes), axes=axes, norm="ortho"), axes=axes)


def _paper_psnr(recon: np.ndarray, target: np.ndarray) -> float:
    """Paper protocol with skimage: magnitudes, each frame scaled by its own maximum, mean over frames."""
    from skimage.metrics import peak_signal_noise_ratio

    vals = []
    for x, y in zip(np.abs(recon), np.abs(target)):
        vals.append(peak_signal_noise_ratio(y / y.max(), x / x.max(), data_range=1.0))
    return float(np.mean(vals))


def _zero_filled_np(path: Path, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(zero-filled image, target) from the HDF5 file with NumPy only; mask (T|1, W)."""
    import h5py

    with h5py.File(path, "r") as f:
        k, maps, target = f["kspace"][()], f["maps"][()], f["target"][()]
    under = k * mask[None, :, None, :]
    return (np.conj(maps) * _ifft2c(under)).sum(axis=0), target


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- study


def test_min_adjusted_p_matches_scipy():
    study = _load("study")
    from scipy.stats import wilcoxon

    for n in (3, 6, 9):
        a, b = np.arange(1.0, n + 1) + 10, np.zeros(n)  # every difference positive: the extreme outcome
        p = wilcoxon(a, b).pvalue
        assert study.min_adjusted_p(n, 4) == pytest.approx(min(1.0, 3 * p), rel=1e-9)


def test_budget_to_epochs():
    study = _load("study")
    c = study.common
    assert c.epochs_for(4, None, 10) == 3
    assert c.epochs_for(4, 2, None) == 2
    with pytest.raises(c.ConfigError):
        c.epochs_for(4, 2, 10)


def test_study_smoke(tmp_path):
    study = _load("study")
    pytest.importorskip("cinerecon.evaluate.runner")
    _require_models(DEEP)
    from cinerecon.data.h5 import read_mask

    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :40]
    frames = np.stack([1000 * np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / (60 + 10 * np.sin(t))) + 200
                       + rng.integers(0, 50, (40, 40)) for t in range(6)]).astype(np.uint16)
    np.savez(real / "subj9_sax_test.npz", frames=frames, trigger_time_ms=np.arange(6, dtype=np.float32) * 40,
             pixel_spacing_mm=np.array([2.0, 2.0], dtype=np.float32))
    out = tmp_path / "study"
    argv = ["--out", str(out), "--size", "16", "16", "--frames", "4", "--coils", "3", "--subjects", "5",
            "--test-subjects", "2", "--views", "sax", "--budget", "3", "--cascades", "1", "--accels", "4",
            "--timing-runs", "1", "--no-figures", "--device", "cpu", "--real-dir", str(real)]
    assert study.main(argv) == 0
    summary = json.loads((out / "study.json").read_text())

    # Same budget for every model: ceil(3 steps / 2 training slices) = 2 epochs of 2 steps each.
    from cinerecon.train.checkpoints import read_checkpoint

    for name in DEEP:
        ck = read_checkpoint(out / "runs" / name / "last.pt")
        assert (ck.epoch, ck.step) == (2, 4), name
    assert summary["epochs"] == 2
    # The faithful baselines of the paper's Table 1 rows (small widths).
    faithful = {"crnn": {"preset": "original", "share_weights": False}, "unet3d": {"preset": "paper"},
                "cinenet": {"complex_conv": True}, "promptmr": {"preset": "original"}}
    for name, want in faithful.items():
        kw = read_checkpoint(out / "runs" / name / "last.pt").model_kwargs
        assert want.items() <= kw.items(), (name, kw)

    # Split by subject in order: 2 train, 1 val, 2 test, plus the real series.
    test = (out / "data" / "test.txt").read_text().split()
    assert test == ["sim0003_sax.h5", "sim0004_sax.h5", "real_subj9_sax_test.h5"]
    assert (out / "data" / "val.txt").read_text().split() == ["sim0002_sax.h5"]
    assert summary["test_slices_per_view"] == {"sax": 2, "real_sax": 1}

    rows = _rows(out / "results" / "metrics_per_slice.csv")
    methods = {r["method"] for r in rows}
    assert set(DEEP) | {"zero_filled", "cg_sense", "grappa"} <= methods
    if importlib.util.find_spec("cinerecon.classical.lowrank_sparse") is not None:
        assert "lplus_s" in methods and "lplus_s" not in summary["classical_missing"]
    assert {r["view"] for r in rows} == {"sax", "real_sax"}
    # The evaluated zero-filled PSNR agrees with NumPy + skimage on the stored mask.
    for r in (r for r in rows if r["method"] == "zero_filled"):
        path = Path(r["file"])
        mask, _ = read_mask(path, "R04")
        zf, target = _zero_filled_np(path, mask[0, :, 0, :].numpy())
        assert float(r["psnr"]) == pytest.approx(_paper_psnr(zf, target), abs=1e-3)
    table1 = (out / "results" / "table1.md").read_text()
    assert "real_sax" in table1 and "promptmr" in table1
    assert "| crunet (ref.) |" in table1  # statistics against the proposed model, as the paper
    for name in ("training.md", "results/stats.md", "results/dynamic.md", "results/table2.md"):
        assert (out / name).stat().st_size > 0
    with pytest.raises(study.common.OutputExistsError):
        study.main(argv)


# ----------------------------------------------------------------------------- mask robustness


def test_test_masks_have_no_acs_and_time_varying_fills_the_centre():
    mr = _load("mask_robustness")
    from cinerecon.masks import acs_lines

    for kind in ("uniform", "time_varying"):
        m = mr.make_test_mask(kind, 4, 8, frames=6, width=20, seed=0, index=1)
        assert acs_lines(m) == 0
        assert float(m.sum(dim=-1).mean()) == pytest.approx(5.0)  # W / R lines per frame
    tv = mr.make_test_mask("time_varying", 4, 8, frames=6, width=20, seed=0, index=1)
    assert bool(tv.amax(dim=1).all())  # every line sampled in some frame
    a = mr.make_test_mask("equispaced_acs", 4, 8, frames=6, width=20, seed=0, index=1)
    assert acs_lines(a) >= 8


def test_mask_robustness_smoke(tmp_path):
    mr = _load("mask_robustness")
    _require_models(("crunet",))
    out = tmp_path / "mr"
    argv = ["--out", str(out), "--size", "16", "16", "--frames", "4", "--coils", "3", "--subjects", "3",
            "--test-subjects", "1", "--accel", "4", "--epochs", "1", "--chans", "4", "--cascades", "1",
            "--device", "cpu"]
    mr.main(argv)
    summary = json.loads((out / "summary.json").read_text())
    from cinerecon.train.checkpoints import read_checkpoint

    steps = {label: read_checkpoint(out / "runs" / label / "last.pt").step for label in ("fixed", "mixed", "mixed_vs")}
    assert steps == {"fixed": 1, "mixed": 1, "mixed_vs": 1}

    rows = _rows(out / "per_slice.csv")
    # A static mask without ACS gives nothing to calibrate on: no estimated-maps rows, a note instead.
    assert not [r for r in rows if r["test_mask"] == "uniform" and r["maps"] == "estimated"]
    assert "uniform" in summary["notes"]
    assert [r for r in rows if r["test_mask"] == "time_varying" and r["maps"] == "estimated"]
    assert {r["method"] for r in rows} == {"fixed", "mixed", "mixed_vs", "zero_filled", "view_sharing", "cg_sense"}

    # Zero-filled with the true maps agrees with NumPy + skimage on the regenerated test masks.
    test_file = Path(rows[0]["file"])
    for kind in mr.TEST_KINDS:
        m = mr.make_test_mask(kind, 4, summary["acs"], 4, 16, 0, 0)[0, :, 0, :].numpy()
        zf, target = _zero_filled_np(test_file, m)
        r = next(r for r in rows if (r["method"], r["test_mask"], r["maps"]) == ("zero_filled", kind, "true"))
        assert float(r["psnr"]) == pytest.approx(_paper_psnr(zf, target), abs=1e-3)

    # Drop / recovery recomputed from the per-slice values.
    def mean(method, kind, maps, metric="psnr"):
        return np.mean([float(r[metric]) for r in rows if (r["method"], r["test_mask"], r["maps"]) ==
                        (method, kind, maps)])

    ratios = [r for r in summary["ratios"]
              if r["metric"] == "psnr" and r["maps"] == "true" and r["model"] == "mixed"]
    assert {r["test_mask"] for r in ratios} == {"uniform", "time_varying"}
    for r in ratios:
        drop = mean("fixed", "equispaced_acs", "true") - mean("fixed", r["test_mask"], "true")
        rec = mean("mixed", r["test_mask"], "true") - mean("fixed", r["test_mask"], "true")
        assert r["drop"] == pytest.approx(drop, abs=1e-4)
        assert r["recovered"] == pytest.approx(rec, abs=1e-4)
        # per_slice.csv rounds PSNR to 1e-4 dB: the fraction recomputed from it is exact to ~1e-4 / |drop|
        assert r["recovered_fraction"] == pytest.approx(rec / drop, rel=1e-4, abs=2e-4 / abs(drop))


def _disc_series(path: Path, side: int, frames: int) -> Path:
    """A tiny magnitude cine (.npz, uint16): a bright disc of radius side // 5 + t growing over the frames."""
    yy, xx = np.mgrid[:side, :side]
    c, r = side // 2, side // 5
    series = np.stack([(1000 + 800 * ((yy - c) ** 2 + (xx - c) ** 2 < (r + t) ** 2)).astype(np.uint16)
                       for t in range(frames)])
    np.savez(path, frames=series)
    return path


def test_shipped_robustness_smoke(tmp_path):
    """The shipped model on every condition of a tiny magnitude series; the summary agrees with the rows."""
    import json

    import numpy as np

    bench = _load("shipped_robustness")
    series = _disc_series(tmp_path / "tiny_sax.npz", 40, 3)
    assert bench.main(["--series", str(series), "--out", str(tmp_path / "out"), "--frames", "3"]) == 0
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["condition"] for r in rows} == {c.name for c in bench.CONDITIONS}
    assert all(np.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1 for r in rows)
    table = (tmp_path / "out" / "results.md").read_text()
    ref = {r["method"]: r["psnr"] for r in rows if r["condition"] == "reference"}
    line = next(ln for ln in table.splitlines() if ln.startswith("| reference |"))
    assert line.endswith(f"| {ref['crunet'] - ref['lplus_s']:+.2f} |")
    # the surface-array condition really has other maps (a stronger unfolding than the birdcage's)
    conds = {c.name: c for c in bench.CONDITIONS}
    bird = bench.make_sample(series, conds["reference"], 0, 3)
    surf = bench.make_sample(series, conds["surface arrays"], 0, 3)
    diff = (bird.target - surf.target).abs().mean() / bird.target.abs().mean()
    assert diff < 0.05  # the same image up to the noise of 35 dB ...
    assert (bird.maps - surf.maps).abs().max() > 0.1  # ... seen through other coils
    with pytest.raises(Exception, match="geometry"):
        bench.make_sample(series, bench.Condition("typo", geometry="surfce"), 0, 3)
    # a subset by name; the radial rows (a 2-D pattern) score as the full run did
    assert bench.main(["--series", str(series), "--out", str(tmp_path / "radial"), "--frames", "3",
                       "--conditions", "k-t radial"]) == 0
    sub = json.loads((tmp_path / "radial" / "results.json").read_text())
    assert {r["condition"] for r in sub} == {"k-t radial, 16 x 16 block", "k-t radial, R = 10, 16 x 16 block"}
    full = {(r["condition"], r["method"]): r["psnr"] for r in rows}
    assert all(full[(r["condition"], r["method"])] == pytest.approx(r["psnr"], abs=1e-6) for r in sub)
    with pytest.raises(SystemExit):
        bench.parse_args(["--out", str(tmp_path), "--conditions", "no such row"])


def test_fft_speed_smoke(capsys):
    """The script runs, compares against the shift-based definition and the 2D normal operator, and
    leaves the package's FFTs, normal operator and DC steps in place."""
    import cinerecon.fft as cfft
    import cinerecon.models.unrolled as unrolled

    bench = load_benchmark("fft_speed")
    from cinerecon.operators import SenseOp

    ours, forward, gram, dc = cfft._centred, SenseOp.forward, SenseOp.gram, unrolled.hard_dc
    assert bench.main(["--small", "--repeats", "1", "--skip-model"]) == 0
    assert cfft._centred is ours and SenseOp.forward is forward and SenseOp.gram is gram and unrolled.hard_dc is dc
    out = capsys.readouterr().out
    diffs = [float(line.rsplit(" ", 1)[-1]) for line in out.splitlines() if "max rel. difference" in line]
    assert len(diffs) == 15 and max(diffs) < 1e-5
    assert sum("2D normal" in line for line in out.splitlines()) == 4
    with bench.two_d_normal():
        assert SenseOp.gram is not gram and unrolled.hard_dc is not dc
    x = torch.randn(2, 6, 5, dtype=torch.complex64)
    with bench.reference_ffts():
        ref = cfft.fft2c(x)
    assert torch.allclose(ref, torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"),
                                                   dim=(-2, -1)))


def test_feature_layout_smoke(capsys):
    import cinerecon.models.crunet as crunet_module

    bench = load_benchmark("feature_layout")
    convert = crunet_module.channels_last_frames
    assert bench.main(["--sizes", "16", "12", "--chans", "4", "--cascades", "2", "--frames", "3", "--coils", "2",
                       "--repeats", "1"]) == 0
    assert crunet_module.channels_last_frames is convert  # restored
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("16x12 fp32")]
    assert len(lines) == 1 and float(lines[0].rsplit(" ", 1)[-1]) < 1e-5


def test_versus_commit_smoke(capsys):
    """Against this checkout's own HEAD: the script times both sides, prints four ratios with
    identical outputs, and removes its worktree."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    before = subprocess.run(["git", "-C", str(root), "worktree", "list"], capture_output=True, text=True).stdout
    bench = load_benchmark("versus_commit")
    assert bench.main(["HEAD", "--rounds", "1", "--size", "16", "32", "--frames", "3", "--coils", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "max rel. difference" in line]
    assert len(lines) == 4
    assert max(float(line.rsplit(" ", 1)[-1]) for line in lines) < 1e-5  # HEAD and the working tree agree
    after = subprocess.run(["git", "-C", str(root), "worktree", "list"], capture_output=True, text=True).stdout
    assert after == before


def test_real_anatomy_smoke(tmp_path):
    """Three masks (regular, k-t random, k-t radial) on a tiny series: GRAPPA only on the regular one, the
    zero-filled PSNR equals skimage's on the same data, and the table agrees with the rows."""
    import json

    from skimage.metrics import peak_signal_noise_ratio

    from cinerecon.masks import make_mask

    bench = _load("real_anatomy")
    series = _disc_series(tmp_path / "tiny_sax.npz", 48, 4)
    out = tmp_path / "out"
    assert bench.main(["--series", str(series), "--out", str(out), "--size", "48", "--frames", "4",
                       "--coils", "4", "--masks", "R8", "R8 k-t random", "R8 k-t radial", "--skip", "lplus_s",
                       "--figure-mask", "R8 k-t radial"]) == 0
    assert (out / "figure.png").stat().st_size > 1000
    rows = json.loads((out / "results.json").read_text())
    grappa = {r["mask"] for r in rows if r["method"] == "grappa"}
    assert grappa == {"R8"}
    kt = [r for r in rows if r["mask"] == "R8 k-t random" and r["method"] == "zero_filled" and r["maps"] == "true"]
    assert len(kt) == 1
    radial = {r["maps"] for r in rows if r["mask"] == "R8 k-t radial" and r["method"] == "crunet"}
    assert radial == {"true", "estimated"}  # maps estimated from the radial block too
    # the same sample and mask, zero-filled by hand and scored by skimage
    sample = bench.make_sample(series, 48, 4, 4, seed=0)
    j = list(bench.MASKS).index("R8 k-t random")
    mask = make_mask(bench.MASKS["R8 k-t random"], 4, 48, seed=j)
    assert mask.shape == (1, 4, 1, 48) and not torch.equal(mask[0, 0], mask[0, 1])  # new lines every frame
    coil = np.fft.ifftshift(np.fft.ifft2(np.fft.fftshift((sample.kspace * mask).numpy(), axes=(-2, -1)),
                                         norm="ortho"), axes=(-2, -1))
    zf = np.abs((coil * np.conj(sample.maps.numpy())).sum(axis=0))
    ref = np.abs(sample.target.numpy())
    expect = peak_signal_noise_ratio(ref, zf, data_range=float(ref.max()))
    assert kt[0]["psnr"] == pytest.approx(expect, abs=1e-3)
    table = (out / "results.md").read_text()
    line = next(ln for ln in table.splitlines() if ln.startswith("| R8 k-t random | true |"))
    assert f"{expect:.2f} / " in line and "—" in line  # zero-filled cell, and no GRAPPA


def test_robustness_field_condition_embeds_the_series():
    """A field condition puts the reference image, pixel for pixel, at the centre of a zero background."""
    import numpy as np

    from cinerecon.data.simulate import magnitude_cine_to_sample
    from cinerecon.errors import ConfigError

    rng = np.random.default_rng(0)
    frames = rng.random((3, 12, 10)).astype(np.float32) + 0.5
    small = magnitude_cine_to_sample(frames, coils=2, snr_db=float("inf"), seed=0)
    big = magnitude_cine_to_sample(frames, coils=2, snr_db=float("inf"), seed=0, field=(20, 15))
    assert big.kspace.shape == (2, 3, 20, 15) and big.maps.shape == (2, 1, 20, 15)
    inner = big.target[:, 4:16, 2:12]
    np.testing.assert_allclose(inner.abs().numpy(), small.target.abs().numpy(), rtol=1e-5, atol=1e-6)
    outside = big.target.abs().clone()
    outside[:, 4:16, 2:12] = 0
    assert float(outside.max()) < 1e-6  # zero up to the FFT round trip of the target
    with pytest.raises(ConfigError, match="field"):
        magnitude_cine_to_sample(frames, coils=2, seed=0, field=(11, 15))
