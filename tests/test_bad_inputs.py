"""Bad input through every verb: one line on stderr, a non-zero exit, nothing written or changed outside --out.

A small world of files (good and bad slices, checkpoints, ISMRMRD and CMRxRecon files,
configs) is built once; each row runs ``cinerecon.cli.main`` in-process and compares a
snapshot of the world before and after. The classes of the rows: bad flags, damaged or
hostile checkpoints, masks that are not 0/1 or sample nothing, all-zero k-space or maps,
sizes larger than memory, names that would leave ``--out``, defaults that would mislead
(fully sampled data without ``--accel``), and existing outputs. Rows of ``train`` and
``demo`` come last.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from cinerecon.cli import main
from conftest import run_cli
from test_reconstruct_cli import make_file

C, T, H, W = 2, 3, 12, 10


# ----------------------------------------------------------------------------- the world


def _slice(path: Path, seed: int = 0, view: str = "sax") -> Path:
    """A fully sampled slice with an R04 mask (written with our writer)."""
    make_file(path, c=C, t=T, h=H, w=W, seed=seed, view=view, pixel_spacing=(1.5, 1.5))
    return path


def _patched(path: Path, **changes) -> Path:
    """A good slice, then datasets or attributes replaced with h5py (our writer refuses bad values)."""
    _slice(path)
    with h5py.File(path, "r+") as f:
        for key, value in changes.items():
            if key.startswith("attr_"):
                f.attrs[key[5:]] = value
            else:
                key = key.replace("__", "/")
                del f[key]
                f.create_dataset(key, data=value)
    return path


def _checkpoints(d: Path) -> None:
    from cinerecon.models import build_model
    from cinerecon.train.checkpoints import save_checkpoint

    d.mkdir()
    kw = {"chans": 4, "cascades": 1}
    torch.manual_seed(0)
    save_checkpoint(d / "good.pt", build_model("crunet", **kw), None, None, 0,
                    {"model": {"name": "crunet", "kwargs": kw}}, model_kwargs=kw, rng=False)
    good = torch.load(d / "good.pt", weights_only=True)
    torch.save({**good, "version": 99}, d / "future.pt")
    torch.save({**good, "state_dict": {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                       for k, v in good["state_dict"].items()}}, d / "nan.pt")
    torch.save({**good, "model_kwargs": {"chans": 10 ** 7, "cascades": 1}}, d / "huge.pt")
    (d / "text.pt").write_text("this is a text file named .pt\n")

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pickle executed > PWNED",))

    torch.save({"state_dict": {}, "hook": Payload()}, d / "evil.pt")


def _ismrmrd(path: Path, width: int = W) -> Path | None:
    try:
        import ismrmrd
        import ismrmrd.xsd as xsd
    except ImportError:
        return None
    enc = xsd.encodingType(
        encodedSpace=xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=H, y=width, z=1),
                                           fieldOfView_mm=xsd.fieldOfViewMm(x=240, y=200, z=8)),
        reconSpace=xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=H, y=width, z=1),
                                         fieldOfView_mm=xsd.fieldOfViewMm(x=240, y=200, z=8)),
        encodingLimits=xsd.encodingLimitsType(
            kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=width - 1, center=width // 2),
            phase=xsd.limitType(minimum=0, maximum=T - 1, center=0)),
        trajectory=xsd.trajectoryType.CARTESIAN)
    hdr = xsd.ismrmrdHeader(experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=63500000),
                            encoding=[enc])
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(hdr.toXML("utf-8"))
    rng = np.random.default_rng(0)
    for p in range(T):
        for e in range(width):
            line = (rng.standard_normal((C, H)) + 1j * rng.standard_normal((C, H))).astype(np.complex64)
            acq = ismrmrd.Acquisition.from_array(line, center_sample=H // 2)
            acq.idx.kspace_encode_step_1, acq.idx.phase = e, p
            ds.append_acquisition(acq)
    ds.close()
    return path


MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 ."
COMPLEX = np.dtype([("real", "<f4"), ("imag", "<f4")])


def _mat73(path: Path, arrays: dict[str, np.ndarray | tuple]) -> Path:
    """A MATLAB v7.3 file; a tuple value declares a chunked dataset of that (h5py-order) shape without data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, a in arrays.items():
            if isinstance(a, tuple):
                f.create_dataset(key, shape=a, dtype=COMPLEX, chunks=(1,) * (len(a) - 2) + (8, 8))
            elif np.iscomplexobj(a):
                rev = np.ascontiguousarray(np.transpose(a))
                c = np.empty(rev.shape, dtype=COMPLEX)
                c["real"], c["imag"] = rev.real, rev.imag
                f.create_dataset(key, data=c)
            else:
                f.create_dataset(key, data=np.ascontiguousarray(np.transpose(a)).astype(np.float64))
    with open(path, "r+b") as fh:
        fh.write(MATLAB_HEADER.ljust(116, b" "))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("world")
    _slice(w / "data" / "good0.h5", 0)
    _slice(w / "data" / "good1.h5", 1)
    _slice(w / "escape" / "s0.h5", 2, view="../../escaped")
    zeros_line = np.zeros((1, W), np.float32)
    _patched(w / "bad" / "zero_mask" / "s.h5", masks__R04=zeros_line)
    _patched(w / "bad" / "neg_mask" / "s.h5", masks__R04=np.where(np.arange(W) % 2, 1.0, -1.0)[None].astype("f4"))
    _patched(w / "bad" / "two_mask" / "s.h5", masks__R04=np.where(np.arange(W) % 2, 2.0, 0.0)[None].astype("f4"))
    frame_empty = np.ones((1, T, 1, W), np.float32)
    frame_empty[0, 1] = 0
    _patched(w / "bad" / "frame_empty" / "s.h5", mask=frame_empty, attr_fully_sampled=False)
    _patched(w / "bad" / "zero_kspace" / "s.h5", kspace=np.zeros((C, T, H, W), np.complex64))
    _patched(w / "bad" / "zero_maps" / "s.h5", maps=np.zeros((C, 1, H, W), np.complex64))
    _patched(w / "bad" / "huge_kspace" / "s.h5")
    with h5py.File(w / "bad" / "huge_kspace" / "s.h5", "r+") as f:
        del f["kspace"]
        f.create_dataset("kspace", shape=(C, T, 2 ** 22, 2 ** 22), dtype=np.complex64, chunks=(1, 1, 8, 8))
        f.attrs["height"] = f.attrs["width"] = 2 ** 22
    _checkpoints(w / "ck")
    (w / "raw").mkdir()
    _ismrmrd(w / "raw" / "narrow.h5")
    (w / "raw" / "notes.h5").write_text("not HDF5\n")
    k = (np.ones((H, W, C, 1, T)) + 1j).astype(np.complex64)  # MATLAB (kx, ky, sc, sz, t)
    _mat73(w / "mat_zero_mask" / "TrainingSet" / "FullSample" / "P001" / "cine_sax.mat", {"kspace_full": k})
    _mat73(w / "mat_zero_mask" / "TrainingSet" / "AccFactor04" / "P001" / "cine_sax_mask.mat",
           {"mask04": np.zeros((H, W))})
    _mat73(w / "mat_huge" / "TrainingSet" / "FullSample" / "P001" / "cine_sax.mat",
           {"kspace_full": (12, 2, 10, 2 ** 20, 2 ** 20)})
    (w / "cfg").mkdir()
    (w / "cfg" / "batch0.yaml").write_text("data:\n  batch_size: 0\n")
    (w / "cfg" / "lrnan.yaml").write_text("optim:\n  lr: .nan\n")
    (w / "existing").mkdir()
    (w / "existing" / "good0_zero_filled_R04.h5").write_bytes(b"the user's own file")
    return w


def _snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.sha1(p.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------- the table
# (id, argv with {w} = the world and {out} = a fresh output folder, fragments the one line must contain)

RECON = ["reconstruct", "{w}/data/good0.h5", "--method"]
EVAL = ["evaluate", "{w}/data", "--out", "{out}", "--timing-runs", "1", "--no-figures"]
ROWS = [
    # reconstruct: flags
    ("recon-fps-negative", RECON + ["zero_filled", "--accel", "4", "--out", "{out}", "--fps", "-1"], ["--fps", "-1"]),
    ("recon-fps-nan", RECON + ["zero_filled", "--accel", "4", "--out", "{out}", "--fps", "nan"], ["--fps", "nan"]),
    ("recon-scale-zero", RECON + ["zero_filled", "--accel", "4", "--out", "{out}", "--scale", "0"], ["--scale", "0"]),
    ("recon-device-tpu9", RECON + ["zero_filled", "--accel", "4", "--out", "{out}", "--device", "tpu9"],
     ["--device", "tpu9"]),
    ("recon-device-cuda7", RECON + ["zero_filled", "--accel", "4", "--out", "{out}", "--device", "cuda:7"],
     ["--device", "cuda:7"]),
    ("recon-format-png", RECON + ["zero_filled", "--accel", "4", "--out", "{out}", "--formats", "png"],
     ["--formats", "png"]),
    ("recon-unknown-method", RECON + ["magic", "--accel", "4", "--out", "{out}"], ["magic", "--checkpoint"]),
    ("recon-missing-input", ["reconstruct", "{w}/nope.h5", "--method", "zero_filled", "--out", "{out}"], ["nope.h5"]),
    ("recon-out-is-a-file", RECON + ["zero_filled", "--accel", "4", "--out", "{w}/data/good1.h5"],
     ["--out", "good1.h5"]),
    ("recon-missing-mask", RECON + ["zero_filled", "--accel", "R99", "--out", "{out}"], ["good0.h5", "R99"]),
    ("recon-escaping-accel", RECON + ["zero_filled", "--accel", "../../x", "--out", "{out}"], ["../../x"]),
    # reconstruct: defaults that mislead, existing outputs
    ("recon-fully-sampled-without-accel", RECON + ["zero_filled", "--out", "{out}"],
     ["good0.h5", "fully sampled", "--accel", "--accel none"]),
    ("recon-existing-output", RECON + ["zero_filled", "--accel", "4", "--out", "{w}/existing", "--formats", "h5"],
     ["good0_zero_filled_R04.h5", "--overwrite"]),
    # reconstruct: checkpoints
    ("recon-text-file-named-pt", RECON + ["model", "--checkpoint", "{w}/ck/text.pt", "--accel", "4", "--out", "{out}"],
     ["text.pt", "not a PyTorch checkpoint"]),
    ("recon-pickle-payload", RECON + ["model", "--checkpoint", "{w}/ck/evil.pt", "--accel", "4", "--out", "{out}"],
     ["evil.pt", "posix.system", "weights only"]),
    ("recon-future-version", RECON + ["model", "--checkpoint", "{w}/ck/future.pt", "--accel", "4", "--out", "{out}"],
     ["future.pt", "version 99", "version 2"]),
    ("recon-nan-weights", RECON + ["model", "--checkpoint", "{w}/ck/nan.pt", "--accel", "4", "--out", "{out}"],
     ["nan.pt", "NaN"]),
    ("recon-absurd-channels", RECON + ["model", "--checkpoint", "{w}/ck/huge.pt", "--accel", "4", "--out", "{out}"],
     ["huge.pt", "10000000"]),
    ("recon-missing-checkpoint", RECON + ["model", "--checkpoint", "{w}/ck/none.pt", "--accel", "4", "--out", "{out}"],
     ["none.pt"]),
    # reconstruct: bad data
    ("recon-zero-mask", ["reconstruct", "{w}/bad/zero_mask/s.h5", "--method", "zero_filled", "--accel", "4",
                         "--out", "{out}"], ["zero_mask/s.h5", "masks/R04", "no line"]),
    ("recon-negative-mask", ["reconstruct", "{w}/bad/neg_mask/s.h5", "--method", "zero_filled", "--accel", "4",
                             "--out", "{out}"], ["neg_mask/s.h5", "masks/R04", "-1.0"]),
    ("recon-mask-of-twos", ["reconstruct", "{w}/bad/two_mask/s.h5", "--method", "zero_filled", "--accel", "4",
                            "--out", "{out}"], ["two_mask/s.h5", "masks/R04", "2.0"]),
    ("recon-frame-without-lines", ["reconstruct", "{w}/bad/frame_empty/s.h5", "--method", "zero_filled",
                                   "--out", "{out}"], ["frame_empty/s.h5", "'mask'", "frames [1]"]),
    ("recon-zero-kspace", ["reconstruct", "{w}/bad/zero_kspace/s.h5", "--method", "zero_filled", "--accel", "4",
                           "--out", "{out}"], ["zero_kspace/s.h5", "'kspace'", "all zeros"]),
    ("recon-zero-maps", ["reconstruct", "{w}/bad/zero_maps/s.h5", "--method", "zero_filled", "--accel", "4",
                         "--out", "{out}"], ["zero_maps/s.h5", "'maps'", "all zeros"]),
    ("recon-huge-declared-size", ["reconstruct", "{w}/bad/huge_kspace/s.h5", "--method", "zero_filled",
                                  "--accel", "4", "--out", "{out}"], ["huge_kspace/s.h5", "'kspace'", "GiB"]),
    # evaluate
    ("eval-device-tpu9", EVAL + ["--methods", "zero_filled", "--device", "tpu9"], ["--device", "tpu9"]),
    ("eval-timing-runs-zero", ["evaluate", "{w}/data", "--out", "{out}", "--methods", "zero_filled",
                               "--timing-runs", "0"], ["--timing-runs", "0"]),
    ("eval-missing-folder", ["evaluate", "{w}/nope", "--out", "{out}", "--methods", "zero_filled"], ["nope"]),
    ("eval-missing-mask", EVAL + ["--methods", "zero_filled", "--accel", "R99"], ["R99"]),
    ("eval-text-checkpoint", EVAL + ["--methods", "--checkpoint", "net={w}/ck/text.pt"], ["text.pt"]),
    ("eval-nan-checkpoint", EVAL + ["--methods", "--checkpoint", "net={w}/ck/nan.pt"], ["nan.pt", "NaN"]),
    ("eval-future-checkpoint", EVAL + ["--methods", "--checkpoint", "net={w}/ck/future.pt"],
     ["future.pt", "version 99"]),
    ("eval-pickle-payload", EVAL + ["--methods", "--checkpoint", "net={w}/ck/evil.pt"], ["evil.pt", "weights only"]),
    ("eval-zero-mask", ["evaluate", "{w}/bad/zero_mask", "--out", "{out}", "--methods", "zero_filled",
                        "--accel", "4", "--no-figures"], ["masks/R04", "no line"]),
    ("eval-zero-kspace", ["evaluate", "{w}/bad/zero_kspace", "--out", "{out}", "--methods", "zero_filled",
                          "--accel", "4", "--no-figures"], ["'kspace'", "all zeros"]),
    ("eval-zero-maps", ["evaluate", "{w}/bad/zero_maps", "--out", "{out}", "--methods", "zero_filled",
                        "--accel", "4", "--no-figures"], ["'maps'", "all zeros"]),
    # prepare
    ("prepare-ismrmrd-accels-zero", ["prepare", "ismrmrd", "{w}/raw/narrow.h5", "{out}", "--acs", "4",
                                     "--accels", "0"], ["--accels", "0"]),
    ("prepare-ismrmrd-acs-wider-than-data", ["prepare", "ismrmrd", "{w}/raw/narrow.h5", "{out}", "--acs", "24"],
     ["narrow.h5", "--acs 24", f"{W} phase-encode lines"]),
    ("prepare-ismrmrd-acs-zero", ["prepare", "ismrmrd", "{w}/raw/narrow.h5", "{out}", "--acs", "0"], ["--acs", "0"]),
    ("prepare-ismrmrd-not-hdf5", ["prepare", "ismrmrd", "{w}/raw/notes.h5", "{out}"], ["notes.h5", "HDF5"]),
    ("prepare-ismrmrd-missing", ["prepare", "ismrmrd", "{w}/raw/nope.h5", "{out}"], ["nope.h5"]),
    ("prepare-cmrx-zero-mask", ["prepare", "cmrxrecon", "{w}/mat_zero_mask", "{out}", "--views", "sax", "--acs", "4"],
     ["cine_sax_mask.mat", "mask04", "no line"]),
    ("prepare-cmrx-huge-declared-size", ["prepare", "cmrxrecon", "{w}/mat_huge", "{out}", "--views", "sax"],
     ["cine_sax.mat", "kspace_full", "GiB"]),
    ("prepare-cmrx-missing", ["prepare", "cmrxrecon", "{w}/nope", "{out}"], ["nope"]),
    ("prepare-cmrx-negative-fractions", ["prepare", "cmrxrecon", "{w}/mat_zero_mask", "{out}", "--split-fractions",
                                         "-1", "0", "0"], ["--split-fractions"]),
    # simulate
    ("simulate-no-subjects", ["simulate", "{out}", "--subjects", "0"], ["--subjects", "0"]),
    ("simulate-snr-nan", ["simulate", "{out}", "--snr-db", "nan"], ["--snr-db"]),
    ("simulate-accels-zero", ["simulate", "{out}", "--accels", "0"], ["--accels", "0"]),
    ("simulate-huge-size", ["simulate", "{out}", "--size", "100000", "100000"], ["--size 100000 100000", "GiB"]),
    ("simulate-zero-size", ["simulate", "{out}", "--size", "64", "0"], ["--size", "0"]),
    # train and demo (checked last)
    ("train-batch-size-zero", ["train", "{w}/data", "--config", "{w}/cfg/batch0.yaml", "--out", "{out}"],
     ["batch_size", "0"]),
    ("train-lr-nan", ["train", "{w}/data", "--config", "{w}/cfg/lrnan.yaml", "--out", "{out}"], ["lr", "nan"]),
    ("train-init-text-file", ["train", "{w}/data", "--init", "{w}/ck/text.pt", "--epochs", "1", "--out", "{out}"],
     ["text.pt"]),
    ("demo-device-tpu9", ["demo", "--out", "{out}", "--device", "tpu9"], ["tpu9"]),
]


@pytest.mark.parametrize("argv, fragments", [pytest.param(a, f, id=i) for i, a, f in ROWS])
def test_bad_input_one_line_nonzero_exit_nothing_written_outside_out(world, tmp_path, capsys, argv, fragments):
    out = tmp_path / "out"
    argv = [a.replace("{w}", str(world)).replace("{out}", str(out)) for a in argv]
    if "narrow.h5" in " ".join(argv) and not (world / "raw" / "narrow.h5").exists():
        pytest.skip("ismrmrd package not installed")
    before = _snapshot(world)
    outside = _snapshot(tmp_path, skip=out)
    rc, err = run_cli(argv, capsys)
    assert rc not in (0, None), f"exit status {rc}; stderr: {err}"
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0], f"expected one line, got {len(lines)}:\n{err}"
    for frag in fragments:
        assert frag in lines[0], f"{frag!r} not in: {lines[0]}"
    assert "Traceback" not in err and "trusted=True" not in err
    assert _snapshot(world) == before, "a file in the world changed"
    assert _snapshot(tmp_path, skip=out) == outside, "a file was written outside --out"
    assert not list(Path.cwd().glob("PWNED"))


# ----------------------------------------------------------------------------- names that would leave --out


def test_view_attribute_cannot_put_evaluate_figures_outside_out(world, tmp_path, capsys):
    out = tmp_path / "deep" / "out"
    before = _snapshot(world)
    assert main(["evaluate", str(world / "escape"), "--out", str(out), "--methods", "zero_filled", "cg_sense",
                 "--accel", "4", "--timing-runs", "1"]) == 0
    err = capsys.readouterr().err
    assert "only 1 slices" in err and "Wilcoxon tests left out" in err and "at least 6 slices" in err
    assert (out / "stats.csv").read_text().count("\n") == 1  # header only: no test on one slice
    assert _snapshot(world) == before
    assert sorted(p.name for p in tmp_path.rglob("*") if out not in p.parents and p != out) == ["deep"]
    assert (out / "figures" / "dynamic_escaped_R04.png").is_file()
    # figures follow --overwrite like the tables: a second run without it changes nothing
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert main(["evaluate", str(world / "escape"), "--out", str(out), "--methods", "zero_filled", "--accel", "4",
                 "--timing-runs", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamp


def test_nonfinite_model_output_stops_evaluate_naming_slice_and_checkpoint(world, tmp_path):
    from cinerecon.errors import DataError
    from cinerecon.evaluate.runner import EvaluationOptions, evaluate_dir

    def diverged(kspace, mask, maps):
        return torch.full((kspace.shape[0],) + kspace.shape[2:], float("inf"), dtype=torch.complex64)

    diverged.source_checkpoint = "runs/net/best.pt"
    where = r"good0\.h5: slice 'good0' at R04: method 'net' \(checkpoint runs/net/best\.pt\)"
    with pytest.raises(DataError, match=where):
        evaluate_dir(world / "data", {"net": diverged}, out_dir=tmp_path / "out", accels=(4,),
                     options=EvaluationOptions(figures=False))
    assert not (tmp_path / "out" / "table1.md").exists()


def test_prepare_ismrmrd_name_cannot_leave_out(world, tmp_path):
    if not (world / "raw" / "narrow.h5").exists():
        pytest.skip("ismrmrd package not installed")
    out = tmp_path / "a" / "b" / "out"
    assert main(["prepare", "ismrmrd", str(world / "raw" / "narrow.h5"), str(out), "--acs", "4", "--accels", "4",
                 "--name", "../../X", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["X_s00.h5", "test.txt"]
    assert not (tmp_path / "a" / "X_s00.h5").exists() and not list(tmp_path.glob("X*"))


def test_every_command_and_flag_has_help():
    import argparse

    from cinerecon.cli import build_parser

    missing = []

    def walk(p: argparse.ArgumentParser, name: str) -> None:
        if not p.description:
            missing.append(f"{name}: description")
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for n, sp in a.choices.items():
                    walk(sp, f"{name} {n}")
            elif not a.help and a.dest != "help":
                missing.append(f"{name} {a.option_strings or a.dest}")

    walk(build_parser(), "cinerecon")
    assert missing == []
