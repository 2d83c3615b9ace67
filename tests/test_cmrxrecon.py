"""CMRxRecon .mat reader and the ``prepare cmrxrecon`` converter on tiny synthetic files.

The files are written the way MATLAB v7.3 writes them: HDF5 with a 512-byte
userblock, dimensions reversed with respect to MATLAB, complex data as a compound
dtype with fields ``real`` and ``imag``. References are NumPy indexing of the
MATLAB-order arrays.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from cinerecon.data.cmrxrecon import CmrxKspaceFile, check_mask, discover, read_masks
from cinerecon.errors import DataError

MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."


def write_mat73(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write arrays given in MATLAB order as a v7.3 .mat (HDF5, reversed dims, compound complex)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, a in arrays.items():
            rev = np.ascontiguousarray(np.transpose(a))  # MATLAB column-major -> h5py sees reversed dims
            if np.iscomplexobj(rev):
                ctype = np.dtype([("real", "<f4"), ("imag", "<f4")])
                c = np.empty(rev.shape, dtype=ctype)
                c["real"], c["imag"] = rev.real, rev.imag
                ds = f.create_dataset(key, data=c)
                ds.attrs["MATLAB_class"] = np.bytes_("single")
            else:
                ds = f.create_dataset(key, data=rev.astype(np.float64))
                ds.attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as fh:
        fh.write(MATLAB_HEADER.ljust(116, b" "))
    return path


def rand_kspace(kx=10, ky=8, sc=3, sz=2, t=4, seed=0) -> np.ndarray:
    """MATLAB-order (kx, ky, sc, sz, t) complex64."""
    rng = np.random.default_rng(seed)
    shape = (kx, ky, sc, sz, t)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def line_mask(kx: int, ky: int, r: int, acs: int = 8) -> np.ndarray:
    """MATLAB-order (kx, ky) equispaced mask along ky with central ACS lines."""
    m = np.zeros((kx, ky))
    m[:, ::r] = 1
    m[:, ky // 2 - acs // 2: ky // 2 - acs // 2 + acs] = 1
    return m


def expected_slice(k: np.ndarray, z: int) -> np.ndarray:
    """(kx, ky, sc, sz, t)[..., z, :] -> (sc, t, kx, ky) = our (C, T, H, W)."""
    return k[:, :, :, z, :].transpose(2, 3, 0, 1)


# --------------------------------------------------------------------------- reader


def test_read_slice_matches_matlab_indexing(tmp_path):
    k = rand_kspace()
    p = write_mat73(tmp_path / "cine_sax.mat", {"kspace_full": k})
    with CmrxKspaceFile(p) as f:
        assert f.key == "kspace_full"
        assert f.shape == (2, 3, 4, 10, 8)  # (slices, C, T, H, W)
        for z in range(2):
            got = f.read_slice(z)
            assert got.dtype == torch.complex64
            np.testing.assert_array_equal(got.numpy(), expected_slice(k, z))


def test_read_slice_mat_v5_same_result(tmp_path):
    k = rand_kspace(seed=1)
    p = tmp_path / "cine_lax.mat"
    scipy.io.savemat(p, {"kspace_full": k})
    with CmrxKspaceFile(p) as f:
        np.testing.assert_array_equal(f.read_slice(1).numpy(), expected_slice(k, 1))


def test_single_slice_dimension_kept_and_single_coil(tmp_path):
    k = rand_kspace(sz=1, seed=2)
    p = write_mat73(tmp_path / "cine_lax.mat", {"kspace_full": k})
    with CmrxKspaceFile(p) as f:
        np.testing.assert_array_equal(f.read_slice(0).numpy(), expected_slice(k, 0))
    ks = rand_kspace(seed=3)[:, :, 0]  # (kx, ky, sz, t)
    p = write_mat73(tmp_path / "single" / "cine_sax.mat", {"kspace_single_full": ks})
    with CmrxKspaceFile(p) as f:
        assert f.coils == 1
        np.testing.assert_array_equal(f.read_slice(1).numpy()[0], ks[:, :, 1, :].transpose(2, 0, 1))


def test_masks_2023_along_w_and_consistent_with_matlab_undersampling(tmp_path):
    kx, ky = 10, 16
    k = rand_kspace(kx=kx, ky=ky)
    m4 = line_mask(kx, ky, 4)
    m8 = line_mask(kx, ky, 8)
    mp = write_mat73(tmp_path / "cine_sax_mask.mat", {"mask04": m4, "mask08": m8})
    # the challenge's undersampled data: kspace_full .* mask (mask broadcast over sc, sz, t)
    sub = k * m4[:, :, None, None, None]
    sp = write_mat73(tmp_path / "sub" / "cine_sax.mat", {"kspace_sub04": sub})
    masks = {m.key: m for m in read_masks(mp)}
    assert sorted(masks) == ["R04", "R08"]
    r4 = masks["R04"].mask
    assert r4.shape == (1, 1, 1, ky) and masks["R04"].is_lines
    np.testing.assert_array_equal(r4[0, 0, 0].numpy(), m4[0])
    with CmrxKspaceFile(sp) as fs:
        assert fs.accel_key == "R04"
        full = torch.from_numpy(expected_slice(k, 1))
        np.testing.assert_array_equal(fs.read_slice(1).numpy(), (full * r4).numpy())


def test_masks_2024_time_varying_and_radial(tmp_path):
    kx, ky, t = 6, 12, 3
    rng = np.random.default_rng(0)
    lines = rng.random((ky, t)) > 0.5  # (ky, t)
    kt = np.broadcast_to(lines[None], (kx, ky, t)).astype(float)  # MATLAB (kx, ky, t)
    p = write_mat73(tmp_path / "cine_sax_mask_ktGaussian8.mat", {"mask": kt})
    (m,) = read_masks(p)
    assert m.key == "R08_ktGaussian" and m.mask.shape == (1, t, 1, ky)
    np.testing.assert_array_equal(m.mask[0, :, 0].numpy(), lines.T.astype(np.float32))
    rad = (rng.random((kx, ky, t)) > 0.5).astype(float)
    p = write_mat73(tmp_path / "cine_sax_mask_ktRadial4.mat", {"mask": rad})
    (m,) = read_masks(p)
    assert m.key == "R04_ktRadial" and not m.is_lines
    np.testing.assert_array_equal(m.mask[0].numpy(), rad.transpose(2, 0, 1))
    p = write_mat73(tmp_path / "cine_lax_mask_Uniform10.mat", {"mask": line_mask(kx, ky, 10)})
    assert read_masks(p)[0].key == "R10"


# --------------------------------------------------------------------------- bad input


def test_truncated_file_raises_data_error_naming_file(tmp_path):
    p = write_mat73(tmp_path / "cine_sax.mat", {"kspace_full": rand_kspace(kx=32, ky=32)})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cine_sax.mat"):
        with CmrxKspaceFile(p) as f:
            f.read_slice(0)
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DataError, match="junk.mat"):
        CmrxKspaceFile(junk)


def test_wrong_key_and_real_valued_and_wrong_rank(tmp_path):
    p = write_mat73(tmp_path / "a.mat", {"img4ranking": np.ones((4, 4))})
    with pytest.raises(DataError, match="no k-space key.*img4ranking"):
        CmrxKspaceFile(p)
    with pytest.raises(DataError, match="'kspace_sub08' not found"):
        CmrxKspaceFile(p, key="kspace_sub08")
    p = write_mat73(tmp_path / "b.mat", {"kspace_full": np.ones((4, 4, 2, 1, 3))})
    with pytest.raises(DataError, match="real-valued"):
        CmrxKspaceFile(p)
    p = write_mat73(tmp_path / "c.mat", {"kspace_full": np.ones((4, 4), dtype=np.complex64)})
    with pytest.raises(DataError, match=r"shape \(4, 4\)"):
        CmrxKspaceFile(p)
    p = write_mat73(tmp_path / "m.mat", {"something": np.ones((4, 4))})
    with pytest.raises(DataError, match="no mask key"):
        read_masks(p)


def test_mask_not_matching_kspace_names_shapes(tmp_path):
    mp = write_mat73(tmp_path / "cine_sax_mask.mat", {"mask04": line_mask(10, 12, 4)})
    (m,) = read_masks(mp)
    with pytest.raises(DataError, match=r"\(1, 1, 1, 12\).*\(4, 10, 8\)"):
        check_mask(m.mask, 4, 10, 8, str(mp))
    bad = write_mat73(tmp_path / "nb.mat", {"mask08": np.full((4, 6), 0.5)})
    with pytest.raises(DataError, match="not binary"):
        read_masks(bad)


def test_slice_out_of_range(tmp_path):
    p = write_mat73(tmp_path / "cine_sax.mat", {"kspace_full": rand_kspace()})
    with CmrxKspaceFile(p) as f, pytest.raises(DataError, match="slice 5 out of range"):
        f.read_slice(5)


# --------------------------------------------------------------------------- discovery and prepare


def make_tree(root: Path, coils=3, kx=16, ky=16, t=4, sz=2, seed=0) -> dict:
    """A 2023-style tree: two training subjects (full + AccFactor04/08 masks), one validation subject."""
    out = {}
    cine = root / "MultiCoil" / "Cine"
    for i, pid in enumerate(("P001", "P002")):
        k = rand_kspace(kx, ky, coils, sz, t, seed=seed + i)
        out[pid] = k
        write_mat73(cine / "TrainingSet" / "FullSample" / pid / "cine_sax.mat", {"kspace_full": k})
        for r in (4, 8):
            d = cine / "TrainingSet" / f"AccFactor{r:02d}" / pid
            m = line_mask(kx, ky, r)
            write_mat73(d / "cine_sax.mat", {f"kspace_sub{r:02d}": k * m[:, :, None, None, None]})
        write_mat73(cine / "TrainingSet" / "AccFactor04" / pid / "cine_sax_mask.mat",
                    {"mask04": line_mask(kx, ky, 4), "mask08": line_mask(kx, ky, 8), "mask10": line_mask(kx, ky, 10)})
    kv = rand_kspace(kx, ky, coils, 1, t, seed=seed + 9)
    m = line_mask(kx, ky, 4)
    write_mat73(cine / "ValidationSet" / "AccFactor04" / "P001" / "cine_sax.mat",
                {"kspace_sub04": kv * m[:, :, None, None, None]})
    write_mat73(cine / "ValidationSet" / "AccFactor04" / "P001" / "cine_sax_mask.mat", {"mask04": m})
    out["val"] = kv * m[:, :, None, None, None]
    return out


def test_discover_groups_by_split_subject_view(tmp_path):
    make_tree(tmp_path)
    subs = discover(tmp_path, ("sax", "lax"))
    names = [(s.split_dir, s.subject, s.view) for s in subs]
    assert names == [("TrainingSet", "P001", "sax"), ("TrainingSet", "P002", "sax"), ("ValidationSet", "P001", "sax")]
    tr = subs[0]
    assert tr.full is not None and tr.full.parts[-3] == "FullSample"
    assert sorted(tr.undersampled) == ["R04", "R08"] and tr.split == "train"
    va = subs[2]
    assert va.full is None and list(va.undersampled) == ["R04"] and va.split == "val"


def test_prepare_inconsistent_coil_counts_raises(tmp_path):
    from cinerecon.commands.prepare import prepare_cmrxrecon

    d = tmp_path / "ValidationSet"
    m = line_mask(8, 8, 4)
    write_mat73(d / "AccFactor04" / "P001" / "cine_sax.mat", {"kspace_sub04": rand_kspace(8, 8, 3, 1, 2)})
    write_mat73(d / "AccFactor08" / "P001" / "cine_sax.mat", {"kspace_sub08": rand_kspace(8, 8, 4, 1, 2)})
    write_mat73(d / "AccFactor04" / "P001" / "cine_sax_mask.mat", {"mask04": m, "mask08": line_mask(8, 8, 8)})
    with pytest.raises(DataError, match=r"inconsistent coil counts.*\(4, 8, 8\).*\(3, 8, 8\)"):
        prepare_cmrxrecon(tmp_path, tmp_path / "out", ("sax",), verbose=False)


def test_prepare_mask_mismatch_raises_before_writing(tmp_path):
    from cinerecon.commands.prepare import prepare_cmrxrecon

    d = tmp_path / "TrainingSet"
    write_mat73(d / "FullSample" / "P001" / "cine_sax.mat", {"kspace_full": rand_kspace(8, 8, 2, 1, 2)})
    write_mat73(d / "AccFactor04" / "P001" / "cine_sax_mask.mat", {"mask04": line_mask(8, 10, 4)})
    with pytest.raises(DataError, match=r"cine_sax_mask.mat.*mask 'R04'.*\(1, 1, 1, 10\)"):
        prepare_cmrxrecon(tmp_path, tmp_path / "out", ("sax",), verbose=False)
    assert not (tmp_path / "out").exists()


def test_prepare_cmrxrecon_end_to_end(tmp_path):
    pytest.importorskip("cinerecon.coils")
    h5mod = pytest.importorskip("cinerecon.data.h5")
    from cinerecon.commands.prepare import PrepareConfig, prepare_cmrxrecon
    from cinerecon.errors import OutputExistsError
    from cinerecon.fft import ifft2c

    src = tmp_path / "src"
    ks = make_tree(src, coils=3, kx=16, ky=16, t=3, sz=1)
    dst = tmp_path / "dst"
    cfg = PrepareConfig(acs=8)
    written = prepare_cmrxrecon(src, dst, ("sax",), cfg, verbose=False)
    assert len(written["train"]) == 2 and len(written["val"]) == 0 and len(written["test"]) == 1
    assert (dst / "train.txt").read_text().split() == sorted(p.relative_to(dst).as_posix() for p in written["train"])
    f = dst / "TrainingSet" / "P002" / "cine_sax_s00.h5"
    full = h5mod.read_h5(f)
    ref = torch.from_numpy(expected_slice(ks["P002"], 0))
    np.testing.assert_allclose(full.kspace.numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)
    # target = S^H F^-1 k with unit-norm maps: its magnitude is at most the RSS coil image
    rss = ifft2c(ref).abs().pow(2).sum(0).sqrt()
    assert full.target is not None
    assert bool((full.target.abs() <= rss * (1 + 1e-4) + 1e-5).all())
    r4 = h5mod.read_h5(f, mask_key="R04")
    line = torch.from_numpy(line_mask(16, 16, 4)[0]).float()
    np.testing.assert_allclose(r4.kspace.numpy(), (ref * line).numpy(), rtol=1e-6, atol=1e-6)
    r24 = h5mod.read_h5(f, mask_key="R24")
    assert r24.mask.reshape(-1, 16).amax(0)[8 - 4:8 + 4].min() == 1  # ACS kept
    assert r24.mask.sum() <= 8 + 1  # 24-fold on 16 lines: ACS plus at most one more line
    val = h5mod.read_h5(written["test"][0])
    assert val.target is None and not bool((val.mask == 1).all())
    np.testing.assert_allclose(val.kspace.numpy(), expected_slice(ks["val"], 0), rtol=1e-6, atol=1e-6)
    with pytest.raises(OutputExistsError):
        prepare_cmrxrecon(src, dst, ("sax",), cfg, verbose=False)


def test_prepare_cli_with_split_file(tmp_path):
    pytest.importorskip("cinerecon.coils")
    pytest.importorskip("cinerecon.data.h5")
    from cinerecon.cli import main

    src = tmp_path / "src"
    make_tree(src, coils=2, kx=16, ky=16, t=2, sz=1)
    split = tmp_path / "split.txt"
    split.write_text("# subject split\nP001 val\n")
    dst = tmp_path / "dst"
    assert main(["prepare", "cmrxrecon", str(src), str(dst), "--views", "sax", "--acs", "8", "--coils-virtual", "1",
                 "--subjects", "TrainingSet/P001", "--split-file", str(split), "--quiet"]) == 0
    assert (dst / "val.txt").read_text().split() == ["TrainingSet/P001/cine_sax_s00.h5"]
    with h5py.File(dst / "TrainingSet/P001/cine_sax_s00.h5", "r") as f:
        assert f["kspace"].shape == (1, 2, 16, 16) and f["maps"].shape == (1, 1, 16, 16)
    assert not (dst / "train.txt").exists()
    assert main(["prepare", "cmrxrecon", str(src), str(dst), "--views", "sax", "--subjects", "P001"]) == 2


def test_discover_2024_layout_and_kus_key(tmp_path):
    tr, va = tmp_path / "TrainingSet", tmp_path / "ValidationSet"
    write_mat73(tr / "FullSample" / "P001" / "cine_lax.mat", {"kspace_full": rand_kspace(8, 8, 2, 1, 2)})
    write_mat73(tr / "Mask_Task1" / "P001" / "cine_lax_mask_Uniform8.mat", {"mask": line_mask(8, 8, 8, acs=2)})
    write_mat73(tr / "ImgSnapshot" / "P001" / "cine_lax_sos.mat", {"x": np.ones((2, 2))})  # ignored
    kus = write_mat73(va / "UnderSample_Task2" / "P002" / "cine_sax_kus_ktGaussian16.mat",
                      {"kus": rand_kspace(8, 8, 2, 1, 2)})
    write_mat73(va / "Mask_Task2" / "P002" / "cine_sax_mask_ktGaussian16.mat", {"mask": np.ones((8, 8, 2))})
    subs = discover(tmp_path, ("sax", "lax"))
    assert [(s.split_dir, s.subject, s.view) for s in subs] == [("TrainingSet", "P001", "lax"),
                                                                ("ValidationSet", "P002", "sax")]
    assert subs[0].full is not None and [p.name for p in subs[0].mask_files] == ["cine_lax_mask_Uniform8.mat"]
    assert subs[1].undersampled == {"R16_ktGaussian": kus}
    assert read_masks(subs[1].mask_files[0])[0].key == "R16_ktGaussian"
    with CmrxKspaceFile(kus) as f:
        assert f.key == "kus" and f.accel_key == "R16_ktGaussian"


def test_prepare_cli_announces_r24_split_and_missing_geometry(tmp_path, capsys):
    pytest.importorskip("cinerecon.coils")
    from cinerecon.cli import main

    src = tmp_path / "src"
    make_tree(src, coils=2, kx=16, ky=16, t=2, sz=1)  # TrainingSet P001, P002 fully sampled; ValidationSet undersampled
    assert main(["prepare", "cmrxrecon", str(src), str(tmp_path / "dst"), "--views", "sax", "--acs", "8",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "R24 mask" in out and "2 fully sampled slices" in out
    assert "train: 2 subjects, 2 slices (2 fully sampled)" in out and "val: 0 subjects" in out
    assert "no fully sampled slice in val, test" in out and "--split-fractions" in out
    assert "no scanner geometry" in out
    assert main(["prepare", "cmrxrecon", str(src), str(tmp_path / "dst2"), "--views", "sax", "--acs", "8",
                 "--split-fractions", "1", "1", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "from --split-file / --split-fractions" in out and "val: 1 subjects, 1 slices (1 fully sampled)" in out


def test_all_zero_mask_file_refused(tmp_path):
    write_mat73(tmp_path / "cine_sax_mask.mat", {"mask04": np.zeros((8, 8))})
    with pytest.raises(DataError, match=r"cine_sax_mask.mat: mask key 'mask04'.*no line in every frame"):
        read_masks(tmp_path / "cine_sax_mask.mat")


def test_prepare_single_coil_keeps_the_whole_image(tmp_path):
    """One coil: the map is 1 and the target the coil image (ESPIRiT's support used to zero 9-100 % of it)."""
    h5mod = pytest.importorskip("cinerecon.data.h5")
    from cinerecon.commands.prepare import PrepareConfig, prepare_cmrxrecon
    from cinerecon.fft import ifft2c

    yy, xx = np.meshgrid(np.linspace(-1, 1, 32), np.linspace(-1, 1, 24), indexing="ij")
    img = np.stack([(yy ** 2 + xx ** 2 < 0.6) * (1.0 + 0.3 * t) + 0.05 for t in range(3)])  # (T, H, W)
    k_ours = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    rng = np.random.default_rng(0)
    k_ours = k_ours + 0.01 * (rng.standard_normal(k_ours.shape) + 1j * rng.standard_normal(k_ours.shape))  # noise
    k_mat = k_ours.transpose(1, 2, 0)[:, :, None, :].astype(np.complex64)  # single coil: MATLAB (kx, ky, sz=1, t)
    src = tmp_path / "src" / "SingleCoil" / "Cine" / "TrainingSet" / "FullSample" / "P001"
    write_mat73(src / "cine_sax.mat", {"kspace_single_full": k_mat})
    for acs in (8, 24):
        dst = tmp_path / f"dst{acs}"
        written = prepare_cmrxrecon(tmp_path / "src", dst, ("sax",), PrepareConfig(acs=acs, generated_accels=()),
                                    verbose=False)
        s = h5mod.read_h5(written["train"][0])
        assert torch.equal(s.maps, torch.ones(1, 1, 32, 24, dtype=torch.complex64))
        ref = ifft2c(torch.from_numpy(k_ours.astype(np.complex64)))  # the coil image, (T, H, W)
        torch.testing.assert_close(s.target, ref, rtol=1e-5, atol=1e-5)


def test_prepare_converts_undersampled_radial_files(tmp_path, capsys, monkeypatch):
    """CMRxRecon2024 ktRadial (spokes plus a central square): converted as acquired, maps from the square."""
    import cinerecon.commands.prepare as prep

    tr, va = tmp_path / "TrainingSet", tmp_path / "ValidationSet"
    write_mat73(tr / "FullSample" / "P001" / "cine_sax.mat", {"kspace_full": rand_kspace(16, 16, 2, 1, 3)})
    rad = np.zeros((16, 16, 3))
    rad[8, :, :] = 1
    rad[:, 8, :] = 1
    rad[np.arange(16), np.arange(16), 1] = 1  # a diagonal spoke in frame 1 only
    rad[4:12, 4:12, :] = 1  # the 8 x 8 calibration square
    kus = rand_kspace(16, 16, 2, 1, 3) * rad[:, :, None, None, :]
    write_mat73(va / "UnderSample_Task2" / "P002" / "cine_sax_kus_ktRadial8.mat", {"kus": kus})
    write_mat73(va / "Mask_Task2" / "P002" / "cine_sax_mask_ktRadial8.mat", {"mask": rad})
    from cinerecon import coils

    calls, orig = [], coils.espirit_maps

    def spy(*a, **k):
        calls.append(k.get("acs"))
        return orig(*a, **k)

    monkeypatch.setattr(coils, "espirit_maps", spy)
    written = prep.prepare_cmrxrecon(tmp_path, tmp_path / "dst", ("sax",), prep.PrepareConfig(acs=8), verbose=False)
    assert len(written["train"]) == 1 and len(written["test"]) == 1, capsys.readouterr().err
    assert None in calls  # ESPIRiT on the detected central block, not the time-averaged centre
    import h5py

    with h5py.File(written["test"][0]) as h:  # stored as acquired: mask (1, T, H = kx, W = ky)
        np.testing.assert_array_equal(h["mask"][()], rad.transpose(2, 0, 1)[None].astype(np.float32))
        np.testing.assert_allclose(h["kspace"][()], np.transpose(kus[:, :, :, 0, :], (2, 3, 0, 1)), rtol=1e-6)


def test_prepare_counts_subjects_not_subject_views(tmp_path, capsys):
    from cinerecon.cli import main

    for view in ("sax", "lax"):
        write_mat73(tmp_path / "src" / "TrainingSet" / "FullSample" / "P001" / f"cine_{view}.mat",
                    {"kspace_full": rand_kspace(16, 16, 2, 1, 2)})
    assert main(["prepare", "cmrxrecon", str(tmp_path / "src"), str(tmp_path / "dst"), "--acs", "8", "--quiet"]) == 0
    assert "train: 1 subjects, 2 slices (2 fully sampled)" in capsys.readouterr().out


def test_prepare_skips_a_slice_whose_maps_come_out_all_zero(tmp_path, capsys, monkeypatch):
    h5mod = pytest.importorskip("cinerecon.data.h5")
    import cinerecon.commands.prepare as prep

    src = tmp_path / "src"
    make_tree(src, coils=2, kx=16, ky=16, t=2, sz=2)
    real = prep.estimate_maps
    calls = {"n": 0}

    def second_slice_zero(*a, **k):
        calls["n"] += 1
        maps = real(*a, **k)
        return torch.zeros_like(maps) if calls["n"] == 2 else maps

    first = prep.prepare_cmrxrecon(src, tmp_path / "dst", ("sax",), prep.PrepareConfig(acs=8), verbose=False)
    assert (tmp_path / "dst" / "TrainingSet" / "P001" / "cine_sax_s01.h5") in first["train"]
    monkeypatch.setattr(prep, "estimate_maps", second_slice_zero)  # again, over the first run's files
    written = prep.prepare_cmrxrecon(src, tmp_path / "dst", ("sax",), prep.PrepareConfig(acs=8, overwrite=True),
                                     verbose=False)
    err = capsys.readouterr().err
    assert "skipped TrainingSet/P001/cine_sax/slice01" in err and "all zero" in err and "removed the earlier" in err
    assert not (tmp_path / "dst" / "TrainingSet" / "P001" / "cine_sax_s01.h5").exists()
    files = [p for v in written.values() for p in v]
    assert len(files) == 4 and all(bool((h5mod.read_h5(p).maps != 0).any()) for p in files)
    listed = sum(len((tmp_path / "dst" / f"{s}.txt").read_text().split()) for s in written if written[s])
    assert listed == 4  # the split lists are written and name only the files that exist
    assert "dropped 1 listed file(s)" in err and "cine_sax_s01.h5" in err  # and say what they dropped


def test_split_lists_keep_comments_and_drop_only_missing_files(tmp_path, capsys):
    from cinerecon.commands.prepare import update_split_lists
    from cinerecon.data.h5 import read_split

    dst = tmp_path / "dst"
    (dst / "a").mkdir(parents=True)
    for name in ("old.h5", "new.h5"):
        (dst / "a" / name).write_bytes(b"")
    (dst / "test.txt").write_text("# my held-out list, do not edit\n\na/old.h5  # from the scanner\nmine.h5\n")
    update_split_lists(dst, {"test": [dst / "a" / "new.h5"]})
    assert (dst / "test.txt").read_text() == ("# my held-out list, do not edit\na/new.h5\n"
                                              "a/old.h5  # from the scanner\n")
    err = capsys.readouterr().err
    assert "dropped 1 listed file(s)" in err and "mine.h5" in err and "#" not in err.split("e.g.")[1]
    assert [p.name for p in read_split(dst)["test"]] == ["new.h5", "old.h5"]  # still readable as a list


def test_prepare_that_skips_every_file_fails_saying_so(tmp_path, capsys):
    from cinerecon.cli import main

    va = tmp_path / "src" / "ValidationSet"
    write_mat73(va / "UnderSample_Task2" / "P002" / "cine_sax_kus_ktRadial8.mat", {"kus": rand_kspace(16, 16, 2, 1, 3)})
    rad = np.zeros((16, 16, 3))
    rad[8, :, :] = 1
    rad[:, 8, :] = 1
    write_mat73(va / "Mask_Task2" / "P002" / "cine_sax_mask_ktRadial8.mat", {"mask": rad})
    assert main(["prepare", "cmrxrecon", str(tmp_path / "src"), str(tmp_path / "dst"), "--acs", "8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no central region to estimate coil maps" in err and "nothing written" in err
