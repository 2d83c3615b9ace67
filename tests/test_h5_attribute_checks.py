"""Root and mask attributes of our HDF5 format that are not what the layout says.

Each row writes a good slice with our writer, replaces one attribute with h5py (the writer
refuses bad values), and runs ``cinerecon reconstruct`` in-process: one line naming the
file, the attribute and the value on stderr, a non-zero exit, no traceback, nothing
written under ``--out`` and the input unchanged. Covers attributes that are not numbers
(or not UTF-8 text), pixel spacing / frame times / scanner geometry that are not finite,
of the wrong length or degenerate (these used to be copied into the output, or to fail in
the NIfTI writer after the HDF5 record was written), and a ``fully_sampled`` attribute
that disagrees with the stored mask (which bypassed the "give --accel" rule).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from cinerecon.cli import main
from test_reconstruct_cli import make_file

C, T, H, W = 2, 3, 12, 10
GEOMETRY = {"position": [1.0, 2.0, 3.0], "read_dir": [1.0, 0.0, 0.0], "phase_dir": [0.0, 1.0, 0.0],
            "slice_dir": [0.0, 0.0, 1.0], "slice_thickness": 8.0}
UNDERSAMPLED = np.where(np.arange(W) % 2 == 0, 1.0, 0.0).astype(np.float32)[None, None, None]


def _slice(path: Path, attrs: dict, mask: np.ndarray | None = None, mask_attrs: dict | None = None) -> Path:
    """A fully sampled slice with an R04 mask, then root ``attrs`` / ``masks/R04`` attrs / ``mask`` replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    make_file(path, c=C, t=T, h=H, w=W, pixel_spacing=(1.5, 1.5))
    with h5py.File(path, "r+") as f:
        f.attrs.update(attrs)
        f["masks"]["R04"].attrs.update(mask_attrs or {})
        if mask is not None:
            del f["mask"]
            f.create_dataset("mask", data=mask)
    return path


ACCEL4 = ["--accel", "4"]
# (id, root attributes, extra reconstruct flags, fragments the one line must contain; kwargs of _slice)
ROWS = [
    ("accel-not-a-number", {"accel": "fast"}, ACCEL4, ["'accel'", "fast"], {}),
    ("accel-nan", {"accel": np.nan}, ACCEL4, ["'accel'", "nan"], {}),
    ("acs-not-a-number", {"acs": "abc"}, ACCEL4, ["'acs'", "abc"], {}),
    ("acs-fraction", {"acs": 2.5}, ACCEL4, ["'acs'", "2.5"], {}),
    ("frames-not-a-number", {"frames": "abc"}, ACCEL4, ["'frames'", "abc"], {}),
    ("name-not-utf8", {"name": np.bytes_(b"\xff\xfeslice")}, ACCEL4, ["'name'", "UTF-8"], {}),
    ("mask-accel-not-a-number", {}, ACCEL4, ["masks/R04", "'accel'", "fast"], {"mask_attrs": {"accel": "fast"}}),
    ("spacing-nan", {"pixel_spacing": [np.nan, 1.0]}, ACCEL4, ["'pixel_spacing'", "nan"], {}),
    ("spacing-not-positive", {"pixel_spacing": [-2.0, 0.0]}, ACCEL4, ["'pixel_spacing'", "-2.0"], {}),
    ("spacing-one-value", {"pixel_spacing": [1.5]}, ACCEL4, ["'pixel_spacing'", "[1.5]"], {}),
    ("spacing-text", {"pixel_spacing": "1.5 mm"}, ACCEL4, ["'pixel_spacing'", "1.5 mm"], {}),
    ("frame-times-nan", {"frame_times_ms": [0.0, np.nan, 80.0]}, ACCEL4, ["'frame_times_ms'", "nan"], {}),
    ("frame-times-decreasing", {"frame_times_ms": [0.0, 80.0, 40.0]}, ACCEL4, ["'frame_times_ms'", "80.0"], {}),
    ("frame-times-wrong-count", {"frame_times_ms": [0.0, 40.0]}, ACCEL4, ["'frame_times_ms'", f"{T} frames"], {}),
    ("position-text", {**GEOMETRY, "position": "centre"}, ACCEL4, ["'position'", "centre"], {}),
    ("read-dir-zero", {**GEOMETRY, "read_dir": [0.0, 0.0, 0.0]}, ACCEL4, ["'read_dir'", "unit"], {}),
    ("slice-dir-along-read", {**GEOMETRY, "slice_dir": [1.0, 0.0, 0.0]}, ACCEL4, ["'slice_dir'", "'read_dir'"], {}),
    ("thickness-text", {**GEOMETRY, "slice_thickness": "thick"}, ACCEL4, ["'slice_thickness'", "thick"], {}),
    ("fully-sampled-attr-false-mask-all-ones", {"fully_sampled": False}, [],
     ["'fully_sampled'", "False", "'mask'", "all ones"], {}),
    ("fully-sampled-attr-true-mask-with-zeros", {"fully_sampled": True}, ACCEL4,
     ["'fully_sampled'", "True", "'mask'", "zeros"], {"mask": UNDERSAMPLED}),
    ("fully-sampled-attr-text", {"fully_sampled": "no"}, ACCEL4, ["'fully_sampled'", "no"], {}),
    ("format-version-newer", {"format_version": 99}, ACCEL4, ["'format_version'", "99", "newer"], {}),
    ("format-version-text", {"format_version": "one"}, ACCEL4, ["'format_version'", "one"], {}),
]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("attrs, flags, fragments, kw",
                         [pytest.param(a, fl, fr, kw, id=i) for i, a, fl, fr, kw in ROWS])
def test_bad_attribute_one_line_nonzero_exit_nothing_written(tmp_path, capsys, attrs, flags, fragments, kw):
    src = _slice(tmp_path / "data" / "s.h5", attrs, **kw)
    out = tmp_path / "out"
    before = _digest(tmp_path / "data")
    capsys.readouterr()
    rc = main(["reconstruct", str(src), "--method", "zero_filled", *flags, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc not in (0, None), f"exit status {rc}; stderr: {err}"
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0], f"expected one line, got {len(lines)}:\n{err}"
    for frag in ["s.h5", *fragments]:
        assert frag in lines[0], f"{frag!r} not in: {lines[0]}"
    assert "Traceback" not in err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()], "an output was written"
    assert _digest(tmp_path / "data") == before, "the input changed"


def test_text_attributes_written_as_one_element_arrays_are_read(tmp_path):
    """MATLAB and some h5py users store a string attribute as a 1-element array: read, not refused."""
    from cinerecon.data.h5 import read_h5

    src = _slice(tmp_path / "s.h5", {"name": np.array([b"slice_a"]), "view": np.array(["sax"], dtype=object)})
    meta = read_h5(src).meta
    assert (meta.name, meta.view) == ("slice_a", "sax")
