"""Our HDF5 format (one file per slice) and a lazy torch Dataset over a folder of such files.

Layout of one file::

    kspace          (C, T, H, W) complex64   fully sampled when available
    maps            (C, 1, H, W) complex64   coil sensitivities
    target          (T, H, W)    complex64   optional coil-combined reference
    mask            (1, T|1, H|1, W) float32 sampling mask of ``kspace`` (ones if fully sampled)
    masks/<key>     (T|1, W)     float32     retrospective line masks, attrs ``accel`` (nominal R), ``acs``;
                    (T|1, H, W)  for masks that vary along the readout too (pseudo-radial)
    attrs: name, view, frames, coils, height, width, fully_sampled, pixel_spacing (if known),
           frame_times_ms (if known), accels (nominal R of masks/*), format_version,
           position / read_dir / phase_dir / slice_dir / slice_thickness (scanner geometry, if known)

The full description, for readers in other languages: ``docs/hdf5_layout.md``.

Mask keys: ``R04``, ``R08``, ``R10``, ``R24`` (equispaced + ACS, see :func:`transforms.mask_key`).
Every problem with a file raises :class:`DataError` naming the file, the key and the shape.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ..masks import MaskSpec, acs_lines, effective_acceleration, varies_along_readout
from ..files import atomic_output, atomic_write_text, check_writable
from .export import attr_floats, geometry_attrs, geometry_from_attrs, shown
from .sample import CineSample, SampleMeta, check_array_size, check_mask_values
from .transforms import apply_mask, augment as augment_sample, draw_mask, window_indices

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


class H5Info(NamedTuple):
    """Shape and metadata of one file, read without loading arrays.

    Attributes:
        path: the file.
        shape: (C, T, H, W) of ``kspace``.
        mask_keys: keys under ``masks/``.
        fully_sampled: whether ``kspace`` is fully sampled.
        has_target: whether a ``target`` dataset exists.
    """

    path: Path
    shape: tuple[int, int, int, int]
    mask_keys: tuple[str, ...]
    fully_sampled: bool
    has_target: bool


# ----------------------------------------------------------------------------- writing


def _stored_form(mask: torch.Tensor, key: str, frames: int, height: int, width: int) -> np.ndarray:
    """A mask as stored under ``masks/``: float32 (T|1, W) for line masks, (T|1, H, W) otherwise.

    Accepts (T|1, W), (T|1, H, W) and rank 4 (1, T|1, H|1, W); a 2-D pattern that is the same
    in every row is stored as lines.
    """
    m = torch.as_tensor(mask).detach().cpu().float()
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim == 3 and m.shape[1] == 1:
        m = m[:, 0]
    elif m.ndim == 3 and m.shape[1] == height and not varies_along_readout(m):
        m = m[:, 0]
    ok = m.shape[0] in (1, frames) and m.shape[-1] == width and (m.ndim == 2 or (m.ndim == 3 and m.shape[1] == height))
    if not ok:
        raise DataError(f"mask {key!r} must be (T|1, W) = ({frames}|1, {width}), (T|1, H, W) = ({frames}|1, {height}, "
                        f"{width}) or (1, T|1, H|1, W), got {tuple(torch.as_tensor(mask).shape)}")
    check_mask_values(m if m.ndim == 2 else m[None], f"mask {key!r}")
    return m.numpy()


def nominal_accel(key: str, mask: torch.Tensor | np.ndarray) -> float:
    """Nominal R from a key like ``R08`` or ``R08_uniform``; else the effective acceleration."""
    m = re.match(r"R(\d+)", key)
    return float(m.group(1)) if m else effective_acceleration(torch.as_tensor(mask))


def write_h5(path: str | Path, sample: CineSample, masks: Mapping[str, torch.Tensor] | None = None,
             overwrite: bool = False) -> Path:
    """Write one slice to our HDF5 format (atomically: temporary file, then rename).

    Args:
        path: output file.
        sample: the slice; its k-space is stored as is (store fully sampled k-space when you
            have it), with its mask, maps, target and metadata.
        masks: retrospective masks by key, each (T|1, W), (T|1, H, W) or (1, T|1, H|1, W).
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        OutputExistsError: the file exists and ``overwrite`` is False.
        DataError: a mask of the wrong shape.
    """
    path = Path(path)
    c, t, h, w = sample.shape
    arrays = {k: _stored_form(m, k, t, h, w) for k, m in (masks or {}).items()}
    fully = bool((sample.mask == 1).all())
    with atomic_output(path, overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("kspace", data=sample.kspace.detach().cpu().numpy().astype(np.complex64),
                             chunks=(c, 1, h, w))
            f.create_dataset("maps", data=sample.maps.detach().cpu().numpy().astype(np.complex64))
            if sample.target is not None:
                f.create_dataset("target", data=sample.target.detach().cpu().numpy().astype(np.complex64),
                                 chunks=(1, h, w))
            f.create_dataset("mask", data=sample.mask.detach().cpu().float().numpy())
            grp = f.create_group("masks")
            accels = []
            for key, arr in arrays.items():
                ds = grp.create_dataset(key, data=arr)
                ds.attrs["accel"] = nominal_accel(key, arr)
                ds.attrs["acs"] = acs_lines(torch.from_numpy(arr).reshape(arr.shape[0], -1, w))
                accels.append(ds.attrs["accel"])
            meta = sample.meta
            f.attrs.update({
                "format_version": FORMAT_VERSION, "name": meta.name, "view": meta.view, "frames": t,
                "coils": c, "height": h, "width": w, "fully_sampled": fully,
                "accel": float(meta.accel), "acs": int(meta.acs), "accels": np.asarray(accels, dtype=np.float64),
            })
            if meta.pixel_spacing is not None:
                f.attrs["pixel_spacing"] = np.asarray(meta.pixel_spacing, dtype=np.float64)
            if meta.frame_times_ms is not None:
                f.attrs["frame_times_ms"] = np.asarray(meta.frame_times_ms, dtype=np.float64)
            f.attrs.update(geometry_attrs(meta.geometry))
    return path


# ----------------------------------------------------------------------------- reading


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot open as HDF5 (unreadable or truncated file): {e}") from e


def _dataset(f: h5py.File, path: Path, key: str) -> h5py.Dataset:
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise DataError(f"{path}: missing dataset {key!r} (found {sorted(f.keys())})")
    return f[key]


def _check_complex(ds: h5py.Dataset, path: Path, key: str, ndim: int, layout: str) -> None:
    if ds.ndim != ndim or ds.dtype.kind != "c":
        raise DataError(f"{path}: dataset {key!r} must be complex {layout}, got shape {ds.shape} dtype {ds.dtype}")


def _integral(v: np.ndarray) -> bool:
    return bool((v == np.round(v)).all())


def _attr_bool(value: object, where: str) -> bool:
    """A boolean attribute (h5py gives numpy.bool_; the integers 0 and 1 are accepted); DataError otherwise."""
    a = np.asarray(value)
    if a.dtype.kind == "b" and a.size == 1:
        return bool(a.ravel()[0])
    return bool(attr_floats(value, where, "True or False", size=1, ok=lambda v: v[0] in (0, 1))[0])


def _attr_text(value: object, where: str) -> str:
    """A text attribute (str, or bytes holding UTF-8, alone or as a 1-element array); DataError naming ``where`` otherwise."""
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "OSU":
        value = value.reshape(-1)[0]  # h5py reads text written as a 1-element array (e.g. by MATLAB) this way
    if isinstance(value, np.bytes_):
        value = bytes(value)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise DataError(f"{where} must be UTF-8 text, got {shown(value)}") from None
    if isinstance(value, str):
        return str(value)
    raise DataError(f"{where} must be text, got {shown(value)}")


def _attr_accel(value: object, where: str) -> float:
    """A nominal acceleration attribute: one finite number >= 1."""
    return float(attr_floats(value, where, "a finite number >= 1 (nominal acceleration)", size=1,
                             ok=lambda v: v[0] >= 1)[0])


def _inspect(f: h5py.File, path: Path) -> H5Info:
    """Check dataset presence, ranks, dtypes and shape agreement; return the file's :class:`H5Info`."""
    ks = _dataset(f, path, "kspace")
    _check_complex(ks, path, "kspace", 4, "(C, T, H, W)")
    c, t, h, w = (int(v) for v in ks.shape)
    if t < 1 or h < 2 or w < 2 or c < 1:
        raise DataError(f"{path}: dataset 'kspace' shape (C, T, H, W) = {ks.shape} is too small")
    check_array_size(ks.shape, 8, f"{path}: dataset 'kspace'")
    mp = _dataset(f, path, "maps")
    _check_complex(mp, path, "maps", 4, "(C, 1, H, W)")
    if mp.shape[0] != c:
        raise DataError(f"{path}: coil count mismatch: 'kspace' {ks.shape} has {c} coils, 'maps' {mp.shape} "
                        f"has {mp.shape[0]}")
    if tuple(mp.shape[1:]) != (1, h, w):
        raise DataError(f"{path}: dataset 'maps' shape {mp.shape} does not match (C, 1, H, W) = ({c}, 1, {h}, {w})")
    has_target = "target" in f
    if has_target:
        tg = _dataset(f, path, "target")
        _check_complex(tg, path, "target", 3, "(T, H, W)")
        if tuple(tg.shape) != (t, h, w):
            raise DataError(f"{path}: dataset 'target' shape {tg.shape} does not match (T, H, W) = ({t}, {h}, {w})")
    if "mask" in f:
        m = _dataset(f, path, "mask")
        if m.ndim != 4 or m.shape[0] != 1 or m.shape[1] not in (1, t) or m.shape[2] not in (1, h) or m.shape[3] != w:
            raise DataError(f"{path}: dataset 'mask' must be (1, T|1, H|1, W) with T={t}, H={h}, W={w}, "
                            f"got {m.shape}")
    keys: tuple[str, ...] = ()
    if "masks" in f:
        if not isinstance(f["masks"], h5py.Group):
            raise DataError(f"{path}: 'masks' must be a group of (T|1, W) or (T|1, H, W) datasets")
        keys = tuple(sorted(f["masks"].keys()))
        for k in keys:
            m = f["masks"][k]
            if (not isinstance(m, h5py.Dataset) or m.ndim not in (2, 3) or m.shape[0] not in (1, t)
                    or m.shape[-1] != w or (m.ndim == 3 and m.shape[1] != h)):
                shape = getattr(m, "shape", None)
                raise DataError(f"{path}: mask 'masks/{k}' must be (T|1, W) = ({t}|1, {w}) or (T|1, H, W) = "
                                f"({t}|1, {h}, {w}), got {shape}")
    for attr, val in (("frames", t), ("coils", c), ("height", h), ("width", w)):
        if attr in f.attrs:
            n = int(attr_floats(f.attrs[attr], f"{path}: attribute {attr!r}", "an integer", size=1,
                                ok=_integral)[0])
            if n != val:
                raise DataError(f"{path}: attribute {attr!r} = {n} disagrees with 'kspace' shape (C, T, H, W) = "
                                f"{ks.shape}")
    fully = "mask" not in f or bool((np.asarray(f["mask"][()]) == 1).all())
    if "fully_sampled" in f.attrs:  # the mask decides; an attribute that says otherwise is a damaged file
        said = _attr_bool(f.attrs["fully_sampled"], f"{path}: attribute 'fully_sampled'")
        if said != fully:
            shape = f["mask"].shape if "mask" in f else None
            raise DataError(f"{path}: attribute 'fully_sampled' = {said} disagrees with dataset 'mask' of shape "
                            f"{shape}, which {'is all ones' if fully else 'has zeros'}; fix the attribute or the mask")
    return H5Info(path, (c, t, h, w), keys, fully, has_target)


def h5_info(path: str | Path) -> H5Info:
    """Validate a file's structure and return its :class:`H5Info` (no large arrays are read)."""
    path = Path(path)
    with _open(path) as f:
        try:
            return _inspect(f, path)
        except (OSError, KeyError, RuntimeError) as e:
            raise DataError(f"{path}: corrupted HDF5 structure: {e}") from e


def _runs(index: np.ndarray) -> list[slice]:
    """Split increasing-by-one runs of ``index`` into slices (a circular window gives at most two)."""
    runs, start = [], 0
    for i in range(1, len(index) + 1):
        if i == len(index) or index[i] != index[i - 1] + 1:
            runs.append(slice(int(index[start]), int(index[i - 1]) + 1))
            start = i
    return runs


def _read(ds: h5py.Dataset, path: Path, key: str, axis: int = 0, index: np.ndarray | None = None) -> np.ndarray:
    """Read (optionally only ``index`` along ``axis``) and reject NaN/Inf."""
    try:
        if index is None:
            arr = ds[()]
        else:
            parts = []
            for sl in _runs(index):
                sel = [slice(None)] * ds.ndim
                sel[axis] = sl
                parts.append(ds[tuple(sel)])
            arr = np.concatenate(parts, axis=axis)
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        raise DataError(f"{path}: cannot read dataset {key!r} of shape {ds.shape}: {e}") from e
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise DataError(f"{path}: dataset {key!r} of shape {ds.shape} contains NaN or Inf values")
    if key in ("kspace", "maps") and not arr.any():
        raise DataError(f"{path}: dataset {key!r} of shape {ds.shape} is all zeros")
    if key == "mask" or key.startswith("masks/"):
        check_mask_values(torch.from_numpy(np.asarray(arr, dtype=np.float32)), f"{path}: mask {key!r}")
    return arr


def _meta(f: h5py.File, path: Path, info: H5Info, index: np.ndarray | None) -> SampleMeta:
    """The root attributes of an open, inspected file as :class:`SampleMeta` (frames ``index`` only).

    Raises:
        DataError: an attribute that is not what ``docs/hdf5_layout.md`` says (text that is not
            UTF-8, a number that is not one, a pixel spacing that is not 2 positive numbers, frame
            times that are not one finite non-decreasing number per frame, bad scanner geometry),
            naming the file, the attribute and its value.
    """
    a = f.attrs
    t, w = info.shape[1], info.shape[3]

    def where(key: str) -> str:
        return f"{path}: attribute {key!r}"

    if "format_version" in a:
        version = attr_floats(a["format_version"], where("format_version"), "a whole number >= 1", size=1,
                              ok=lambda v: _integral(v) and v[0] >= 1)[0]
        if version > FORMAT_VERSION:
            raise DataError(f"{where('format_version')} is {int(version)}: written by a newer cinerecon (this one "
                            f"reads format versions up to {FORMAT_VERSION}); update cinerecon")
    name = _attr_text(a["name"], where("name")) if "name" in a else path.stem
    view = _attr_text(a["view"], where("view")) if "view" in a else "unknown"
    accel = _attr_accel(a["accel"], where("accel")) if "accel" in a else 1.0
    acs = 0
    if "acs" in a:
        acs = int(attr_floats(a["acs"], where("acs"), f"an integer from 0 to W = {w} (ACS lines)", size=1,
                              ok=lambda v: _integral(v) and 0 <= v[0] <= w)[0])
    spacing = None
    if "pixel_spacing" in a:
        spacing = attr_floats(a["pixel_spacing"], where("pixel_spacing"), "2 positive numbers (mm along H and W)",
                              size=2, ok=lambda v: bool((v > 0).all()))
    times = None
    if "frame_times_ms" in a:
        times = attr_floats(a["frame_times_ms"], where("frame_times_ms"),
                            f"one finite number per frame ({t} frames), non-decreasing", size=t,
                            ok=lambda v: bool((np.diff(v) >= 0).all()))
        if index is not None:
            times = times[index]
    return SampleMeta(
        name=name, view=view, accel=accel, acs=acs, source=str(path),
        pixel_spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
        frame_times_ms=None if times is None else tuple(float(v) for v in times),
        geometry=geometry_from_attrs(a, path))


def read_h5(path: str | Path, mask_key: str | None = None,
            frames: Sequence[int] | np.ndarray | None = None) -> CineSample:
    """Read one slice.

    Args:
        path: file in our format.
        mask_key: a key under ``masks/``: the k-space is undersampled retrospectively
            (``mask * kspace``) and meta.accel / meta.acs come from the mask. ``None``: the
            data as stored (with the stored ``mask``).
        frames: optional frame indices to read (e.g. a circular window); all when None.

    Returns:
        CineSample with kspace (C, T', H, W), mask (1, T'|1, 1|H, W), maps (C, 1, H, W),
        target (T', H, W) or None.

    Raises:
        DataError: unreadable/truncated file, missing datasets or mask key, wrong shapes,
            coil-count mismatch, NaN/Inf values, or a mask requested on undersampled data.
    """
    path = Path(path)
    with _open(path) as f:
        try:
            info = _inspect(f, path)
            c, t, h, w = info.shape
            index = None
            if frames is not None:
                index = np.asarray(frames, dtype=np.int64)
                if index.ndim != 1 or len(index) == 0 or index.min() < 0 or index.max() >= t:
                    raise DataError(f"{path}: frame indices {index.tolist()} out of range for 'kspace' {info.shape}")
            new_mask = None
            if mask_key is not None:
                new_mask, new_accel = _stored_mask(f, path, info, mask_key, index)
                if not info.fully_sampled:
                    raise DataError(f"{path}: cannot apply mask 'masks/{mask_key}': stored 'kspace' {info.shape} "
                                    "is not fully sampled")
            kspace = _read(f["kspace"], path, "kspace", 1, index)
            maps = _read(f["maps"], path, "maps")
            target = _read(f["target"], path, "target", 0, index) if info.has_target else None
            mask = _sampling_mask(f, path, w)
            if index is not None and mask.shape[1] > 1:
                mask = mask[:, index]
            meta = _meta(f, path, info, index)
        except (OSError, KeyError, RuntimeError) as e:
            raise DataError(f"{path}: corrupted HDF5 file: {e}") from e
    sample = CineSample(torch.from_numpy(kspace.astype(np.complex64)), torch.from_numpy(mask.astype(np.float32)),
                        torch.from_numpy(maps.astype(np.complex64)),
                        None if target is None else torch.from_numpy(target.astype(np.complex64)), meta)
    return sample if new_mask is None else apply_mask(sample, new_mask, new_accel)


def _sampling_mask(f: h5py.File, path: Path, width: int) -> np.ndarray:
    """The dataset ``mask`` of an open, inspected file, (1, T|1, H|1, W); ones (1, 1, 1, W) when absent."""
    if "mask" not in f:
        return np.ones((1, 1, 1, width), dtype=np.float32)
    return _read(f["mask"], path, "mask")


def read_sampling_mask(path: str | Path) -> torch.Tensor:
    """Read the sampling mask of the stored ``kspace`` (dataset ``mask``) as (1, T|1, H|1, W) float32,
    checked as :func:`read_h5` checks it, without reading the k-space."""
    path = Path(path)
    with _open(path) as f:
        try:
            return torch.from_numpy(_sampling_mask(f, path, _inspect(f, path).shape[3]).astype(np.float32))
        except (OSError, KeyError, RuntimeError) as e:
            raise DataError(f"{path}: corrupted HDF5 file: {e}") from e


def _stored_mask(f: h5py.File, path: Path, info: H5Info, mask_key: str, index: np.ndarray | None
                 ) -> tuple[torch.Tensor, float]:
    """``masks/<mask_key>`` of an open, inspected file as (1, T|1, 1|H, W) float32 and its nominal R."""
    if mask_key not in info.mask_keys:
        raise DataError(f"{path}: missing mask 'masks/{mask_key}' (found {list(info.mask_keys)})")
    ds = f["masks"][mask_key]
    m2 = _read(ds, path, f"masks/{mask_key}")
    if index is not None and m2.shape[0] > 1:
        m2 = m2[index]
    mask = torch.from_numpy(m2.astype(np.float32))[None]
    if mask.ndim == 3:  # line mask (1, T|1, W)
        mask = mask[:, :, None, :]
    if "accel" not in ds.attrs:
        return mask, effective_acceleration(mask)
    return mask, _attr_accel(ds.attrs["accel"], f"{path}: attribute 'accel' of mask 'masks/{mask_key}'")


def read_mask(path: str | Path, mask_key: str, frames: Sequence[int] | np.ndarray | None = None
              ) -> tuple[torch.Tensor, float]:
    """Read the stored mask ``masks/<mask_key>`` as (1, T|1, 1|H, W) float32 and its nominal acceleration."""
    path = Path(path)
    with _open(path) as f:
        try:
            return _stored_mask(f, path, _inspect(f, path), mask_key,
                                None if frames is None else np.asarray(frames, dtype=np.int64))
        except (OSError, KeyError, RuntimeError) as e:
            raise DataError(f"{path}: corrupted HDF5 file: {e}") from e


def read_split(root: str | Path) -> dict[str, list[Path]]:
    """Split lists of a dataset folder.

    ``train.txt`` / ``val.txt`` / ``test.txt`` in ``root`` list one file per line (relative to
    ``root`` or absolute; blank lines and ``#`` comments ignored). Without any of them, every
    ``*.h5`` file in ``root`` is "test".

    Returns:
        {"train": [...], "val": [...], "test": [...]}.

    Raises:
        DataError: a listed file does not exist.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    lists = {s: root / f"{s}.txt" for s in SPLITS}
    if not any(p.exists() for p in lists.values()):
        return {"train": [], "val": [], "test": h5_files(root)}
    out: dict[str, list[Path]] = {}
    for split, lst in lists.items():
        files: list[Path] = []
        if lst.exists():
            for n, line in enumerate(lst.read_text().splitlines(), start=1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                p = Path(line) if Path(line).is_absolute() else root / line
                if not p.is_file():
                    raise DataError(f"{lst}: line {n}: listed file {p} does not exist")
                files.append(p)
        out[split] = files
    return out


def write_split(root: str | Path, splits: Mapping[str, Sequence[Path]], overwrite: bool = False) -> list[Path]:
    """Write ``<split>.txt`` files (paths relative to ``root``); refuses to overwrite unless asked."""
    root = Path(root)
    targets = {s: root / f"{s}.txt" for s in splits}
    check_writable(list(targets.values()), overwrite)
    written = []
    for s, p in targets.items():
        lines = [os.path.relpath(Path(f), root) for f in splits[s]]
        atomic_write_text(p, "".join(line + "\n" for line in lines))
        written.append(p)
    return written


def h5_files(root: str | Path) -> list[Path]:
    """Every slice file (``*.h5``) below ``root``, sorted.

    Skipped: hidden files (``.name.h5``, e.g. an old writer's leftovers) and our own
    reconstruction outputs (files holding ``recon`` and no ``kspace``, as ``reconstruct
    --out`` inside the data folder leaves them), which are results, not inputs.
    """
    return [p for p in sorted(Path(root).rglob("*.h5")) if not p.name.startswith(".") and not _is_reconstruction(p)]


def _is_reconstruction(path: Path) -> bool:
    """Whether ``path`` is one of our reconstruction records (unreadable files are left to the reader's errors)."""
    try:
        with h5py.File(path, "r") as f:
            return "recon" in f and "kspace" not in f
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- dataset


def _list_files(root: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(root, (str, Path)):
        root = Path(root)
        if root.is_dir():
            files = h5_files(root)
            if not files:
                raise DataError(f"{root}: no .h5 files")
            return files
        if not root.is_file():
            raise DataError(f"{root}: no such file or directory")
        return [root]
    return [Path(p) for p in root]


class CineH5Dataset(Dataset):
    """Lazy torch Dataset of :class:`CineSample` over files in our format (one item per file).

    Files are opened only in ``__getitem__``, so the dataset can be used with worker processes.

    Args:
        root: a folder (all ``*.h5``), one file, or a list of files.
        mask_key: stored mask to apply (``R04`` ... ``R24``); None keeps the data as stored.
            Ignored when ``mask_spec`` is given.
        mask_spec: draw masks on the fly instead (seeded by ``seed``, the item index and the
            epoch); a list gives mixed-mask training with one spec drawn per item.
        frames_window: if set, each item is that many adjacent frames (circular in time).
        seed: base seed of all randomness.
        window_start: fixed first frame of the window; None draws it at random (training).
        augment: random exact flips / time reversal / time shift (fully sampled files only).
        check: read every file's structure now (:func:`h5_info`, no arrays) and refuse, naming
            the first such file, a file that lacks the stored mask ``mask_key`` (when masks are
            not drawn on the fly); otherwise files are first opened by ``__getitem__``.

    Attributes:
        files: the file paths, in item order.
    """

    def __init__(self, root: str | Path | Sequence[str | Path], mask_key: str | None = "R08",
                 mask_spec: MaskSpec | Sequence[MaskSpec] | None = None, frames_window: int | None = None,
                 seed: int = 0, window_start: int | None = None, augment: bool = False,
                 check: bool = False) -> None:
        self.files = _list_files(root)
        self._infos: list[H5Info] | None = None
        if isinstance(mask_spec, Sequence) and len(mask_spec) == 0:
            raise ConfigError("mask_spec list is empty")
        if frames_window is not None and frames_window < 1:
            raise ConfigError(f"frames_window must be >= 1, got {frames_window}")
        self.mask_key = mask_key
        self.mask_spec = mask_spec
        self.frames_window = frames_window
        self.seed = int(seed)
        self.window_start = window_start
        self.augment = augment
        self.epoch = 0
        if check:
            self.check_files()

    def infos(self) -> list[H5Info]:
        """The :class:`H5Info` of every file, in item order (read once, structure only)."""
        if self._infos is None:
            self._infos = [h5_info(p) for p in self.files]
        return self._infos

    def check_files(self) -> None:
        """Refuse (DataError, one line) a file this dataset cannot make training items from.

        Only the HDF5 structure is read (:meth:`infos`): a file whose k-space is undersampled
        only (no fully sampled reference to train against), one with fewer frames than
        ``frames_window``, and one that lacks the stored mask this dataset applies (not checked
        for masks drawn on the fly, ``mask_spec``, or data used as stored, ``mask_key`` None).
        """
        infos = self.infos()
        partial = [i for i in infos if not i.fully_sampled]
        if partial:
            raise DataError(f"{partial[0].path}: k-space (C, T, H, W) = {tuple(partial[0].shape)} is undersampled only "
                            f"({len(partial)} of {len(infos)} files): training needs fully sampled k-space as its "
                            "reference; leave such files out of the training and validation splits (prepare puts "
                            "them in 'test')")
        if self.frames_window is not None:
            short = [i for i in infos if i.shape[1] < self.frames_window]
            if short:
                raise DataError(f"{short[0].path}: {short[0].shape[1]} frames (C, T, H, W) = {tuple(short[0].shape)}, "
                                f"fewer than data.frames_window={self.frames_window} ({len(short)} of {len(infos)} "
                                "files)")
        key = None if self.mask_spec is not None else self.mask_key
        if key is None:
            return
        lacking = [i for i in infos if key not in i.mask_keys]
        if lacking:
            first, n, total = lacking[0], len(lacking), len(infos)
            count = f"{n} of {total} file{'s' if total > 1 else ''} lack{'s' if n == 1 else ''} it"
            raise DataError(f"{first.path}: no stored mask 'masks/{key}' (data.mask_key); this file has "
                            f"{list(first.mask_keys)} ({count}): give a key that every file has (--accel KEY or "
                            "data.mask_key=KEY), or draw masks on the fly with data.masks")

    def item_shapes(self) -> list[tuple[int, int, int, int]]:
        """(C, T, H, W) of each item (T is ``frames_window`` when set), from the file structure only."""
        return [(c, t if self.frames_window is None else self.frames_window, h, w)
                for c, t, h, w in (i.shape for i in self.infos())]

    def set_epoch(self, epoch: int) -> None:
        """Change the random windows, masks and augmentations drawn for each item."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.files)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> CineSample:
        if not 0 <= index < len(self.files):
            raise IndexError(index)
        path = self.files[index]
        rng = self._rng(index)
        frames = None
        if self.frames_window is not None:
            t = h5_info(path).shape[1]
            if self.frames_window > t:
                raise DataError(f"{path}: frames_window={self.frames_window} exceeds the {t} frames of 'kspace'")
            start = int(rng.integers(t)) if self.window_start is None else self.window_start
            frames = window_indices(t, self.frames_window, start)
        key = None if self.mask_spec is not None else self.mask_key
        sample = read_h5(path, mask_key=None if self.augment else key, frames=frames)
        if self.augment:
            sample = augment_sample(sample, rng)
        if self.mask_spec is not None:
            if not bool((sample.mask == 1).all()):
                raise DataError(f"{path}: mask_spec needs fully sampled 'kspace', stored mask has zeros")
            _, t, h, w = sample.shape
            mask, spec = draw_mask(self.mask_spec, t, w, rng, height=h)
            sample = apply_mask(sample, mask, spec.accel)
        elif self.augment and key is not None:
            mask, accel = read_mask(path, key, frames)
            sample = apply_mask(sample, mask, accel)
        return sample
