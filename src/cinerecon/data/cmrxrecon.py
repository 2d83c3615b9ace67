"""Reader for CMRxRecon cine k-space (MATLAB ``.mat`` files, 2023 and 2024 layouts).

Dimension convention
--------------------
The challenge documents the multi-coil arrays in MATLAB order as
``kspace_full`` / ``kspace_sub04|08|10`` (2023), ``kus`` (2024 undersampled) or ``kspace`` (2025 fully sampled):
``(kx, ky, sc, sz, t)`` complex, with kx the readout, ky the phase encoding (the
undersampled axis; the central 24 lines (2023) or 16 lines (2024) are fully
sampled), sc the coils (compressed to 10), sz the slices (SAX) or slice groups (LAX)
and t the cardiac frames. Single-coil files use ``kspace_single_*`` with
``(kx, ky, sz, t)``. Masks are ``mask04|08|10`` (2023, ``cine_<view>_mask.mat``) or
``mask`` (2024, ``cine_<view>_mask_<pattern><R>.mat``), ``(kx, ky)`` or, for the
2024 k-t patterns, ``(kx, ky, t)``.

The files are MATLAB v7.3, i.e. HDF5: h5py shows every array with the dimensions
REVERSED, so ``kspace_full`` reads as ``(t, sz, sc, ky, kx)`` with a compound dtype
with fields ``real`` and ``imag``, and masks read as ``(ky, kx)`` or ``(t, ky, kx)``.
Older MATLAB v5 files (read with :func:`scipy.io.loadmat`) keep MATLAB order; this
module brings both to the reversed (h5py) order internally.

This module maps readout kx to our H axis and phase encoding ky to our W axis, so
one slice becomes k-space (C, T, H, W) = (sc, t, kx, ky) with the mask along W,
the project convention. The k-space centre is at index ``n // 2`` (the challenge's
matrix sizes are even, where ``fftshift`` and ``ifftshift`` agree).

Slices are read lazily: :meth:`CmrxKspaceFile.read_slice` reads one ``sz`` index
with an h5py hyperslab, never the whole 5D array.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from ..errors import DataError
from .sample import check_array_size, check_mask_values
from .transforms import mask_key

KSPACE_KEYS = ("kspace_full", "kspace_sub04", "kspace_sub08", "kspace_sub10", "kus", "kspace",
               "kspace_single_full", "kspace_single_sub04", "kspace_single_sub08", "kspace_single_sub10")
SPLIT_NAMES = {"TrainingSet": "train", "ValidationSet": "val", "TestSet": "test"}
VIEWS = ("sax", "lax", "lvot")

_MASK_KEY_RE = re.compile(r"^mask(\d+)$")
_SUB_KEY_RE = re.compile(r"^kspace(?:_single)?_sub(\d+)$")
_PATTERN_RE = re.compile(r"_(?:mask|kus)_([A-Za-z]+?)(\d+)$")
_ACC_DIR_RE = re.compile(r"^AccFactor(\d+)$")


#: CMRxRecon2024 sampling patterns (lower case) -> the spelling of the challenge's file names
CHALLENGE_PATTERNS = {"uniform": "Uniform", "ktgaussian": "ktGaussian", "ktradial": "ktRadial"}


def accel_key(accel: int, pattern: str = "") -> str:
    """Our mask key for a nominal acceleration: ``R04``, ``R08``; k-t patterns get a suffix (``R08_ktGaussian``).

    The 2024 ``Uniform`` pattern is the same kind as the 2023 masks and gets no suffix.
    """
    key = mask_key(accel)
    if pattern and pattern.lower() != "uniform":
        key += f"_{CHALLENGE_PATTERNS.get(pattern.lower(), pattern)}"  # ktgaussian8.mat -> R08_ktGaussian
    return key


def challenge_key(text: str) -> str | None:
    """Our mask key for a CMRxRecon2024 pattern name, None for other text.

    ``ktGaussian8`` -> ``R08_ktGaussian``, ``Uniform8`` -> ``R08``, ``ktRadial8`` -> ``R08_ktRadial``
    (the names of the challenge's ``cine_sax_mask_<pattern><R>.mat`` files; any letter case).
    """
    m = re.fullmatch(r"([A-Za-z]+?)(\d+)", text.strip())
    if not m or m.group(1).lower() not in CHALLENGE_PATTERNS:
        return None
    return accel_key(int(m.group(2)), CHALLENGE_PATTERNS[m.group(1).lower()])


def challenge_name(key: str) -> str | None:
    """The CMRxRecon2024 name of one of our mask keys (``R08_ktGaussian`` -> ``ktGaussian8``), None for others."""
    m = re.fullmatch(r"R(\d+)_([A-Za-z]+)", key)
    if not m or m.group(2).lower() not in CHALLENGE_PATTERNS or m.group(2).lower() == "uniform":
        return None
    return f"{CHALLENGE_PATTERNS[m.group(2).lower()]}{int(m.group(1))}"


# --------------------------------------------------------------------------- low-level access


def _open_error(path: Path, e: Exception) -> DataError:
    return DataError(f"{path}: cannot read as a MATLAB v7.3 (HDF5) or v5 .mat file "
                     f"(truncated or corrupted?): {e}")


class _MatFile:
    """A .mat file opened for reading; arrays are returned in h5py (reversed MATLAB) order.

    v7.3 files stay open and are sliced lazily; v5 files are loaded with scipy on demand.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: file not found")
        self._h5: h5py.File | None = None
        self._v5: dict[str, np.ndarray] | None = None
        if h5py.is_hdf5(self.path):
            try:
                self._h5 = h5py.File(self.path, "r")
            except (OSError, ValueError) as e:
                raise _open_error(self.path, e) from e
        else:
            import scipy.io

            try:
                raw = scipy.io.loadmat(self.path)
            except Exception as e:  # scipy raises several types on bad files
                raise _open_error(self.path, e) from e
            self._v5 = {k: np.transpose(v) for k, v in raw.items() if not k.startswith("__")}

    def keys(self) -> list[str]:
        """Variable names in the file (MATLAB's internal ``#refs#`` group excluded)."""
        if self._h5 is not None:
            return [k for k in self._h5.keys() if not k.startswith("#")]
        return sorted(self._v5 or {})

    def array(self, key: str) -> h5py.Dataset | np.ndarray:
        """The variable ``key`` in reversed-MATLAB order (an h5py Dataset for v7.3 files)."""
        if key not in self.keys():
            raise DataError(f"{self.path}: key {key!r} not found; the file holds {self.keys()}")
        if self._h5 is not None:
            obj = self._h5[key]
            if not isinstance(obj, h5py.Dataset):
                raise DataError(f"{self.path}: key {key!r} is a {type(obj).__name__}, not an array")
            return obj
        return self._v5[key]  # type: ignore[index]

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> "_MatFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _to_complex64(a: np.ndarray, path: Path, key: str) -> np.ndarray:
    """MATLAB complex (compound real/imag, or native complex) -> complex64."""
    if a.dtype.names is not None:
        if not {"real", "imag"} <= set(a.dtype.names):
            raise DataError(f"{path}: key {key!r} has compound fields {a.dtype.names}, expected ('real', 'imag')")
        out = np.empty(a.shape, dtype=np.complex64)
        out.real = a["real"]
        out.imag = a["imag"]
        return out
    if np.iscomplexobj(a):
        return a.astype(np.complex64)
    raise DataError(f"{path}: key {key!r} is real-valued ({a.dtype}); k-space must be complex")


def _read(ds: h5py.Dataset | np.ndarray, index: tuple, path: Path, key: str) -> np.ndarray:
    try:
        return np.asarray(ds[index])
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: reading key {key!r} {tuple(ds.shape)} at index {index} failed "
                        f"(truncated or corrupted?): {e}") from e


# --------------------------------------------------------------------------- k-space


class CmrxKspaceFile:
    """One CMRxRecon k-space file, read one slice at a time.

    Args:
        path: ``cine_sax.mat``, ``cine_lax.mat``, ``cine_sax_kus_Uniform8.mat``, ...
        key: variable name; by default the first of :data:`KSPACE_KEYS` present.

    Attributes:
        path, key: as given (key resolved).
        slices, coils, frames, height, width: sz, sc, t, kx, ky.
    """

    def __init__(self, path: str | Path, key: str | None = None) -> None:
        self._mat = _MatFile(path)
        self.path = self._mat.path
        try:
            if key is None:
                found = [k for k in KSPACE_KEYS if k in self._mat.keys()]
                if not found:
                    raise DataError(f"{self.path}: no k-space key found; expected one of {KSPACE_KEYS}, "
                                    f"the file holds {self._mat.keys()}")
                key = found[0]
            self.key = key
            self._ds = self._mat.array(key)
            shape = tuple(int(s) for s in self._ds.shape)
            single = key.startswith("kspace_single")
            # reversed-MATLAB order: multi-coil (t, sz, sc, ky, kx); single-coil (t, sz, ky, kx).
            # MATLAB drops trailing singleton dimensions, so t = 1 (and then sz = 1) may be missing.
            full_rank = 4 if single else 5
            if not (full_rank - 2 <= len(shape) <= full_rank):
                raise DataError(f"{self.path}: key {key!r} has shape {shape} (h5py order); expected "
                                f"{'(t, sz, ky, kx)' if single else '(t, sz, sc, ky, kx)'}, i.e. MATLAB "
                                f"{'(kx, ky, sz, t)' if single else '(kx, ky, sc, sz, t)'}")
            self._pad = full_rank - len(shape)
            shape = (1,) * self._pad + shape
            if single:
                self.frames, self.slices, self.width, self.height = shape
                self.coils = 1
            else:
                self.frames, self.slices, self.coils, self.width, self.height = shape
            self._single = single
            check_array_size((self.coils, self.frames, self.height, self.width), 8,
                             f"{self.path}: key {key!r} (one slice of h5py shape {tuple(self._ds.shape)})")
            if self._ds.dtype.names is None and not np.issubdtype(self._ds.dtype, np.complexfloating):
                raise DataError(f"{self.path}: key {key!r} is real-valued ({self._ds.dtype}); "
                                "k-space must be complex (MATLAB stores it as compound real/imag)")
        except Exception:
            self._mat.close()
            raise

    @property
    def accel_key(self) -> str | None:
        """Mask key implied by the variable or file name (``kspace_sub08`` -> ``R08``), None when full."""
        m = _SUB_KEY_RE.match(self.key)
        if m:
            return accel_key(int(m.group(1)))
        m = _PATTERN_RE.search(self.path.stem)
        if self.key == "kus" and m:
            return accel_key(int(m.group(2)), m.group(1))
        return None

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """(slices, C, T, H, W)."""
        return self.slices, self.coils, self.frames, self.height, self.width

    def read_slice(self, z: int) -> torch.Tensor:
        """k-space of slice ``z`` as (C, T, H, W) complex64 = (sc, t, kx, ky)."""
        if not 0 <= z < self.slices:
            raise DataError(f"{self.path}: slice {z} out of range; key {self.key!r} has {self.slices} slices")
        if self._pad == 0:
            index: tuple = (slice(None), z)
        elif self._pad == 1:  # t dropped: (sz, ...)
            index = (z,)
        else:  # t and sz dropped
            index = ()
        a = _to_complex64(_read(self._ds, index, self.path, self.key), self.path, self.key)
        if not np.isfinite(a).all():
            raise DataError(f"{self.path}: key {self.key!r} slice {z} {a.shape} contains NaN or Inf values")
        if not a.any():
            raise DataError(f"{self.path}: key {self.key!r} slice {z} {a.shape} is all zeros")
        a = a.reshape((self.frames,) + ((1,) if self._single else (self.coils,)) + (self.width, self.height))
        # (t, sc, ky, kx) -> (sc, t, kx, ky)
        return torch.from_numpy(np.ascontiguousarray(a.transpose(1, 0, 3, 2)))

    def close(self) -> None:
        self._mat.close()

    def __enter__(self) -> "CmrxKspaceFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- masks


@dataclass(frozen=True)
class CmrxMask:
    """A sampling mask read from a CMRxRecon mask file.

    Attributes:
        key: our mask key (``R04``, ``R08_ktGaussian``, ...).
        mask: float32 (1, 1|T, 1, W) for line masks (constant along the readout) or
            (1, 1|T, H, W) for masks that vary along the readout (e.g. ``ktRadial``).
        source: file it came from.
    """

    key: str
    mask: torch.Tensor
    source: Path

    @property
    def is_lines(self) -> bool:
        """True when the mask is a set of phase-encode lines (H axis of size 1)."""
        return self.mask.shape[-2] == 1


def _mask_to_tensor(a: np.ndarray, path: Path, key: str) -> torch.Tensor:
    """h5py-order (ky, kx) or (t, ky, kx) mask -> (1, 1|T, 1|H, W) float32."""
    if a.dtype.names is not None or np.iscomplexobj(a):
        raise DataError(f"{path}: mask key {key!r} has dtype {a.dtype}; expected a real binary array")
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise DataError(f"{path}: mask key {key!r} has shape {a.shape} (h5py order); expected (ky, kx) or "
                        "(t, ky, kx), i.e. MATLAB (kx, ky) or (kx, ky, t)")
    if not np.isin(a, (0.0, 1.0)).all():
        raise DataError(f"{path}: mask key {key!r} {a.shape} is not binary (values {np.unique(a)[:5]} ...)")
    check_mask_values(torch.from_numpy(a), f"{path}: mask key {key!r} (h5py order (t, ky, kx))")
    m = a.transpose(0, 2, 1)  # (T, kx, ky) = (T, H, W)
    if (m == m[:, :1, :]).all():
        m = m[:, :1, :]
    return torch.from_numpy(np.ascontiguousarray(m))[None]


def read_masks(path: str | Path) -> list[CmrxMask]:
    """All masks in a CMRxRecon mask file.

    2023 files (``cine_sax_mask.mat``) hold ``mask04``, ``mask08``, ``mask10`` -> keys
    R04, R08, R10. 2024 files (``cine_sax_mask_ktGaussian8.mat``) hold ``mask`` and the
    pattern and factor come from the file name.

    Returns:
        One :class:`CmrxMask` per variable, sorted by key.
    """
    path = Path(path)
    out = []
    with _MatFile(path) as mf:
        for name in mf.keys():
            m = _MASK_KEY_RE.match(name)
            if m:
                key = accel_key(int(m.group(1)))
            elif name == "mask":
                p = _PATTERN_RE.search(path.stem)
                if not p:
                    raise DataError(f"{path}: key 'mask' found but the file name does not say the pattern "
                                    "and factor (expected e.g. cine_sax_mask_Uniform8.mat)")
                key = accel_key(int(p.group(2)), p.group(1))
            else:
                continue
            arr = mf.array(name)
            check_array_size(arr.shape, 4, f"{path}: mask key {name!r}")
            out.append(CmrxMask(key, _mask_to_tensor(_read(arr, (), path, name), path, name), path))
        if not out:
            raise DataError(f"{path}: no mask key found; expected mask04/mask08/mask10 or mask, "
                            f"the file holds {mf.keys()}")
    return sorted(out, key=lambda m: m.key)


def check_mask(mask: torch.Tensor, frames: int, height: int, width: int, where: str) -> None:
    """Raise DataError unless ``mask`` (1, 1|T, 1|H, W) fits k-space (C, T, H, W)."""
    ok = (mask.ndim == 4 and mask.shape[0] == 1 and mask.shape[1] in (1, frames)
          and mask.shape[2] in (1, height) and mask.shape[3] == width)
    if not ok:
        dims = sorted(d for d in mask.shape if d != 1)
        hint = ""
        if dims and all(dims.count(d) <= [frames, height, width].count(d) for d in set(dims)):
            hint = ("; its sizes are those of the k-space in another order: a mask written from Python "
                    "(h5py, NumPy) in MATLAB's (kx, ky[, t]) order is read transposed, write it as (t, ky, kx)")
        raise DataError(f"{where}: mask shape {tuple(mask.shape)} (our (1, T, H, W) order; MATLAB (kx, ky[, t]) = "
                        f"(H, W[, T])) does not match k-space (T, H, W) = ({frames}, {height}, {width}){hint}")


# --------------------------------------------------------------------------- discovery


@dataclass
class CmrxSubject:
    """Every file of one subject and view found under a CMRxRecon root.

    Attributes:
        split_dir: ``TrainingSet``, ``ValidationSet``, ``TestSet`` (or ``""`` when not found).
        subject: path of the subject folder below the kind folder (``P001``, or
            ``Center005/Siemens_30T_Vida/P003`` in later years).
        view: ``sax``, ``lax`` or ``lvot``.
        full: fully sampled k-space file, if present.
        undersampled: mask key -> undersampled k-space file.
        mask_files: mask files (each may hold several masks).
        unrecognised: ``cine_<view>*.mat`` files in a ``Mask_*`` / ``UnderSample_*`` folder whose name
            does not follow the challenge's pattern (e.g. the factor missing); not read.
    """

    split_dir: str
    subject: str
    view: str
    full: Path | None = None
    undersampled: dict[str, Path] = field(default_factory=dict)
    mask_files: list[Path] = field(default_factory=list)
    unrecognised: list[Path] = field(default_factory=list)

    @property
    def split(self) -> str:
        """``train``, ``val`` or ``test`` from the folder name (``test`` when unknown)."""
        return SPLIT_NAMES.get(self.split_dir, "test")

    @property
    def name(self) -> str:
        base = f"{self.split_dir}/{self.subject}" if self.split_dir else self.subject
        return f"{base}/cine_{self.view}"


def _is_kind_dir(d: str) -> bool:
    """FullSample, AccFactorNN, Mask_TaskN, UnderSample_TaskN: the folder level above the subjects."""
    return d == "FullSample" or bool(_ACC_DIR_RE.match(d)) or d.startswith(("Mask_Task", "UnderSample"))


_FILE_RE = re.compile(r"^cine_(sax|lax|lvot)(?:_(mask|kus))?(?:_([A-Za-z]+\d+))?\.mat$")
_VIEW_RE = re.compile(r"^cine_(sax|lax|lvot)(?![A-Za-z0-9])")


def expected_name(kind_dir: str, view: str) -> str:
    """The file name pattern the challenge uses in a ``Mask_*`` / ``UnderSample_*`` folder."""
    role = "mask" if kind_dir.startswith("Mask_") else "kus"
    return f"cine_{view}_{role}_<pattern><R>.mat, e.g. cine_{view}_{role}_ktGaussian8.mat"


def discover(root: str | Path, views: tuple[str, ...] = ("sax", "lax")) -> list[CmrxSubject]:
    """Find CMRxRecon cine files below ``root`` and group them by split, subject and view.

    Recognised layouts (multi-coil; ``SingleCoil`` folders are skipped when a
    ``MultiCoil`` folder exists):
    2023 ``<Split>/FullSample/P001/cine_sax.mat``, ``<Split>/AccFactor08/P001/cine_sax.mat``
    (key ``kspace_sub08``) with ``cine_sax_mask.mat``; 2024
    ``<Split>/Mask_Task1/P001/cine_sax_mask_Uniform8.mat`` and
    ``<Split>/UnderSample_Task1/P001/cine_sax_kus_Uniform8.mat``. Files named off these patterns in a
    ``Mask_*`` / ``UnderSample_*`` folder (``cine_sax_mask_ktGaussian.mat``: factor missing) are not read
    but listed in :attr:`CmrxSubject.unrecognised`, for the caller to report.

    Returns:
        Subjects sorted by (split, subject, view).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    files = sorted(root.rglob("cine_*.mat"))
    has_multi = any("MultiCoil" in p.relative_to(root).parts for p in files)
    found: dict[tuple[str, str, str], CmrxSubject] = {}
    for p in files:
        m = _FILE_RE.match(p.name)
        rel = p.relative_to(root).parts
        if has_multi and "SingleCoil" in rel:
            continue
        split_dir = next((d for d in rel[:-1] if d in SPLIT_NAMES), "")
        kind_i = next((i for i, d in enumerate(rel[:-1]) if _is_kind_dir(d)), None)
        subject = "/".join(rel[kind_i + 1:-1]) if kind_i is not None else "/".join(rel[:-1]) or p.parent.name
        kind = rel[kind_i] if kind_i is not None else "FullSample"
        if not m:  # a mask or undersampled file named off the pattern is kept to be reported, not guessed at
            v = _VIEW_RE.match(p.name)
            if v and v.group(1) in views and kind.startswith(("Mask_", "UnderSample")):
                found.setdefault((split_dir, subject, v.group(1)),
                                 CmrxSubject(split_dir, subject, v.group(1))).unrecognised.append(p)
            continue
        if m.group(1) not in views:
            continue
        view, role = m.group(1), m.group(2)
        s = found.setdefault((split_dir, subject, view), CmrxSubject(split_dir, subject, view))
        if role == "mask":
            s.mask_files.append(p)
        elif role == "kus":
            pat = _PATTERN_RE.search(p.stem)
            s.undersampled[accel_key(int(pat.group(2)), pat.group(1)) if pat else p.stem] = p
        elif kind == "FullSample":
            s.full = p
        else:
            acc = _ACC_DIR_RE.match(kind)
            s.undersampled[accel_key(int(acc.group(1))) if acc else kind] = p
    return [found[k] for k in sorted(found)]
