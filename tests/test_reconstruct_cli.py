"""``cinerecon reconstruct`` on tiny files in our HDF5 format.

The zero-filled reference is computed here with NumPy (centred orthonormal FFT,
coil combination with the stored maps), independently of the package.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from cinerecon.cli import main
from cinerecon.commands.reconstruct import Reconstructor, input_files, normalise_accel, reconstruct_files
from cinerecon.errors import DataError


def np_ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def np_fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def make_file(path: Path, c=3, t=4, h=12, w=10, seed=0, view="sax", pixel_spacing=(1.5, 2.0)) -> dict:
    """A fully sampled slice with an R04 mask, written with helper C's write_h5."""
    h5mod = pytest.importorskip("cinerecon.data.h5")
    from cinerecon.data.sample import CineSample, SampleMeta

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((t, h, w)) + 1j * rng.standard_normal((t, h, w))).astype(np.complex64)
    s = (rng.standard_normal((c, 1, h, w)) + 1j * rng.standard_normal((c, 1, h, w))).astype(np.complex64)
    s /= np.sqrt((np.abs(s) ** 2).sum(0, keepdims=True))
    k = np_fft2c(s * x[None]).astype(np.complex64)
    line = np.zeros(w, np.float32)
    line[::4] = 1
    line[w // 2 - 1:w // 2 + 1] = 1
    sample = CineSample(torch.from_numpy(k), torch.ones(1, 1, 1, w), torch.from_numpy(s), torch.from_numpy(x),
                        SampleMeta(name=path.stem, view=view, pixel_spacing=pixel_spacing))
    h5mod.write_h5(path, sample, {"R04": torch.from_numpy(line)[None, None, None]})
    return {"k": k, "maps": s, "x": x, "line": line}


def zero_filled_np(d: dict) -> np.ndarray:
    return (np.conj(d["maps"]) * np_ifft2c(d["k"] * d["line"])).sum(0)


def test_normalise_accel():
    assert normalise_accel("8") == "R08" and normalise_accel("R4") == "R04" and normalise_accel("r10") == "R10"
    assert normalise_accel("none") is None and normalise_accel(None) is None
    assert normalise_accel("R08_uniform") == "R08_uniform"


def test_input_files_excludes_output_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.h5").write_bytes(b"")
    (tmp_path / "a" / ".x.h5.k2j4.tmp.h5").write_bytes(b"")  # an older writer's leftover after kill -9
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "y.h5").write_bytes(b"")
    assert input_files(tmp_path, exclude=tmp_path / "out") == [tmp_path / "a" / "x.h5"]
    with pytest.raises(DataError, match="no .h5 files"):
        input_files(tmp_path / "out" / "..", exclude=tmp_path)
    with pytest.raises(DataError, match="no such file"):
        input_files(tmp_path / "missing")


def test_reconstruct_files_applies_mask_and_writes_formats(tmp_path):
    d = make_file(tmp_path / "in" / "s0.h5")
    from cinerecon.operators import SenseOp

    rec = Reconstructor("adjoint", lambda k, m, s: SenseOp(s, m).adjoint(k))
    (paths,) = reconstruct_files([tmp_path / "in" / "s0.h5"], tmp_path / "in", tmp_path / "out", rec, "R04",
                                 ["h5", "nifti", "gif"], verbose=False)
    assert paths["h5"] == tmp_path / "out" / "s0_adjoint_R04.h5"
    with h5py.File(paths["h5"], "r") as f:
        np.testing.assert_allclose(f["recon"][()], zero_filled_np(d), rtol=1e-4, atol=1e-5)
        assert f.attrs["mask_key"] == "R04" and f.attrs["accel"] == 4.0
    import nibabel as nib

    img = nib.load(paths["nifti"])
    assert img.shape == (12, 10, 1, 4) and np.diag(img.affine)[:2] == pytest.approx([1.5, 2.0])
    assert paths["gif"].stat().st_size > 0


def test_cli_zero_filled_and_overwrite_protection(tmp_path, capsys):
    pytest.importorskip("cinerecon.classical.zero_filled")
    d = make_file(tmp_path / "s0.h5")
    out = tmp_path / "out"
    argv = ["reconstruct", str(tmp_path / "s0.h5"), "--method", "zero_filled", "--accel", "4", "--out", str(out),
            "--formats", "h5", "gif", "--quiet"]
    assert main(argv) == 0
    h5 = out / "s0_zero_filled_R04.h5"
    with h5py.File(h5, "r") as f:
        np.testing.assert_allclose(f["recon"][()], zero_filled_np(d), rtol=1e-4, atol=1e-5)
    before = h5.read_bytes()
    assert main(argv) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert h5.read_bytes() == before
    assert main(argv + ["--overwrite"]) == 0


def test_reconstructions_inside_the_data_folder_are_not_taken_as_inputs(tmp_path):
    """``--out DATA/recon`` leaves files holding only ``recon``: a later run on DATA must skip them."""
    pytest.importorskip("cinerecon.classical.zero_filled")
    data = tmp_path / "data"
    d = make_file(data / "s0.h5")
    base = ["reconstruct", str(data), "--method", "zero_filled", "--accel", "4", "--formats", "h5", "--quiet"]
    assert main(base + ["--out", str(data / "recon")]) == 0
    assert (data / "recon" / "s0_zero_filled_R04.h5").is_file()
    assert input_files(data) == [data / "s0.h5"]
    assert main(base + ["--out", str(tmp_path / "other")]) == 0  # used to stop at recon/s0_zero_filled_R04.h5
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["s0_zero_filled_R04.h5"]
    with h5py.File(tmp_path / "other" / "s0_zero_filled_R04.h5", "r") as f:
        np.testing.assert_allclose(f["recon"][()], zero_filled_np(d), rtol=1e-4, atol=1e-5)


def test_cli_stored_kspace_no_acs_maps(tmp_path):
    pytest.importorskip("cinerecon.classical.zero_filled")
    pytest.importorskip("cinerecon.coils")
    d = make_file(tmp_path / "s0.h5", h=16, w=16)
    out = tmp_path / "out"
    argv = ["reconstruct", str(tmp_path), "--method", "zero_filled", "--no-acs-maps", "--out", str(out),
            "--formats", "h5", "--quiet"]
    assert main(argv) == 2 and not out.exists()  # fully sampled without --accel: asks for it
    assert main(argv + ["--accel", "none"]) == 0
    with h5py.File(out / "s0_zero_filled_stored.h5", "r") as f:
        r = f["recon"][()]
    # fully sampled data with unit-norm estimated maps: |S^H F^-1 k| <= RSS of the coil images
    rss = np.sqrt((np.abs(np_ifft2c(d["k"])) ** 2).sum(0))
    assert r.shape == (4, 16, 16) and np.all(np.abs(r) <= rss * (1 + 1e-4) + 1e-5)
    assert np.abs(r).mean() > 0.5 * rss.mean()


def test_cli_method_and_checkpoint_errors(tmp_path, capsys):
    make_file(tmp_path / "s0.h5")
    out = str(tmp_path / "out")
    assert main(["reconstruct", str(tmp_path / "s0.h5"), "--method", "unet3d", "--out", out]) == 2
    assert "--checkpoint" in capsys.readouterr().err  # no shipped weights for it
    from cinerecon.commands.reconstruct import build_reconstructor
    from cinerecon.models import PRETRAINED

    assert build_reconstructor("crunet").checkpoint == str(PRETRAINED["crunet"])  # the shipped CRUNet-MR
    assert main(["reconstruct", str(tmp_path / "s0.h5"), "--method", "crunet", "--checkpoint",
                 str(tmp_path / "nope.pth"), "--out", out]) == 2
    assert "nope.pth" in capsys.readouterr().err
    assert main(["reconstruct", str(tmp_path / "s0.h5"), "--method", "zero_filled", "--accel", "R99",
                 "--out", out, "--formats", "h5"]) == 2
    assert "R99" in capsys.readouterr().err


def test_cli_learned_model_from_checkpoint(tmp_path):
    pytest.importorskip("cinerecon.models.crunet")
    ck = pytest.importorskip("cinerecon.train.checkpoints")
    from cinerecon.models import build_model

    make_file(tmp_path / "s0.h5", h=16, w=16)
    kwargs = {"chans": 4, "cascades": 1}
    try:
        model = build_model("crunet", **kwargs)
        path = ck.save_checkpoint(tmp_path / "ck.pt", model, None, None, 0,
                                  {"model": {"name": "crunet", "kwargs": kwargs}}, model_kwargs=kwargs)
    except TypeError as e:  # interface still moving
        pytest.skip(f"checkpoint API differs: {e}")
    out = tmp_path / "out"
    assert main(["reconstruct", str(tmp_path / "s0.h5"), "--method", "crunet", "--checkpoint", str(path),
                 "--accel", "R04", "--out", str(out), "--formats", "h5", "--quiet"]) == 0
    with h5py.File(out / "s0_crunet_R04.h5", "r") as f:
        r = f["recon"][()]
        assert f.attrs["checkpoint"] == str(path)
    assert r.shape == (4, 16, 16) and np.isfinite(r).all()


def test_fully_sampled_without_accel_asks_for_it(tmp_path, capsys):
    make_file(tmp_path / "s0.h5")
    assert main(["reconstruct", str(tmp_path / "s0.h5"), "--method", "zero_filled", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--accel" in err and "R04" in err and "--accel none" in err


def test_nonfinite_reconstruction_stops_naming_slice_and_checkpoint(tmp_path):
    make_file(tmp_path / "s0.h5")
    rec = Reconstructor("net", lambda k, m, s: torch.full(k.shape[:1] + k.shape[2:], float("nan"),
                                                          dtype=torch.complex64), checkpoint="runs/x/best.pt")
    with pytest.raises(DataError, match=r"s0\.h5.*slice 's0'.*runs/x/best\.pt.*NaN"):
        reconstruct_files([tmp_path / "s0.h5"], tmp_path, tmp_path / "out", rec, "R04", ["h5"], verbose=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_method_name_from_checkpoint_cannot_leave_out(tmp_path):
    make_file(tmp_path / "s0.h5")
    from cinerecon.operators import SenseOp

    rec = Reconstructor("../../escape", lambda k, m, s: SenseOp(s, m).adjoint(k))
    (paths,) = reconstruct_files([tmp_path / "s0.h5"], tmp_path, tmp_path / "out", rec, "R04", ["h5"], verbose=False)
    assert paths["h5"] == tmp_path / "out" / "s0_escape_R04.h5"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "s0.h5"]


def test_a_bad_file_after_good_ones_says_their_outputs_are_kept(tmp_path, capsys):
    import h5py

    from cinerecon.cli import main

    data = tmp_path / "data"
    for i in range(2):
        make_file(data / f"a{i}.h5", seed=i)
    make_file(data / "zz_nan.h5", seed=5)
    with h5py.File(data / "zz_nan.h5", "r+") as f:
        k = f["kspace"][...]
        k[0, 0, 0, 0] = np.nan
        f["kspace"][...] = k
    out = tmp_path / "out"
    assert main(["reconstruct", str(data), "--method", "zero_filled", "--accel", "4", "--out", str(out),
                 "--formats", "h5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "zz_nan.h5" in err[0] and "the 2 slice(s) before it were written and are kept" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["a0_zero_filled_R04.h5", "a1_zero_filled_R04.h5"]


def test_grappa_on_k_t_random_lines_is_warned_once(tmp_path, capsys):
    """GRAPPA on a mask that is not an equispaced grid says so (once per run); on a grid it says nothing."""
    pytest.importorskip("cinerecon.classical.grappa")
    h5mod = pytest.importorskip("cinerecon.data.h5")
    from cinerecon.data.sample import CineSample, SampleMeta
    from cinerecon.masks import MaskSpec, make_mask

    t, w = 4, 32
    for i in range(2):
        d = make_file(tmp_path / f"s{i}.h5", c=4, t=t, h=24, w=w, seed=i)
        sample = CineSample(torch.from_numpy(d["k"]), torch.ones(1, 1, 1, w), torch.from_numpy(d["maps"]),
                            torch.from_numpy(d["x"]), SampleMeta(name=f"s{i}"))
        masks = {"R04": make_mask(MaskSpec("equispaced_acs", 4, 8), t, w, seed=i),
                 "R04_ktGaussian": make_mask(MaskSpec("random_acs", 4, 8), t, w, seed=i)}
        h5mod.write_h5(tmp_path / f"s{i}.h5", sample, masks, overwrite=True)
    base = ["reconstruct", str(tmp_path), "--method", "grappa", "--formats", "h5", "--quiet"]
    assert main(base + ["--accel", "R04", "--out", str(tmp_path / "grid")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(base + ["--accel", "ktGaussian4", "--out", str(tmp_path / "kt")]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert len(err) == 1 and "GRAPPA" in err[0] and "R04_ktGaussian" in err[0]
    assert len(list((tmp_path / "kt").glob("*.h5"))) == 2


def test_two_set_model_records_the_weight_set_of_each_mask(tmp_path, capsys):
    """The shipped two-set CRUNet-MR names, in each output and its progress line, the weights that
    reconstructed it: the main ones for a mask with ACS lines, the k-t ones for lines without."""
    h5mod = pytest.importorskip("cinerecon.data.h5")
    from cinerecon.data.sample import CineSample, SampleMeta
    from cinerecon.masks import MaskSpec, make_mask

    t, w = 4, 24
    d = make_file(tmp_path / "in" / "s0.h5", c=2, t=t, h=16, w=w)
    sample = CineSample(torch.from_numpy(d["k"]), torch.ones(1, 1, 1, w), torch.from_numpy(d["maps"]),
                        torch.from_numpy(d["x"]), SampleMeta(name="s0"))
    masks = {"R04": make_mask(MaskSpec("equispaced_acs", 4, 8), t, w),
             "R04_kt": make_mask(MaskSpec("time_varying", 4, 0), t, w)}
    h5mod.write_h5(tmp_path / "in" / "s0.h5", sample, masks, overwrite=True)
    for key, want in (("R04", "main"), ("R04_kt", "k-t")):
        out = tmp_path / f"out_{key}"
        assert main(["reconstruct", str(tmp_path / "in"), "--method", "crunet", "--accel", key,
                     "--formats", "h5", "--out", str(out)]) == 0
        assert f"{want} weights" in capsys.readouterr().out
        (path,) = out.glob("*.h5")
        with h5py.File(path, "r") as f:
            assert f.attrs["weight_set"] == want and f.attrs["method"] == "crunet"
