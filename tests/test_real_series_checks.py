"""Real magnitude series (.npz): unusable or corrupt files are refused in one line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cinerecon.data.realistic import RealCineConfig, RealCineDataset, load_series
from cinerecon.data.simulate import MIN_REAL_SIDE, load_real_cine_npz, real_cine_to_sample
from cinerecon.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _one_line(e: pytest.ExceptionInfo, path: Path, *expect: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    for x in expect:
        assert x in msg, (x, msg)
    return msg


def _blob(t: int = 4, h: int = 16, w: int = 16) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return np.stack([200 + 800 * ((y - h / 2) ** 2 + (x - w / 2) ** 2 < (3 + k) ** 2) for k in range(t)])


@pytest.mark.parametrize("frames, expect", [
    (_blob().astype(np.float32) - 500, ["negative values", "min -300", "(4, 16, 16)"]),
    (np.where(_blob() > 500, -1e-3, 1.0).astype(np.float64), ["negative values", "min -0.001"]),
    (_blob().astype(np.complex64), ["complex", "complex64", "(4, 16, 16)"]),
    (np.ones((5, 1, 16), np.uint16), ["(5, 1, 16)", f"at least {MIN_REAL_SIDE} pixels"]),
    (np.ones((5, 16, 7), np.float32), ["(5, 16, 7)", f"at least {MIN_REAL_SIDE} pixels"]),
    (np.full((3, 16, 16), "a"), ["dtype <U1", "not real numbers"]),
    (np.full((5, 8, 8), np.nan, np.float32), ["NaN", "(5, 8, 8)"]),  # kept
    (np.ones((8, 8), np.float32), ["(T, H, W)", "(8, 8)"]),  # kept
])
def test_unusable_frames_are_refused_naming_file_key_and_shape(tmp_path, frames, expect):
    path = tmp_path / "bad_sax.npz"
    np.savez(path, frames=frames)
    for load in (load_real_cine_npz, load_series, real_cine_to_sample):
        with pytest.raises(DataError) as e:
            load(path)
        _one_line(e, path, "key 'frames'", *expect)


def test_too_few_frames_still_refused(tmp_path):
    path = tmp_path / "short.npz"
    np.savez(path, frames=np.ones((2, 8, 8), np.float32))
    with pytest.raises(DataError) as e:
        load_series(path)
    _one_line(e, path, "at least 3 frames", "(2, 8, 8)")


def test_usable_series_still_load(tmp_path):
    path = tmp_path / "ok_sax.npz"
    np.savez(path, frames=np.zeros((3, MIN_REAL_SIDE, MIN_REAL_SIDE), np.uint16) + 5,
             trigger_time_ms=np.arange(3.0) * 40, pixel_spacing_mm=np.array([1.5, 1.5]))
    frames, info = load_real_cine_npz(path)
    assert frames.shape == (3, 8, 8) and frames.dtype == np.float32 and info["trigger_time_ms"] == (0.0, 40.0, 80.0)
    good = tmp_path / "blob.npz"
    np.savez(good, frames=_blob(5).astype(np.uint16))
    assert load_series(good).shape == (5, 16, 16)
    assert len(RealCineDataset(RealCineConfig(items_per_epoch=1, frames=4, size=(16, 16)), [good], seed=0)) == 1


def _corrupt_files(d: Path) -> dict[str, Path]:
    good = d / "good.npz"
    np.savez(good, frames=_blob().astype(np.uint16))
    raw = good.read_bytes()
    out = {}

    def put(name, data):
        out[name] = d / f"{name}.npz"
        out[name].write_bytes(data)

    put("truncated", raw[:len(raw) // 2])
    put("tail_cut", raw[:-10])
    rnd = np.random.default_rng(0).bytes(300)
    assert not rnd.startswith((b"PK", b"\x93NUMPY"))
    put("random", rnd)
    put("empty", b"")
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    put("bad_crc", bytes(flipped))
    np.savez_compressed(d / "z.npz", frames=np.random.default_rng(1).random((4, 16, 16)))
    zraw = bytearray((d / "z.npz").read_bytes())
    for i in range(100, 400):
        zraw[i] ^= 0x55
    put("bad_deflate", bytes(zraw))
    np.save(d / "plain.npy", _blob())
    put("plain_npy", (d / "plain.npy").read_bytes())
    return out


@pytest.mark.parametrize("name", ["truncated", "tail_cut", "random", "empty", "bad_crc", "bad_deflate", "plain_npy"])
def test_corrupt_file_is_not_a_readable_npz(tmp_path, name):
    path = _corrupt_files(tmp_path)[name]
    for load in (load_real_cine_npz, load_series):
        with pytest.raises(DataError) as e:
            load(path)
        msg = _one_line(e, path, "not a readable .npz (")
        assert "pickle" not in msg.lower()


def test_missing_file_and_pickled_key(tmp_path):
    with pytest.raises(DataError) as e:
        load_real_cine_npz(tmp_path / "absent.npz")
    _one_line(e, tmp_path / "absent.npz", "not a readable .npz (No such file")
    path = tmp_path / "objects.npz"
    np.savez(path, frames=_blob(), series_description=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError) as e:
        load_real_cine_npz(path)
    _one_line(e, path, "key 'series_description' holds pickled Python objects")


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data absent")
def test_shared_real_series_pass_the_checks():
    files = sorted(SHARED.glob("real_cine*/*.npz"))
    if not files:
        pytest.skip("no shared real series")
    for f in files:
        frames = load_series(f)
        assert frames.ndim == 3 and min(frames.shape[1:]) >= MIN_REAL_SIDE and frames.min() >= 0


@pytest.mark.parametrize("times", [np.array([0.0, np.nan, 80.0]), np.array([0.0, 80.0, 40.0]),
                                   np.array([0.0, np.inf, 80.0]), np.array(["0", "40", "80"])])
def test_bad_trigger_times_are_refused(tmp_path, times):
    """Trigger times that would land in a prepared file as frame times must be finite and ordered."""
    path = tmp_path / "times_sax.npz"
    np.savez(path, frames=_blob(3).astype(np.uint16), trigger_time_ms=times)
    with pytest.raises(DataError) as e:
        load_real_cine_npz(path)
    _one_line(e, path, "key 'trigger_time_ms'", "(3,)", "never decrease")
