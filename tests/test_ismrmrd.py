"""ISMRMRD reader on small files written with the ``ismrmrd`` package itself.

References are the k-space arrays the files were built from, with readout
oversampling removed by an independent NumPy centred FFT crop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ismrmrd = pytest.importorskip("ismrmrd")
import ismrmrd.xsd as xsd  # noqa: E402

from cinerecon.data.ismrmrd_io import IsmrmrdConfig, read_ismrmrd  # noqa: E402
from cinerecon.errors import DataError  # noqa: E402


def header_xml(enc_x: int, rec_x: int, lines: int, frames: int, centre: int | None = None,
               fov=(320.0, 240.0), traj=xsd.trajectoryType.CARTESIAN, tr: float | None = None,
               enc_fov_y: float | None = None) -> str:
    centre = lines // 2 if centre is None else centre
    enc_fov_y = fov[1] if enc_fov_y is None else enc_fov_y
    enc = xsd.encodingType(
        encodedSpace=xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=enc_x, y=lines, z=1),
                                           fieldOfView_mm=xsd.fieldOfViewMm(x=fov[0] * enc_x / rec_x, y=enc_fov_y, z=8)),
        reconSpace=xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=rec_x, y=lines, z=1),
                                         fieldOfView_mm=xsd.fieldOfViewMm(x=fov[0], y=fov[1], z=8)),
        encodingLimits=xsd.encodingLimitsType(
            kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=lines - 1, center=centre),
            phase=xsd.limitType(minimum=0, maximum=frames - 1, center=0),
            slice=xsd.limitType(minimum=0, maximum=1, center=0)),
        trajectory=traj)
    hdr = xsd.ismrmrdHeader(experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=63500000),
                            encoding=[enc],
                            sequenceParameters=None if tr is None else xsd.sequenceParametersType(TR=[tr]))
    return hdr.toXML("utf-8")


def rand_k(c, t, h, w, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((c, t, h, w)) + 1j * rng.standard_normal((c, t, h, w))).astype(np.complex64)


def write_file(path: Path, ks: list[np.ndarray], lines: np.ndarray | None = None, rec_x: int | None = None,
               noise: bool = True, reverse_every: int = 0, extra_coil_acq: bool = False, seed: int = 0,
               geometry: dict | None = None, **hdr_kw) -> Path:
    """One ISMRMRD file; ``ks[s]`` is slice s k-space (C, T, H, W); ``lines`` (T, W) bool selects acquired lines.

    ``geometry[s]`` = (position, read_dir, phase_dir, slice_dir) goes into the headers of slice s.
    """
    c, t, h, w = ks[0].shape
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(header_xml(h, rec_x or h, w, t, **hdr_kw))
    if noise:
        acq = ismrmrd.Acquisition.from_array(rand_k(c, 1, 1, h, seed=9)[:, 0, 0])
        acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        ds.append_acquisition(acq)
    rng = np.random.default_rng(seed)
    order = [(s, p, e) for s in range(len(ks)) for p in range(t) for e in range(w)
             if lines is None or lines[p, e]]
    rng.shuffle(order)
    for n, (s, p, e) in enumerate(order):
        data = ks[s][:, p, :, e]
        rev = reverse_every and n % reverse_every == 0
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data[:, ::-1] if rev else data),
                                             center_sample=h // 2)
        acq.idx.kspace_encode_step_1 = e
        acq.idx.phase = p
        acq.idx.slice = s
        if geometry is not None:
            for name, v in zip(("position", "read_dir", "phase_dir", "slice_dir"), geometry[s]):
                getattr(acq, name)[:] = [float(x) for x in v]
        if rev:
            acq.set_flag(ismrmrd.ACQ_IS_REVERSE)
        ds.append_acquisition(acq)
    if extra_coil_acq:
        acq = ismrmrd.Acquisition.from_array(rand_k(c + 1, 1, 1, h)[:, 0, 0], center_sample=h // 2)
        ds.append_acquisition(acq)
    ds.close()
    return path


def crop_readout_np(k: np.ndarray, size: int) -> np.ndarray:
    """Reference oversampling removal along axis -2 with NumPy."""
    h = k.shape[-2]
    img = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(k, axes=-2), axis=-2, norm="ortho"), axes=-2)
    img = img[..., h // 2 - size // 2: h // 2 - size // 2 + size, :]
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(img, axes=-2), axis=-2, norm="ortho"), axes=-2)


def test_fully_sampled_two_slices_with_noise_and_reversed_lines(tmp_path):
    ks = [rand_k(3, 4, 16, 12, seed=s) for s in range(2)]
    p = write_file(tmp_path / "raw.h5", ks, reverse_every=3)
    out = read_ismrmrd(p)
    assert [s.slice_index for s in out] == [0, 1]
    for s, ref in zip(out, ks):
        assert s.kspace.dtype == torch.complex64 and s.fully_sampled
        np.testing.assert_allclose(s.kspace.numpy(), ref, rtol=1e-6, atol=1e-6)
        assert s.mask.shape == (1, 1, 1, 12)
    assert out[0].pixel_spacing == pytest.approx((20.0, 20.0))  # 320 mm / 16, 240 mm / 12


def test_oversampling_removed_matches_numpy(tmp_path):
    k = rand_k(2, 3, 32, 10, seed=1)
    p = write_file(tmp_path / "os.h5", [k], rec_x=16)
    (s,) = read_ismrmrd(p)
    assert s.kspace.shape == (2, 3, 16, 10)
    np.testing.assert_allclose(s.kspace.numpy(), crop_readout_np(k, 16), rtol=1e-4, atol=1e-5)
    assert s.pixel_spacing == pytest.approx((20.0, 24.0))
    (kept,) = read_ismrmrd(p, IsmrmrdConfig(remove_oversampling=False))
    np.testing.assert_allclose(kept.kspace.numpy(), k, rtol=1e-6, atol=1e-6)


def test_undersampled_time_varying_mask_and_centre_offset(tmp_path):
    t, w = 4, 12
    lines = np.zeros((t, w), dtype=bool)
    for p in range(t):
        lines[p, p % 3::3] = True
    lines[:, 5:8] = True  # ACS around the header centre (index 6)
    k = rand_k(2, t, 8, w, seed=2)
    p = write_file(tmp_path / "us.h5", [k], lines=lines, centre=6)
    (s,) = read_ismrmrd(p)
    assert not s.fully_sampled and s.mask.shape == (1, t, 1, w)
    np.testing.assert_array_equal(s.mask[0, :, 0].numpy(), lines.astype(np.float32))
    np.testing.assert_allclose(s.kspace.numpy(), k * lines[None, :, None, :], rtol=1e-6, atol=1e-6)


def test_asymmetric_centre_grows_matrix_with_zero_lines(tmp_path):
    k = rand_k(2, 2, 8, 12, seed=3)
    # header centre line 4 of 12 (e.g. partial Fourier): the centre must land at W // 2, so W grows to 16
    (s,) = read_ismrmrd(write_file(tmp_path / "pf.h5", [k], centre=4))
    assert s.kspace.shape == (2, 2, 8, 16)
    np.testing.assert_allclose(s.kspace[..., 4:].numpy(), k, rtol=1e-6, atol=1e-6)
    assert s.kspace[..., :4].abs().max() == 0
    np.testing.assert_array_equal(s.mask[0, 0, 0].numpy(), (np.arange(16) >= 4).astype(np.float32))


def test_inconsistent_coil_counts_raises(tmp_path):
    p = write_file(tmp_path / "coils.h5", [rand_k(2, 2, 8, 6)], extra_coil_acq=True)
    with pytest.raises(DataError, match=r"coils.h5: inconsistent coil counts.*2 active channels.*3"):
        read_ismrmrd(p)


def test_corrupted_missing_and_non_cartesian(tmp_path):
    p = write_file(tmp_path / "t.h5", [rand_k(2, 3, 32, 16)])
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="t.h5"):
        read_ismrmrd(p)
    import h5py

    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("dataset")
    with pytest.raises(DataError, match=r"empty.h5: expected ISMRMRD datasets '/dataset/xml'"):
        read_ismrmrd(empty)
    rad = write_file(tmp_path / "radial.h5", [rand_k(1, 2, 8, 6)], traj=xsd.trajectoryType.RADIAL)
    with pytest.raises(DataError, match="not Cartesian"):
        read_ismrmrd(rad)
    with pytest.raises(DataError, match="not found"):
        read_ismrmrd(tmp_path / "nope.h5")


def test_prepare_ismrmrd_end_to_end(tmp_path):
    pytest.importorskip("cinerecon.coils")
    h5mod = pytest.importorskip("cinerecon.data.h5")
    from cinerecon.cli import main

    k = rand_k(3, 3, 16, 16, seed=4)
    p = write_file(tmp_path / "scan.h5", [k])
    out = tmp_path / "out"
    assert main(["prepare", "ismrmrd", str(p), str(out), "--acs", "8", "--view", "sax", "--accels", "4", "8",
                 "--quiet"]) == 0
    files = [out / "scan_s00.h5"]
    s = h5mod.read_h5(files[0])
    assert s.meta.view == "sax"
    np.testing.assert_allclose(s.kspace.numpy(), k, rtol=1e-6, atol=1e-6)
    assert s.meta.pixel_spacing == pytest.approx((20.0, 15.0))
    r8 = h5mod.read_h5(files[0], mask_key="R08")
    assert r8.mask.sum() < 16
    assert (out / "test.txt").read_text().split() == ["scan_s00.h5"]
    assert main(["prepare", "ismrmrd", str(p), str(out), "--acs", "8", "--quiet"]) == 2  # exists


def _rotation(seed: int) -> np.ndarray:
    """An oblique orthonormal frame (columns read, phase, slice), right-handed."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_two_slices_exported_to_nifti_overlay_at_scanner_positions(tmp_path):
    """Slices of one oblique series land where the headers say, in RAS world coordinates (nibabel)."""
    pytest.importorskip("cinerecon.coils")
    nib = pytest.importorskip("nibabel")
    from cinerecon.cli import main

    c, t, h, w = 2, 3, 16, 12
    rot = _rotation(1)
    read, phase, normal = rot.T
    p0 = np.array([12.0, -30.0, 45.0])
    geo = {s: (p0 + 8.0 * s * normal, read, phase, normal) for s in range(2)}
    ks = [rand_k(c, t, h, w, seed=s) for s in range(2)]
    raw = write_file(tmp_path / "geo.h5", ks, geometry=geo, tr=38.5)  # fov (320, 240, z=8): 20 mm x 20 mm, 8 mm
    data, out = tmp_path / "data", tmp_path / "recon"
    assert main(["prepare", "ismrmrd", str(raw), str(data), "--acs", "8", "--accels", "4", "--quiet"]) == 0
    assert main(["reconstruct", str(data), "--method", "zero_filled", "--accel", "none", "--out", str(out),
                 "--formats", "nifti", "--quiet"]) == 0
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    ijk = np.array([[0, 0, 0], [h - 1, 0, 0], [0, w - 1, 0], [h // 2, w // 2, 0], [5, 7, 0]], dtype=float)
    centres = []
    for s in range(2):
        img = nib.load(out / f"geo_s{s:02d}_zero_filled_stored.nii.gz")
        world = nib.affines.apply_affine(img.affine, ijk)
        lps = geo[s][0] + (ijk[:, :1] - h // 2) * 20.0 * read + (ijk[:, 1:2] - w // 2) * 20.0 * phase
        np.testing.assert_allclose(world, lps @ lps_to_ras.T, atol=1e-3)
        np.testing.assert_allclose(img.affine[:3, 2], lps_to_ras @ (8.0 * normal), atol=1e-4)
        assert img.header.get_zooms() == pytest.approx((20.0, 20.0, 8.0, 38.5), abs=1e-4)
        assert img.header.get_xyzt_units() == ("mm", "msec") and int(img.header["sform_code"]) == 1
        np.testing.assert_allclose(img.get_qform(), img.affine, atol=1e-3)  # qform agrees (rotation + flip)
        centres.append(nib.affines.apply_affine(img.affine, [h // 2, w // 2, 0]))
    # the second slice sits one slice thickness further along the slice normal, overlaying in world space
    np.testing.assert_allclose(centres[1] - centres[0], lps_to_ras @ (8.0 * normal), atol=1e-3)


def test_skewed_directions_refused_and_zero_phase_fov_gives_no_spacing(tmp_path):
    """Geometry the prepared file's reader would refuse is refused at the ISMRMRD file, by name."""
    c, t, h, w = 2, 2, 8, 6
    ks = [rand_k(c, t, h, w)]
    skew = {0: ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.6, 0.8, 0.0), (0.0, 0.0, 1.0))}
    raw = write_file(tmp_path / "skew.h5", ks, geometry=skew)
    with pytest.raises(DataError) as e:
        read_ismrmrd(raw, IsmrmrdConfig())
    assert str(raw) in str(e.value) and "read_dir" in str(e.value) and "phase_dir" in str(e.value)
    flat = write_file(tmp_path / "flat.h5", ks, enc_fov_y=0.0)  # recon FOV set, encoded phase FOV 0
    (sl,) = read_ismrmrd(flat, IsmrmrdConfig())
    assert sl.pixel_spacing is None  # rather than (40 mm, 0 mm), which no reader accepts
    (ok,) = read_ismrmrd(write_file(tmp_path / "ok.h5", ks), IsmrmrdConfig())
    assert ok.pixel_spacing == pytest.approx((40.0, 40.0))
