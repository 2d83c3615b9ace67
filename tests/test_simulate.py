"""Synthetic cine simulator, real-cine converter and the ``cinerecon simulate`` command."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from cinerecon.cli import main
from cinerecon.data.h5 import read_h5, read_split
from cinerecon.data.simulate import (HEART_LABELS, LABELS, SimConfig, birdcage_maps, contraction_curve,
                                     load_real_cine_npz, magnitude_cine_to_sample, real_cine_to_sample,
                                     simulate_cine, simulate_dataset, simulate_phantom)
from cinerecon.data.transforms import default_acs
from cinerecon.errors import ConfigError, DataError, OutputExistsError

SMALL = SimConfig(frames=6, coils=4, size=(40, 36), seed=3)


def _np_reduce(kspace: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Reference S^H F^-1 k with NumPy's FFT (centred, orthonormal)."""
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    return (np.conj(maps) * img).sum(axis=0)


def test_deterministic_for_a_seed_and_leaves_global_rng_alone():
    np_state = np.random.get_state()[1].copy()
    torch_state = torch.random.get_rng_state().clone()
    a, b = simulate_cine(SMALL), simulate_cine(SMALL)
    assert torch.equal(a.kspace, b.kspace) and torch.equal(a.maps, b.maps) and torch.equal(a.target, b.target)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    c = simulate_cine(replace(SMALL, seed=4))
    assert not torch.allclose(a.target, c.target, atol=1e-3)
    # the anatomy itself (not only noise) changes with the seed
    la, lc = simulate_phantom(SMALL).labels, simulate_phantom(replace(SMALL, seed=4)).labels
    assert (la != lc).mean() > 0.02


@pytest.mark.parametrize("view,size", [("sax", (40, 36)), ("lax", (33, 48))])
def test_sample_shapes_and_meta(view, size):
    s = simulate_cine(replace(SMALL, view=view, size=size, frames=5, coils=3))
    h, w = size
    assert s.kspace.shape == (3, 5, h, w) and s.kspace.dtype == torch.complex64
    assert s.maps.shape == (3, 1, h, w) and s.target.shape == (5, h, w)
    assert s.mask.shape == (1, 1, 1, w) and bool((s.mask == 1).all())
    assert s.meta.accel == 1 and s.meta.view == view
    assert len(s.meta.frame_times_ms) == 5 and np.all(np.diff(s.meta.frame_times_ms) > 0)


def test_target_is_coil_combination_of_kspace_and_equals_truth_without_noise():
    cfg = replace(SMALL, snr_db=math.inf)
    s = simulate_cine(cfg)
    ref = _np_reduce(s.kspace.numpy().astype(np.complex128), s.maps.numpy().astype(np.complex128))
    np.testing.assert_allclose(s.target.numpy(), ref, atol=1e-5)
    truth = simulate_phantom(cfg).image
    np.testing.assert_allclose(s.target.numpy(), truth, atol=1e-5)
    # with noise the target still matches the k-space exactly
    noisy = simulate_cine(replace(SMALL, snr_db=20.0))
    ref = _np_reduce(noisy.kspace.numpy().astype(np.complex128), noisy.maps.numpy().astype(np.complex128))
    np.testing.assert_allclose(noisy.target.numpy(), ref, atol=1e-5)


def test_noise_level_matches_snr():
    cfg = replace(SMALL, snr_db=20.0, size=(64, 64), frames=8)
    s = simulate_cine(cfg)
    truth = simulate_phantom(cfg).image
    noise = s.target.numpy() - truth
    mag = np.abs(truth).mean(axis=0)
    mean_signal = mag[mag > 0.1 * mag.max()].mean()
    sigma = np.sqrt(np.mean(np.abs(noise) ** 2))
    assert 20 * np.log10(mean_signal / sigma) == pytest.approx(20.0, abs=0.3)


def test_maps_normalised_and_smooth():
    maps = birdcage_maps(6, (37, 50), seed=1).numpy()
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(axis=0), 1.0, atol=1e-5)
    # smooth: neighbouring pixels differ little; but coils differ from each other
    assert np.abs(np.diff(maps, axis=-1)).max() < 0.2 and np.abs(np.diff(maps, axis=-2)).max() < 0.2
    assert np.abs(maps[0] - maps[1]).mean() > 0.1
    s = simulate_cine(SMALL)
    np.testing.assert_allclose((s.maps.abs() ** 2).sum(0).numpy(), 1.0, atol=1e-5)


def test_contraction_curve_periodic_smooth():
    c = contraction_curve(200, systole=0.3, sharpness=2.0)
    assert c.min() >= 0 and c.max() <= 1 + 1e-12
    assert c[0] < 0.1 and int(np.argmax(c)) == 60
    # periodic: the wrap-around step is as small as the other steps
    steps = np.abs(np.diff(np.concatenate([c, c[:1]])))
    assert steps[-1] <= steps.max()


@pytest.mark.parametrize("view", ["sax", "lax"])
def test_cardiac_motion_in_heart_region_only(view):
    cfg = replace(SMALL, view=view, size=(64, 64), frames=12, snr_db=math.inf, texture=0.0)
    ph = simulate_phantom(cfg)
    std = np.abs(ph.image).std(axis=0)
    heart = np.isin(ph.labels, HEART_LABELS).any(axis=0)
    body = (ph.labels > 0).all(axis=0)
    outside = body & ~heart
    # also exclude a 3-pixel margin around the heart (anti-aliased edges)
    outside &= ~binary_dilation(heart, iterations=3)
    assert std[heart].mean() > 0.02
    assert std[outside].max() < 0.01 * std[heart].mean()  # nothing else moves


def test_sax_lv_contracts_and_wall_thickens():
    cfg = replace(SMALL, size=(96, 96), frames=16, snr_db=math.inf)
    ph = simulate_phantom(cfg)
    ed, es = 0, int(np.argmax(ph.contraction))
    blood = [(ph.labels[t] == LABELS.index("lv_blood")).sum() for t in (ed, es)]
    assert blood[1] < 0.7 * blood[0]
    # myocardium occupies a larger share of the LV (epicardial) area at end-systole
    lv = [np.isin(ph.labels[t], [LABELS.index("lv_blood"), LABELS.index("lv_myo")]).sum() for t in (ed, es)]
    assert 1 - blood[1] / lv[1] > 1 - blood[0] / lv[0] + 0.1


def test_bad_config():
    with pytest.raises(ConfigError):
        SimConfig(view="coronal")
    with pytest.raises(ConfigError):
        SimConfig(size=(4, 64))


def test_simulate_dataset_masks_splits_and_overwrite(tmp_path):
    cfg = replace(SMALL, frames=4, coils=2, size=(24, 30))
    paths = simulate_dataset(tmp_path, 3, cfg, accels=(4, 8))
    h5 = [p for p in paths if p.suffix == ".h5"]
    assert len(h5) == 3 and all(p.exists() for p in paths)
    split = read_split(tmp_path)
    assert sorted(sum(split.values(), [])) == sorted(h5)
    assert all(len(v) == 1 for v in split.values())
    acs = default_acs(30)
    assert acs == 8
    s = read_h5(h5[0], "R04")
    line = s.mask.reshape(-1).numpy().astype(bool)
    centre = np.zeros(30, bool)
    centre[15 - acs // 2:15 - acs // 2 + acs] = True
    outside = np.flatnonzero(line & ~centre)
    assert line[centre].all() and np.all(np.diff(outside) % 4 == 0)
    assert s.meta.accel == 4 and s.meta.acs >= acs
    np.testing.assert_array_equal(s.kspace.numpy(), (read_h5(h5[0]).kspace * s.mask).numpy())
    with pytest.raises(OutputExistsError):
        simulate_dataset(tmp_path, 3, cfg, accels=(4, 8))
    simulate_dataset(tmp_path, 3, cfg, accels=(4, 8), overwrite=True)


def test_real_cine_converter(real_cine_path):
    frames, info = load_real_cine_npz(real_cine_path)
    t, h, w = frames.shape
    assert frames.dtype == np.float32 and t >= 12
    assert len(info["trigger_time_ms"]) == t and len(info["pixel_spacing_mm"]) == 2
    # no resizing, no noise: |target| is the magnitude scaled by its 99.5th percentile
    sub = frames[:3, :48, :40]
    s = magnitude_cine_to_sample(sub, coils=4, snr_db=math.inf, seed=1)
    np.testing.assert_allclose(s.target.abs().numpy(), sub / np.percentile(sub, 99.5), atol=1e-4)
    ref = _np_reduce(s.kspace.numpy().astype(np.complex128), s.maps.numpy().astype(np.complex128))
    np.testing.assert_allclose(s.target.numpy(), ref, atol=1e-5)
    # crop to the aspect ratio then resize: the pixel spacing stays isotropic
    dy, dx = info["pixel_spacing_mm"]
    s2 = magnitude_cine_to_sample(frames, coils=3, seed=0, size=(64, 56), n_frames=12, view="sax",
                                  pixel_spacing=info["pixel_spacing_mm"], frame_times_ms=info["trigger_time_ms"])
    assert s2.kspace.shape == (3, 12, 64, 56)
    crop_w = round(w * 56 / 64) if h * 56 < w * 64 else w
    assert s2.meta.pixel_spacing == pytest.approx((dy * h / 64, dx * crop_w / 56))
    assert s2.meta.frame_times_ms[1] == pytest.approx(info["trigger_time_ms"][int(np.floor(t / 12))])
    s3 = real_cine_to_sample(real_cine_path, coils=2, size=(32, 32), n_frames=4, seed=2)
    assert s3.kspace.shape == (2, 4, 32, 32) and s3.meta.name == real_cine_path.stem
    assert s3.meta.view in ("sax", "lax", "unknown")
    np.testing.assert_allclose((s3.maps.abs() ** 2).sum(0).numpy(), 1.0, atol=1e-5)


def test_real_cine_loader_bad_files(tmp_path):
    bad = tmp_path / "no_frames.npz"
    np.savez(bad, other=np.zeros(3))
    with pytest.raises(DataError, match="frames"):
        load_real_cine_npz(bad)
    flat = tmp_path / "flat.npz"
    np.savez(flat, frames=np.zeros((4, 5)))
    with pytest.raises(DataError, match=r"\(4, 5\)"):
        load_real_cine_npz(flat)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="junk.npz"):
        load_real_cine_npz(junk)


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "sim"
    argv = ["simulate", str(out), "--subjects", "2", "--frames", "3", "--coils", "2", "--size", "20", "18",
            "--seed", "5", "--views", "sax", "lax", "--snr-db", "25", "--accels", "4", "8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    files = sorted(out.glob("*.h5"))
    assert len(files) == 4 and all(str(f) in printed for f in files)
    s = read_h5(files[0], "R08")
    assert s.kspace.shape == (2, 3, 20, 18) and s.meta.accel == 8
    assert main(argv) == 2  # refuses to overwrite
    assert "already exist" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
