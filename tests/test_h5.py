"""Our HDF5 format, CineH5Dataset (windows, on-the-fly and mixed masks), split lists, transforms."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cinerecon.data.h5 import CineH5Dataset, h5_info, read_h5, read_split, write_h5
from cinerecon.data.sample import CineSample, SampleMeta, collate
from cinerecon.data.transforms import augment, window_indices
from cinerecon.errors import ConfigError, DataError, OutputExistsError
from cinerecon.fft import fft2c
from cinerecon.masks import MaskSpec, acs_lines, make_mask

C, T, H, W = 3, 5, 12, 16


def _sample(seed: int = 0, c: int = C, t: int = T, h: int = H, w: int = W) -> CineSample:
    """Random fully sampled sample whose target is S^H F^-1 k (unit-norm maps)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t, h, w, dtype=torch.complex64, generator=g)
    maps = torch.randn(c, 1, h, w, dtype=torch.complex64, generator=g)
    maps = maps / (maps.abs() ** 2).sum(0, keepdim=True).sqrt()
    k = fft2c(maps * x)
    meta = SampleMeta(name=f"s{seed}", view="sax", pixel_spacing=(1.5, 1.25),
                      frame_times_ms=tuple(40.0 * i for i in range(t)))
    return CineSample(k, torch.ones(1, 1, 1, w), maps, x, meta)


def _masks(w: int = W, t: int = T) -> dict[str, torch.Tensor]:
    return {"R04": make_mask(MaskSpec("equispaced_acs", 4, 4), t, w, seed=1),
            "R08": make_mask(MaskSpec("equispaced_acs", 8, 4), t, w, seed=2),
            "R04_time_varying": make_mask(MaskSpec("time_varying", 4, 0), t, w, seed=3)}


@pytest.fixture
def h5file(tmp_path):
    s = _sample()
    return write_h5(tmp_path / "a.h5", s, _masks()), s


def test_round_trip(h5file):
    path, s = h5file
    r = read_h5(path)
    for a, b in ((r.kspace, s.kspace), (r.maps, s.maps), (r.target, s.target), (r.mask, s.mask)):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert r.meta.name == "s0" and r.meta.view == "sax" and r.meta.accel == 1
    assert r.meta.pixel_spacing == (1.5, 1.25) and r.meta.frame_times_ms == s.meta.frame_times_ms
    assert r.meta.source == str(path)
    with h5py.File(path) as f:
        assert f["kspace"].shape == (C, T, H, W) and f["maps"].shape == (C, 1, H, W)
        assert f["masks/R08"].shape == (1, W) and f["masks/R04_time_varying"].shape == (T, W)
        assert bool(f.attrs["fully_sampled"]) and int(f.attrs["coils"]) == C
        assert sorted(f.attrs["accels"].tolist()) == [4.0, 4.0, 8.0]
    info = h5_info(path)
    assert info.shape == (C, T, H, W) and info.mask_keys == ("R04", "R04_time_varying", "R08")


def test_read_with_mask_key(h5file):
    path, s = h5file
    m = _masks()["R08"]
    r = read_h5(path, "R08")
    torch.testing.assert_close(r.kspace, s.kspace * m, rtol=0, atol=0)
    assert r.meta.accel == 8 and r.meta.acs == acs_lines(m) >= 4
    assert r.mask.shape == (1, 1, 1, W) and torch.equal(r.mask, m)
    tv = read_h5(path, "R04_time_varying")
    assert tv.mask.shape == (1, T, 1, W) and tv.meta.acs == 0
    # reading a frame subset also subsets the time-varying mask
    sub = read_h5(path, "R04_time_varying", frames=[4, 0])
    torch.testing.assert_close(sub.kspace, tv.kspace[:, [4, 0]], rtol=0, atol=0)
    assert torch.equal(sub.mask, tv.mask[:, [4, 0]])


def test_refuses_to_overwrite(h5file):
    path, s = h5file
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="a.h5"):
        write_h5(path, _sample(1))
    assert path.read_bytes() == before
    write_h5(path, _sample(1), overwrite=True)
    assert read_h5(path).meta.name == "s1"


def test_write_rejects_bad_mask_and_leaves_nothing(tmp_path):
    with pytest.raises(DataError, match=r"'R08'.*\(2, 17\)"):
        write_h5(tmp_path / "bad.h5", _sample(), {"R08": torch.ones(2, W + 1)})
    assert list(tmp_path.iterdir()) == []


def _rewrite(path, edit):
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def _replace(key, value):
    def edit(f):
        del f[key]
        f[key] = value
    return edit


@pytest.mark.parametrize("edit,pattern", [
    (lambda f: f.__delitem__("kspace"), r"missing dataset 'kspace'"),
    (lambda f: f.__delitem__("maps"), r"missing dataset 'maps'"),
    (_replace("kspace", np.zeros((C, T, H), np.complex64)), r"'kspace'.*\(3, 5, 12\)"),
    (_replace("kspace", np.zeros((C, T, H, W), np.float32)), r"'kspace'.*complex"),
    (_replace("maps", np.ones((C + 1, 1, H, W), np.complex64)), r"coil count mismatch.*\(4, 1, 12, 16\)"),
    (_replace("maps", np.ones((C, 1, H, W - 1), np.complex64)), r"'maps'.*\(3, 1, 12, 15\)"),
    (_replace("target", np.ones((T + 1, H, W), np.complex64)), r"'target'.*\(6, 12, 16\)"),
    (_replace("masks/R08", np.ones((2, W), np.float32)), r"masks/R08.*\(2, 16\)"),
    (lambda f: f.attrs.__setitem__("coils", 7), r"'coils'.*\(3, 5, 12, 16\)"),
])
def test_bad_structure_raises_data_error(h5file, edit, pattern):
    path, _ = h5file
    _rewrite(path, edit)
    with pytest.raises(DataError, match=pattern) as e:
        read_h5(path, "R08")
    assert str(path) in str(e.value)


def test_nan_values(h5file):
    path, s = h5file
    k = s.kspace.numpy().copy()
    k[0, 1, 2, 3] = np.nan
    _rewrite(path, _replace("kspace", k))
    with pytest.raises(DataError, match=r"a.h5.*'kspace'.*\(3, 5, 12, 16\).*NaN"):
        read_h5(path)


def test_missing_mask_key(h5file):
    path, _ = h5file
    with pytest.raises(DataError, match=r"a.h5.*masks/R10.*R04"):
        read_h5(path, "R10")


def test_truncated_and_garbage_files(h5file, tmp_path):
    path, _ = h5file
    data = path.read_bytes()
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="trunc.h5"):
        read_h5(trunc)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DataError, match="junk.h5"):
        read_h5(junk)
    with pytest.raises(DataError, match="nothere.h5"):
        read_h5(tmp_path / "nothere.h5")


def test_mask_on_undersampled_file_is_refused(tmp_path):
    s = _sample()
    m = _masks()["R04"]
    path = write_h5(tmp_path / "u.h5", s.with_mask(m, accel=4), {"R08": _masks()["R08"]})
    r = read_h5(path)
    assert torch.equal(r.mask, m) and r.meta.accel == 4
    with pytest.raises(DataError, match="not fully sampled"):
        read_h5(path, "R08")


def test_window_indices_circular():
    np.testing.assert_array_equal(window_indices(6, 3, 5), [5, 0, 1])
    np.testing.assert_array_equal(window_indices(6, 6, 2), [2, 3, 4, 5, 0, 1])
    with pytest.raises(ConfigError):
        window_indices(4, 5, 0)


def test_dataset_windows_are_circular_adjacent_frames(h5file):
    path, s = h5file
    ds = CineH5Dataset([path], mask_key="R08", frames_window=3, seed=7)
    starts = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item.kspace.shape == (C, 3, H, W) and item.target.shape == (3, H, W)
        # find the start by matching the first frame, then check the whole window
        start = next(i for i in range(T) if torch.equal(item.target[0], s.target[i]))
        idx = [(start + j) % T for j in range(3)]
        torch.testing.assert_close(item.target, s.target[idx], rtol=0, atol=0)
        torch.testing.assert_close(item.kspace, s.kspace[:, idx] * _masks()["R08"], rtol=0, atol=0)
        assert item.meta.frame_times_ms == tuple(s.meta.frame_times_ms[i] for i in idx)
        starts.add(start)
    assert len(starts) >= 3 and starts & {3, 4}  # random starts, some windows wrap around
    ds.set_epoch(3)
    assert torch.equal(ds[0].target, ds[0].target)  # deterministic per (seed, epoch, index)
    fixed = CineH5Dataset([path], mask_key=None, frames_window=2, window_start=4)
    torch.testing.assert_close(fixed[0].target, s.target[[4, 0]], rtol=0, atol=0)
    with pytest.raises(DataError, match="frames_window"):
        CineH5Dataset([path], frames_window=T + 1)[0]


def test_dataset_mixed_masks(h5file):
    path, s = h5file
    specs = [MaskSpec("equispaced_acs", 4, 4), MaskSpec("time_varying", 8, 0)]
    ds = CineH5Dataset([path, path], mask_spec=specs, seed=1)
    seen = {}
    for epoch in range(10):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            seen[item.meta.accel] = item.mask.shape
            lines = item.mask.reshape(-1, W).sum(1)
            if item.meta.accel == 4:
                assert item.mask.shape == (1, 1, 1, W) and item.meta.acs >= 4 and lines.item() >= W / 4
            else:
                assert item.mask.shape == (1, T, 1, W) and bool((lines == W / 8).all())
            torch.testing.assert_close(item.kspace, s.kspace * item.mask, rtol=0, atol=0)
    assert set(seen) == {4.0, 8.0}
    ds.set_epoch(0)
    a, b = ds[0].mask, ds[0].mask
    assert torch.equal(a, b)


def test_dataset_is_lazy_and_batches(h5file, tmp_path):
    path, _ = h5file
    ds = CineH5Dataset([path, tmp_path / "missing.h5"], mask_key="R04")
    assert len(ds) == 2 and ds.files[1].name == "missing.h5"
    with pytest.raises(DataError, match="missing.h5"):
        ds[1]
    write_h5(tmp_path / "b.h5", _sample(2), _masks())
    folder = CineH5Dataset(tmp_path, mask_key="R04")
    assert [p.name for p in folder.files] == ["a.h5", "b.h5"]
    batch = next(iter(DataLoader(folder, batch_size=2, collate_fn=collate)))
    assert batch.kspace.shape == (2, C, T, H, W) and batch.mask.shape == (2, 1, 1, 1, W)


def test_read_split(h5file, tmp_path):
    path, _ = h5file
    b = write_h5(tmp_path / "b.h5", _sample(2))
    assert read_split(tmp_path) == {"train": [], "val": [], "test": [path, b]}
    (tmp_path / "train.txt").write_text("a.h5\n\n# comment\n")
    (tmp_path / "test.txt").write_text(f"{b}\n")
    assert read_split(tmp_path) == {"train": [path], "val": [], "test": [b]}
    (tmp_path / "val.txt").write_text("gone.h5\n")
    with pytest.raises(DataError, match=r"val.txt.*line 1.*gone.h5"):
        read_split(tmp_path)


def test_augment_keeps_kspace_maps_target_consistent():
    s = _sample(3, t=4, h=9, w=8)
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(8):
        a = augment(s, rng)
        img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(a.kspace.numpy().astype(np.complex128), axes=(-2, -1)),
                                           norm="ortho"), axes=(-2, -1))
        ref = (np.conj(a.maps.numpy()) * img).sum(0)
        np.testing.assert_allclose(a.target.numpy(), ref, atol=1e-5)
        flipped = not torch.equal(a.maps, s.maps)
        kinds.add(flipped)
    assert kinds == {True, False}
    with pytest.raises(DataError, match="fully sampled"):
        augment(s.with_mask(_masks(8, 4)["R04"]), rng)
