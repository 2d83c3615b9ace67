"""Training data from real magnitude cines: augmentation, coil geometries, masks, items, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cinerecon.data.augment import AugmentConfig, add_phase, augment_magnitude, resample_time, spatial_transform
from cinerecon.data.coil_geometry import compress_maps, random_coil_maps, surface_array_maps
from cinerecon.data.realistic import (RealCineConfig, RealCineDataset, default_masks, find_series, load_series,
                                      scaled_acs, split_series, validation_samples)
from cinerecon.data.sample import collate
from cinerecon.errors import CineReconError, ConfigError, DataError
from cinerecon.fft import fft2c
from cinerecon.masks import MaskSpec
from cinerecon.operators import SenseOp

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _moving_blob(t: int = 10, h: int = 48, w: int = 40) -> np.ndarray:
    """A bright disc whose radius beats over the cycle, on a dimmer body: (T, H, W) uint16-like."""
    y, x = np.mgrid[:h, :w]
    frames = []
    for k in range(t):
        r = 6 + 3 * math.sin(2 * math.pi * k / t)
        body = ((y - h / 2) ** 2 / (0.4 * h) ** 2 + (x - w / 2) ** 2 / (0.4 * w) ** 2) < 1
        disc = (y - h / 2) ** 2 + (x - w / 2) ** 2 < r ** 2
        frames.append(200.0 * body + 600.0 * disc)
    return np.stack(frames).astype(np.float32)


@pytest.fixture()
def series_dir(tmp_path: Path) -> Path:
    np.savez(tmp_path / "a_sax.npz", frames=_moving_blob().astype(np.uint16))
    np.savez(tmp_path / "b_lax.npz", frames=_moving_blob(8, 40, 48).astype(np.uint16))
    return tmp_path


def _cfg(**kw) -> RealCineConfig:
    base = dict(size=(32, 32), frames=6, items_per_epoch=4, coils=(3, 5), phantom_fraction=0.0,
                augment=AugmentConfig(ref_size=48))
    base.update(kw)
    return RealCineConfig(**base)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_time_resampling_walks_the_cycle_one_frame_per_step(seed: int):
    t0 = 8
    ang = 2 * np.pi * np.arange(t0) / t0
    frames = np.stack([np.cos(ang), np.sin(ang)], axis=-1)[:, None, :].astype(np.float32)  # (T0, 1, 2)
    out = resample_time(frames, t0, np.random.default_rng(seed), AugmentConfig(p_rate=0.0))
    phase = np.unwrap(np.arctan2(out[:, 0, 1], out[:, 0, 0]))
    steps = np.diff(phase)
    # linear interpolation between neighbours on the circle: every step is one frame (2 pi / T0),
    # all in the same direction, and wrapping from the last frame to the first is seamless
    assert np.all(np.abs(np.abs(steps) - 2 * np.pi / t0) < 0.2)
    assert np.all(np.sign(steps) == np.sign(steps[0]))


def test_spatial_transform_of_constant_is_constant_inside():
    frames = np.full((3, 64, 64), 5.0, dtype=np.float32)
    cfg = AugmentConfig(ref_size=64, zoom=(1.0, 1.0), elastic_px=0.0)
    out = spatial_transform(frames, (16, 16), np.random.default_rng(0), cfg)
    # the crop centre lies in [0.2, 0.8] of the image and the crop is a quarter of it: all inside
    assert np.allclose(out, 5.0, atol=1e-4)


def test_augment_is_seeded_and_leaves_global_rng_alone():
    frames = _moving_blob()
    np.random.seed(123)
    torch.manual_seed(123)
    before = (np.random.random(), torch.rand(1).item())
    np.random.seed(123)
    torch.manual_seed(123)
    a = augment_magnitude(frames, 6, (24, 20), np.random.default_rng(7))
    b = augment_magnitude(frames, 6, (24, 20), np.random.default_rng(7))
    c = augment_magnitude(frames, 6, (24, 20), np.random.default_rng(8))
    after = (np.random.random(), torch.rand(1).item())
    assert before == after
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == (6, 24, 20) and a.dtype == np.float32
    assert np.percentile(a, 99.5) == pytest.approx(1.0, rel=1e-4)
    z = add_phase(a, np.random.default_rng(0))
    np.testing.assert_allclose(np.abs(z), a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("coils", [1, 7, 12])
def test_surface_array_maps_are_normalised(coils: int):
    maps = surface_array_maps(coils, (20, 24), np.random.default_rng(coils))
    assert maps.shape == (coils, 1, 20, 24) and maps.dtype == torch.complex64
    torch.testing.assert_close((maps.abs() ** 2).sum(0), torch.ones(1, 20, 24), atol=1e-5, rtol=0)


def test_surface_array_phase_is_smooth_where_the_coil_sees():
    maps = surface_array_maps(8, (64, 64), np.random.default_rng(2))
    # neighbours along W, then along H (no wrap-around): the phase never jumps where the coil sees
    for a, b in ((maps[..., 1:], maps[..., :-1]), (maps[..., 1:, :], maps[..., :-1, :])):
        jump = torch.angle(a * b.conj()).abs()
        assert float(jump[(a.abs() > 0.1) & (b.abs() > 0.1)].max()) < 0.5


def test_compressed_maps_reproduce_compressed_data():
    maps = surface_array_maps(12, (16, 16), np.random.default_rng(1))
    small, gain = compress_maps(maps, 6)
    torch.testing.assert_close((small.abs() ** 2).sum(0), torch.ones(1, 16, 16), atol=1e-4, rtol=0)
    assert float(gain.max()) <= 1.0 + 1e-5
    # A S x = S' (g x) for any image x: compare the compressed k-space both ways
    from cinerecon.coils import coil_compress

    x = torch.randn(2, 16, 16, dtype=torch.complex64)
    k = fft2c(maps * x[None])
    k_small, _, _ = coil_compress(k, 6, coil_dim=0)
    _, _, matrix = coil_compress(maps, 6)
    k_direct = torch.einsum("vc,cthw->vthw", matrix, k)
    k_model = fft2c(small * (gain * x)[None])
    torch.testing.assert_close(k_model, k_direct, atol=2e-4, rtol=1e-3)
    assert k_small.shape == k_direct.shape


def test_random_coil_maps_respect_the_range():
    rng = np.random.default_rng(0)
    counts = {random_coil_maps((16, 16), rng, coils=(4, 6))[0].shape[0] for _ in range(20)}
    assert counts <= {4, 5, 6} and len(counts) >= 2


def test_acs_lines_scale_with_crop_width():
    assert scaled_acs(MaskSpec("equispaced_acs", 8, 24), 64, 128).acs == 12
    assert scaled_acs(MaskSpec("time_varying", 8, 0), 64, 128).acs == 0
    kinds = {m.spec.kind for m in default_masks()}
    assert {"equispaced_acs", "time_varying", "uniform"} <= kinds
    assert {m.spec.accel for m in default_masks() if m.spec.kind == "equispaced_acs"} == {4, 8, 10, 24}


def test_items_are_consistent_reproducible_and_vary_by_epoch(series_dir: Path):
    files = find_series(series_dir)
    ds = RealCineDataset(_cfg(), files, seed=5)
    a, b = ds[1], ds[1]
    torch.testing.assert_close(a.kspace, b.kspace)
    c, t, h, w = a.shape
    assert 3 <= c <= 5 and (t, h, w) == (6, 32, 32)
    # measured k-space is the mask times the coil k-space of the target plus noise only
    op = SenseOp(a.maps[None], a.mask[None])
    resid = op.forward(a.target[None]) - a.kspace[None]
    assert float(resid.norm() / a.kspace.norm()) < 0.1
    assert bool(((a.kspace != 0) <= (a.mask > 0)).all())
    ds.set_epoch(1)
    assert not torch.allclose(ds[1].target, a.target)


def test_batches_pad_coils_without_changing_the_physics(series_dir: Path):
    ds = RealCineDataset(_cfg(coils=(3, 6)), find_series(series_dir), seed=0)
    items = [ds[i] for i in range(4)]
    batch = collate(items, pad_coils=True)
    assert batch.kspace.shape[1] == max(s.shape[0] for s in items)
    for i, s in enumerate(items):
        alone = SenseOp(s.maps[None], s.mask[None]).adjoint(s.kspace[None])
        padded = SenseOp(batch.maps[i:i + 1], batch.mask[i:i + 1]).adjoint(batch.kspace[i:i + 1])
        torch.testing.assert_close(padded, alone)
    with pytest.raises(DataError):
        collate(items) if len({s.shape for s in items}) > 1 else collate([items[0], _other_size(items[0])])


def _other_size(s):
    from cinerecon.data.sample import CineSample

    return CineSample(s.kspace[..., :-2], s.mask[..., :-2], s.maps[..., :-2], s.target[..., :-2], s.meta)


def test_phantom_only_items_need_no_files():
    ds = RealCineDataset(_cfg(phantom_fraction=1.0), [], seed=0)
    assert ds[0].meta.name.startswith("phantom_")
    with pytest.raises(ConfigError):
        RealCineDataset(_cfg(phantom_fraction=0.5), [], seed=0)


def test_split_and_validation_items(series_dir: Path):
    files = find_series(series_dir)
    train, val = split_series(files, ["b_lax"])
    assert [p.stem for p in train] == ["a_sax"] and [p.stem for p in val] == ["b_lax"]
    with pytest.raises(ConfigError, match="c_x"):
        split_series(files, ["c_x"])
    with pytest.raises(ConfigError):
        split_series(files, ["a_sax", "b_lax"])
    items = validation_samples(_cfg(val_coils=4), val)
    assert len(items) == 3 and items[0].shape == (4, 6, 48, 48)
    assert {s.meta.name.split("/")[1] for s in items} == {"equispaced_acs_R8", "equispaced_acs_R10", "time_varying_R8"}


@pytest.mark.parametrize("frames, expect", [
    (np.full((5, 8, 8), np.nan, np.float32), "NaN"),
    (np.ones((2, 8, 8), np.float32), "at least 3 frames"),
    (np.ones((8, 8), np.float32), "(T, H, W)"),
    (np.zeros((4, 8, 8), np.float32), "all zero"),
])
def test_bad_series_are_refused_with_file_and_shape(tmp_path: Path, frames: np.ndarray, expect: str):
    path = tmp_path / "bad.npz"
    np.savez(path, frames=frames)
    with pytest.raises(CineReconError) as e:
        load_series(path)
    msg = str(e.value)
    assert str(path) in msg and expect in msg and str(frames.shape) in msg and "\n" not in msg


@pytest.mark.skipif(not (SHARED / "real_cine").is_dir(), reason="../shared real cine series absent")
def test_real_series_make_valid_items():
    files = find_series(SHARED)
    train, _ = split_series(files, ["rat_sax_8fr"])
    ds = RealCineDataset(RealCineConfig(items_per_epoch=3), train, seed=0)
    for i in range(3):
        s = ds[i]
        assert torch.isfinite(torch.view_as_real(s.kspace)).all() and s.shape[1:] == (12, 64, 64)
