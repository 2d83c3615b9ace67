"""Writers of reconstructions: HDF5 record, NIfTI, GIF, MP4 message, overwrite protection."""

from __future__ import annotations

import importlib.util

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from cinerecon.data.export import (ReconRecord, mp4_available, output_paths, read_recon_h5, to_uint8, write_gif,
                                   write_mp4, write_nifti, write_outputs, write_recon_h5)
from cinerecon.errors import ConfigError, OutputExistsError
from conftest import REAL_CINE_DIR


def cine(t=5, h=12, w=9, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, h, w, dtype=torch.complex64, generator=g)


def test_nifti_axes_spacing_and_values(tmp_path):
    x = cine()
    p = write_nifti(tmp_path / "a.nii.gz", x, pixel_spacing=(1.5, 2.0), frame_interval_ms=40.0)
    img = nib.load(p)
    data = np.asarray(img.dataobj)
    assert data.shape == (12, 9, 1, 5)
    np.testing.assert_allclose(data[:, :, 0, 3], x[3].abs().numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.diag(img.affine), [1.5, 2.0, 1.0, 1.0])
    assert img.header.get_zooms() == pytest.approx((1.5, 2.0, 1.0, 40.0))
    assert img.header.get_xyzt_units() == ("mm", "msec")
    assert b"no scanner geometry" in img.header["descrip"].tobytes()


def test_nifti_without_frame_time_says_unknown(tmp_path):
    img = nib.load(write_nifti(tmp_path / "a.nii.gz", cine()))
    assert img.header.get_xyzt_units() == ("mm", "unknown") and img.header.get_zooms()[3] == 1.0


def test_gif_upscaled_to_readable_size_keeping_aspect(tmp_path):
    import imageio.v3 as iio

    x = cine(t=3, h=48, w=40)
    frames = iio.imread(write_gif(tmp_path / "a.gif", x), index=None)
    assert frames.shape[1:3] == (48 * 7, 40 * 7)  # 7 = ceil(256 / 40): short side >= 256
    frames = iio.imread(write_gif(tmp_path / "b.gif", x, scale=2), index=None)
    assert frames.shape[1:3] == (96, 80)
    with pytest.raises(ConfigError, match="scale"):
        write_gif(tmp_path / "c.gif", x, scale=0)
    with pytest.raises(ConfigError, match="fps"):
        write_gif(tmp_path / "c.gif", x, fps=-1)
    assert not (tmp_path / "c.gif").exists()


def test_outputs_honour_umask_and_leave_no_temporary_file(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        paths = write_outputs(tmp_path / "s", ReconRecord(cine()), ["h5", "nifti", "gif"])
    finally:
        os.umask(old)
    for p in paths.values():
        assert p.stat().st_mode & 0o777 == 0o644, p
    old = os.umask(0o077)
    try:
        p = write_recon_h5(tmp_path / "private.h5", ReconRecord(cine()))
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o600
    assert sorted(q.name for q in tmp_path.iterdir()) == ["private.h5", "s.gif", "s.h5", "s.nii.gz"]


def test_failed_write_removes_its_temporary_file_whose_name_matches_no_input_glob(tmp_path):
    from cinerecon.files import atomic_output

    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "x.h5") as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".part")
            assert not list(tmp_path.rglob("*.h5")) and not list(tmp_path.rglob("*.pt"))
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_gif_frames_match_numpy_window(tmp_path):
    import imageio.v3 as iio

    x = cine(t=4, h=10, w=8, seed=1)
    p = write_gif(tmp_path / "a.gif", x, fps=10, scale=1)
    frames = iio.imread(p, index=None)
    if frames.ndim == 4:  # RGB(A) decoding
        frames = frames[..., 0]
    mag = x.abs().numpy()
    ref = np.clip(np.round(mag / np.percentile(mag, 99.5) * 255), 0, 255)
    assert frames.shape == (4, 10, 8)
    assert np.abs(frames.astype(float) - ref).max() <= 1
    meta = iio.immeta(p, index=0)
    assert meta.get("duration") == pytest.approx(100, abs=1)


REAL_SAX = REAL_CINE_DIR / "subj1_sax_EC.npz"


@pytest.mark.skipif(not REAL_SAX.is_file(), reason=f"{REAL_SAX} not present")
def test_gif_of_a_real_zero_filled_cine_reads_back_exactly(tmp_path):
    """Pillow's palette optimisation gave frames their own palettes: unreadable by imageio, +-1 grey level.

    (A zero-filled real SAX cine with a mask that changes every frame is a case where it did.)
    """
    import imageio.v3 as iio
    from cinerecon.classical import CLASSICAL
    from cinerecon.data.export import movie_frames
    from cinerecon.data.simulate import real_cine_to_sample

    s = real_cine_to_sample(str(REAL_SAX), coils=6, snr_db=35.0, seed=1, size=(96, 80), n_frames=25)
    w = s.kspace.shape[-1]
    m = torch.zeros(1, 25, 1, w)
    for i in range(25):
        m[0, i, 0, (i % 8)::8] = 1
        m[0, i, 0, w // 2 - 4:w // 2 + 4] = 1
    x = CLASSICAL["zero_filled"](s.kspace[None] * m, m[None], s.maps[None])[0]
    p = write_gif(tmp_path / "many.gif", x, scale=1)
    frames = iio.imread(p, index=None)
    if frames.ndim == 4:
        frames = frames[..., 0]
    assert np.array_equal(frames, movie_frames(x, 1))


def test_to_uint8_constant_and_zero_images():
    assert to_uint8(np.zeros((2, 3, 3), np.float32)).max() == 0
    assert to_uint8(np.full((2, 3, 3), 5.0, np.float32)).min() == 255


def test_recon_h5_readable_with_plain_h5py(tmp_path):
    x = cine()
    rec = ReconRecord(x, name="P001/cine_sax/slice00", method="zero_filled", source="in.h5", mask_key="R08",
                      accel=8.0, acs=24, seconds=0.5, view="sax", pixel_spacing=(1.5, 2.0))
    p = write_recon_h5(tmp_path / "r.h5", rec)
    with h5py.File(p, "r") as f:
        np.testing.assert_array_equal(f["recon"][()], x.numpy())
        assert f.attrs["method"] == "zero_filled" and f.attrs["mask_key"] == "R08"
        np.testing.assert_allclose(f.attrs["pixel_spacing"], [1.5, 2.0])
    back = read_recon_h5(p)
    assert back.method == "zero_filled" and back.accel == 8.0 and back.pixel_spacing == (1.5, 2.0)
    assert back.frame_times_ms is None


def test_refuses_overwrite_and_leaves_file_untouched(tmp_path):
    p = tmp_path / "a.nii.gz"
    write_nifti(p, cine(seed=0))
    before = p.read_bytes()
    with pytest.raises(OutputExistsError, match="a.nii.gz"):
        write_nifti(p, cine(seed=1))
    assert p.read_bytes() == before
    write_nifti(p, cine(seed=1), overwrite=True)
    assert p.read_bytes() != before
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a.nii.gz"]  # no temporary files left


def test_write_outputs_checks_all_targets_first(tmp_path):
    stem = tmp_path / "out" / "s"
    paths = output_paths(stem, ["h5", "nifti", "gif"])
    paths["gif"].parent.mkdir(parents=True)
    paths["gif"].write_bytes(b"user file")
    with pytest.raises(OutputExistsError):
        write_outputs(stem, ReconRecord(cine()), ["h5", "nifti", "gif"])
    assert not paths["h5"].exists() and not paths["nifti"].exists()
    assert paths["gif"].read_bytes() == b"user file"
    with pytest.raises(ConfigError, match="unknown output format"):
        output_paths(stem, ["png"])


@pytest.mark.skipif(mp4_available(), reason="an ffmpeg backend is installed")
def test_mp4_without_backend_says_what_to_install(tmp_path):
    with pytest.raises(ConfigError, match="imageio-ffmpeg"):
        write_mp4(tmp_path / "a.mp4", cine())
    assert not (tmp_path / "a.mp4").exists()


@pytest.mark.skipif(not mp4_available(), reason="no ffmpeg backend installed")
def test_mp4_round_trip_frame_count(tmp_path):
    import imageio.v3 as iio

    x = cine(t=5, h=48, w=40)
    path = write_mp4(tmp_path / "a.mp4", x)
    frames = iio.imread(path, plugin="FFMPEG" if importlib.util.find_spec("imageio_ffmpeg") else "pyav")
    assert frames.shape[:3] == (5, 48 * 7, 40 * 7)  # aspect ratio kept, short side >= 256
    odd = iio.imread(write_mp4(tmp_path / "b.mp4", cine(t=2, h=5, w=3), scale=1),
                     plugin="FFMPEG" if importlib.util.find_spec("imageio_ffmpeg") else "pyav")
    assert odd.shape[1:3] == (6, 4)  # one black row / column for the encoder, no resize
    with pytest.raises(OutputExistsError):
        write_mp4(path, x)
