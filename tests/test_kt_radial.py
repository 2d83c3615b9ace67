"""Pseudo-radial k-t masks (``kt_radial``, like CMRxRecon2024's ``ktRadial``) end to end.

The mask generator against its definition, the calibration block found in 2-D patterns,
HDF5 storage of masks that vary along the readout, coil maps from the block, and the
reconstruct paths (GRAPPA refuses in one line; the others run).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cinerecon.coils import find_calib_region
from cinerecon.errors import ConfigError, DataError
from cinerecon.masks import GOLDEN_ANGLE_DEG, MaskSpec, effective_acceleration, make_mask


@pytest.mark.parametrize("accel", [4, 8, 10, 24, 6.5])
@pytest.mark.parametrize("hw", [(64, 64), (102, 224), (123, 256)])
def test_kt_radial_reaches_the_acceleration_with_a_calibration_square(accel, hw):
    h, w = hw
    m = make_mask(MaskSpec("kt_radial", accel, 16), 6, w, seed=1, height=h)
    assert m.shape == (1, 6, h, w) and m.dtype == torch.float32
    r = effective_acceleration(m)
    if 256 / (h * w) > 1 / accel:  # the square alone samples more than 1 / R: one spoke, R not reached
        assert r < accel
    else:
        assert accel * 0.88 <= r <= accel * 1.02  # up to one spoke
    top, left = h // 2 - 8, w // 2 - 8
    assert bool((m[0, :, top:top + 16, left:left + 16] == 1).all())  # the square, in every frame
    assert bool((m[0, :, h // 2] .sum(-1) < w).any())  # not whole lines: it varies along H


def test_kt_radial_spokes_rotate_by_the_golden_angle():
    """Each frame is frame 0 turned by t times 111.25 degrees: compare the sampled angles."""
    h = w = 96
    m = make_mask(MaskSpec("kt_radial", 12, 0), 3, w, seed=5, height=h)[0].numpy()

    def angles(frame: np.ndarray) -> np.ndarray:  # angles (mod 180) of points at radius 30..40
        r, c = np.nonzero(frame)
        y, x = r - h // 2, c - w // 2
        far = (np.hypot(y, x) > 30) & (np.hypot(y, x) < 40)
        return np.sort(np.degrees(np.arctan2(y[far], x[far])) % 180.0)

    a0, a1 = angles(m[0]), angles(m[1])
    shifted = np.sort((a0 + GOLDEN_ANGLE_DEG) % 180.0)
    # every spoke point of frame 1 lies within a pixel's angle (at radius 30) of a rotated frame-0 point
    d = np.abs(((a1[:, None] - shifted[None, :]) + 90.0) % 180.0 - 90.0).min(axis=1)
    assert d.max() < math.degrees(1.5 / 30)
    assert not np.array_equal(m[0], m[1])


def test_kt_radial_is_seeded_and_leaves_global_rngs_alone():
    torch.manual_seed(0)
    np.random.seed(0)
    before = (torch.rand(1), np.random.rand())
    torch.manual_seed(0)
    np.random.seed(0)
    a = make_mask(MaskSpec("kt_radial", 8, 16), 4, 64, seed=3, height=48)
    assert (torch.rand(1), np.random.rand()) == before
    assert torch.equal(a, make_mask(MaskSpec("kt_radial", 8, 16), 4, 64, seed=3, height=48))
    assert not torch.equal(a, make_mask(MaskSpec("kt_radial", 8, 16), 4, 64, seed=4, height=48))


def test_kt_radial_needs_the_readout_size_and_a_fitting_square():
    with pytest.raises(ConfigError, match="needs height"):
        make_mask(MaskSpec("kt_radial", 8, 16), 4, 64)
    with pytest.raises(ConfigError, match=r"calibration block side must be in \[0, 32\]"):
        make_mask(MaskSpec("kt_radial", 8, 40), 4, 64, height=32)
    with pytest.raises(ConfigError, match="whole number"):
        MaskSpec("equispaced_acs", 6.5, 24)
    MaskSpec("kt_radial", 6.5, 16)  # a fractional R is a count of points, as for random_acs


@pytest.mark.parametrize("hw", [(128, 128), (204, 448), (246, 512)])
@pytest.mark.parametrize("accel", [4, 8, 24])
def test_calibration_region_of_radial_masks_is_fully_sampled(hw, accel):
    """The central row and column runs of spokes reach beyond the square's corners: the region
    must still be sampled in every frame (it was not before: ESPIRiT then calibrated on zeros)."""
    h, w = hw
    m = make_mask(MaskSpec("kt_radial", accel, 16), 12, w, seed=0, height=h)[0].bool().all(dim=0)
    reg = find_calib_region(m)
    assert bool(m[reg.top:reg.top + reg.height, reg.left:reg.left + reg.width].all())
    assert reg.height * reg.width >= 256  # at least the 16 x 16 square's area
    assert reg.top <= h // 2 < reg.top + reg.height and reg.left <= w // 2 < reg.left + reg.width


def test_calibration_region_of_line_masks_is_unchanged():
    m = make_mask(MaskSpec("equispaced_acs", 8, 24), 1, 96, seed=0)[0, 0].bool().expand(200, 96)
    reg = find_calib_region(m)
    assert (reg.height, reg.width) == (64, 24) and reg.left == 48 - 12 and reg.top == 100 - 32


def _sample(h: int = 64, w: int = 56, t: int = 6, coils: int = 8):
    from cinerecon.data.simulate import magnitude_cine_to_sample

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    frames = []
    for k in range(t):
        r = 14 + 3 * math.sin(2 * math.pi * k / t)
        img = 0.6 * (np.hypot(yy - h / 2, xx - w / 2) < 24) + 0.8 * (np.hypot(yy - h / 2 - 3, xx - w / 2 + 2) < r)
        frames.append(img + 0.05 * rng.standard_normal((h, w)))
    return magnitude_cine_to_sample(np.abs(np.stack(frames)).astype(np.float32), coils=coils, snr_db=35.0, seed=1)


def test_maps_from_the_radial_block_serve_sense_nearly_as_well_as_true_maps():
    from cinerecon.classical import CLASSICAL
    from cinerecon.commands.prepare import calib_block, calibration_problem, estimate_maps
    from cinerecon.evaluate.metrics import series_metrics

    s = _sample()
    mask = make_mask(MaskSpec("kt_radial", 4, 16), s.shape[1], s.shape[-1], seed=2, height=s.shape[-2])
    k = s.kspace * mask
    assert min(calib_block(mask, s.shape[-2])) >= 16 and calibration_problem(mask, s.shape[-2]) is None
    est = estimate_maps(k, mask, 24)
    psnr = {name: float(series_metrics(CLASSICAL["cg_sense"](k[None], mask[None], mp[None])[0], s.target,
                                       "global", with_haarpsi=False).psnr)
            for name, mp in (("true", s.maps), ("estimated", est))}
    assert psnr["estimated"] > psnr["true"] - 1.0, psnr
    zf = float(series_metrics(CLASSICAL["zero_filled"](k[None], mask[None], s.maps[None])[0], s.target,
                              "global", with_haarpsi=False).psnr)
    assert psnr["estimated"] > zf + 1.0, (psnr, zf)


def test_hdf5_stores_masks_that_vary_along_the_readout(tmp_path):
    import h5py

    from cinerecon.data.h5 import h5_info, read_h5, read_mask, write_h5

    s = _sample(h=32, w=24, t=4, coils=2)
    rad = make_mask(MaskSpec("kt_radial", 4, 8), 4, 24, seed=0, height=32)
    line = make_mask(MaskSpec("equispaced_acs", 4, 8), 4, 24, seed=0)
    f = write_h5(tmp_path / "a.h5", s, masks={"R04_ktRadial": rad, "R04": line})
    with h5py.File(f) as h:
        assert h["masks/R04_ktRadial"].shape == (4, 32, 24) and h["masks/R04"].shape == (1, 24)
    assert h5_info(f).mask_keys == ("R04", "R04_ktRadial")
    got, accel = read_mask(f, "R04_ktRadial", frames=[2, 3])
    assert accel == 4.0 and torch.equal(got, rad[:, 2:4])
    r = read_h5(f, mask_key="R04_ktRadial")
    assert torch.equal(r.mask, rad) and torch.equal(r.kspace, s.kspace * rad)
    with h5py.File(f, "a") as h:
        h["masks"].create_dataset("bad", data=np.ones((4, 31, 24), np.float32))
    with pytest.raises(DataError, match=r"masks/bad' must be \(T\|1, W\) = \(4\|1, 24\) or \(T\|1, H, W\) = "
                                        r"\(4\|1, 32, 24\), got \(4, 31, 24\)"):
        h5_info(f)
    with pytest.raises(DataError, match=r"mask 'x' must be"):
        write_h5(tmp_path / "b.h5", s, masks={"x": rad[:, :, :16]})


def test_reconstruct_radial_file(tmp_path, capsys):
    from cinerecon.cli import main
    from cinerecon.data.h5 import write_h5

    s = _sample(h=32, w=24, t=4, coils=2)
    rad = make_mask(MaskSpec("kt_radial", 4, 8), 4, 24, seed=0, height=32)
    f = write_h5(tmp_path / "a.h5", s, masks={"R04_ktRadial": rad})
    args = ["--accel", "ktRadial4", "--out", str(tmp_path / "rec"), "--formats", "h5", "--quiet"]
    assert main(["reconstruct", str(f), "--method", "grappa", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(f) in err and "'masks/R04_ktRadial' (1, 4, 32, 24)" in err
    # a folder: refused before any file is reconstructed, also one whose mask is lines
    (tmp_path / "d").mkdir()
    write_h5(tmp_path / "d" / "0_lines.h5", s, masks={"R04_ktRadial": make_mask(MaskSpec("equispaced_acs", 4, 8), 4, 24)})
    write_h5(tmp_path / "d" / "1_radial.h5", s, masks={"R04_ktRadial": rad})
    assert main(["reconstruct", str(tmp_path / "d"), "--method", "grappa", "--accel", "ktRadial4", "--out",
                 str(tmp_path / "rec_d"), "--formats", "h5", "--quiet"]) == 2
    assert "1_radial.h5" in capsys.readouterr().err and not list((tmp_path / "rec_d").rglob("*.h5"))
    # undersampled-only data, reconstructed as acquired: its stored 'mask' is checked the same way
    u = write_h5(tmp_path / "acquired.h5", s.with_mask(rad, accel=4.0, acs=0))
    assert main(["reconstruct", str(u), "--method", "grappa", "--out", str(tmp_path / "rec_u"), "--formats", "h5",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(u) in err and "mask 'mask' (1, 4, 32, 24) varies along the readout H" in err
    assert "varies along the readout H" in err and "Traceback" not in err
    assert main(["reconstruct", str(f), "--method", "lplus_s", *args]) == 0
    assert (tmp_path / "rec" / "a_lplus_s_R04_ktRadial.h5").is_file()


def test_shipped_model_takes_radial_masks_with_its_main_weights():
    """The 16 x 16 block counts as a calibration block: the main weights and the paper's L+S start."""
    from cinerecon.models import load_pretrained
    from cinerecon.models.unrolled import calibrated_items

    s = _sample(h=40, w=32, t=4, coils=4)
    rad = make_mask(MaskSpec("kt_radial", 6, 12), 4, 32, seed=0, height=40)
    k = (s.kspace * rad)[None]
    assert calibrated_items(rad[None], k) == [True]
    with torch.no_grad():
        out = load_pretrained("crunet")(k, rad[None], s.maps[None])
    assert out.shape == (1, 4, 40, 32) and bool(torch.isfinite(out).all())


def _brute_force_calibrated(mask: torch.Tensor, k: int) -> bool:
    """A k x k (k rows at most H) window containing the centre, sampled in every frame: by loops."""
    every = mask.reshape(-1, mask.shape[-2], mask.shape[-1]).bool().all(dim=0).numpy()
    h, w = every.shape
    if w < k:
        return False
    kr, kc = min(k, h), k
    for top in range(h // 2 - kr + 1, h // 2 + 1):
        for left in range(w // 2 - kc + 1, w // 2 + 1):
            if top >= 0 and left >= 0 and top + kr <= h and left + kc <= w and every[top:top + kr, left:left + kc].all():
                return True
    return False


def test_calibrated_matches_its_definition_on_2d_masks():
    from cinerecon.classical.lowrank_sparse import calibrated

    rng = np.random.default_rng(0)
    masks, want = [], []
    for i in range(40):
        h, w = int(rng.integers(3, 12)), int(rng.integers(3, 12))
        m = torch.from_numpy(rng.random((1, 3, h, w)) < 0.98).float()  # dense: blocks exist sometimes
        masks.append(m)
        want.append(_brute_force_calibrated(m, 4))
        assert calibrated(m[None], (1, 2, 3, h, w)).tolist() == [want[-1]], (h, w, m)
    assert 5 < sum(want) < 35  # both answers occur
    spokes = make_mask(MaskSpec("kt_radial", 10, 0), 6, 64, seed=0, height=64)  # spokes only, no square
    assert calibrated(spokes[None], (1, 2, 6, 64, 64)).tolist() == [_brute_force_calibrated(spokes, 4)] == [False]


def test_evaluate_refuses_grappa_by_name_on_radial_masks(tmp_path, capsys):
    from cinerecon.cli import main
    from cinerecon.data.h5 import write_h5
    from cinerecon.masks import regular_lines

    s = _sample(h=32, w=24, t=4, coils=2)
    rad = make_mask(MaskSpec("kt_radial", 4, 8), 4, 24, seed=0, height=32)
    assert not regular_lines(rad) and regular_lines(make_mask(MaskSpec("equispaced_acs", 4, 8), 4, 24))
    (tmp_path / "d").mkdir()
    f = write_h5(tmp_path / "d" / "a.h5", s, masks={"R04_ktRadial": rad,
                                                    "R04": make_mask(MaskSpec("equispaced_acs", 4, 8), 4, 24)})
    base = ["evaluate", str(tmp_path / "d"), "--accel", "R04", "ktRadial4"]  # refused before R04 is scored
    assert main([*base, "--out", str(tmp_path / "e1"), "--methods", "zero_filled", "grappa"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(f) in err and "'masks/R04_ktRadial' (1, 4, 32, 24)" in err
    assert "varies along the readout H" in err and "grappa" in err
    assert not (tmp_path / "e1" / "table1.csv").exists() and not list((tmp_path / "e1").rglob("*.png"))


def test_promptmr_original_window_on_radial_masks_is_the_central_block():
    from cinerecon.models import build_model

    model = build_model("promptmr", preset="original", num_cascades=1, n_feat0=4, feature_dim=[6, 8, 10],
                        prompt_dim=[2, 4, 6], sens_n_feat0=4, sens_feature_dim=[6, 8, 10],
                        sens_prompt_dim=[2, 4, 6], len_prompt=[2, 2, 2], prompt_size=[8, 4, 2])
    seen = {}
    real = model.sens_net.refine

    def spy(imgs):
        seen["k"] = imgs
        return real(imgs)

    model.sens_net.refine = spy
    h, w = 32, 24
    rad = make_mask(MaskSpec("kt_radial", 4, 8), 2, w, seed=0, height=h)[None]  # (1, 1, 2, H, W)
    k = torch.randn(1, 2, 2, h, w, dtype=torch.complex64) * rad
    model.estimate_maps(k, rad)
    from cinerecon.fft import fft2c

    energy = fft2c(seen["k"]).abs().sum(dim=(0, 1))
    kept = energy > 1e-4 * energy.max()  # (T, H, W) k-space points the window kept
    for t in range(2):
        rows, cols = kept[t].any(dim=1).nonzero().flatten(), kept[t].any(dim=0).nonzero().flatten()
        assert len(cols) >= 8 and len(rows) >= 8  # the 8 x 8 block at least, not one column
        assert len(cols) < w and len(rows) < h  # a low-pass window, not the whole k-space
    lines = make_mask(MaskSpec("equispaced_acs", 4, 8), 2, w, seed=0)[None]  # unchanged for line masks
    model.estimate_maps(torch.randn(1, 2, 2, h, w, dtype=torch.complex64) * lines, lines)
    energy = fft2c(seen["k"]).abs().sum(dim=(0, 1, 2))
    kept = energy > 1e-4 * energy.max()
    assert kept.all(dim=0).sum() == 8 and torch.equal(kept.any(dim=0), kept.all(dim=0))  # 8 ACS columns, all rows
