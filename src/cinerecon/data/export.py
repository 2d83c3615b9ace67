"""Writing reconstructions: our HDF5 record, NIfTI, animated GIF and (with ffmpeg) MP4.

Images are cine slices (T, H, W) (complex or real); NIfTI and the movies hold the
magnitude. Every writer refuses to replace an existing file unless ``overwrite=True``
(:class:`~cinerecon.errors.OutputExistsError`), and writes through
:func:`cinerecon.files.atomic_output` (temporary file, then rename; the umask is honoured).

NIfTI files carry the scanner geometry when the input has it (ISMRMRD: position, read /
phase / slice directions, slice thickness, TR as the frame time), so slices of one
series overlay at their true positions in world (RAS) coordinates. CMRxRecon ``.mat``
files and simulated data have no geometry: their NIfTI gets a diagonal affine from the
pixel spacing (1 mm when unknown) and says so in the header's ``descrip`` field.
GIF and MP4 keep the matrix's aspect ratio and are enlarged by an integer factor
(nearest neighbour) to at least :data:`MIN_MOVIE_SIDE` pixels on the short side unless a
``scale`` is given.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..files import atomic_output, check_writable  # noqa: F401 - re-exported for the writers importing them here
from .sample import SliceGeometry

FORMATS = ("h5", "nifti", "gif", "mp4")
SUFFIX = {"h5": ".h5", "nifti": ".nii.gz", "gif": ".gif", "mp4": ".mp4"}
DEFAULT_FPS = 12.0
MIN_MOVIE_SIDE = 256
GEOMETRY_ATTRS = ("position", "read_dir", "phase_dir", "slice_dir")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def check_fps(fps: float, flag: str = "--fps") -> float:
    """``fps`` if it is a finite positive number, else ConfigError naming ``flag``."""
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ConfigError(f"{flag} must be a positive number of frames per second, got {fps}")
    return float(fps)


def check_scale(scale: int | None, flag: str = "--scale") -> int | None:
    """``scale`` if None (automatic) or an integer in [1, 64], else ConfigError naming ``flag``."""
    if scale is not None and not (isinstance(scale, int) and 1 <= scale <= 64):
        raise ConfigError(f"{flag} must be an integer from 1 to 64 (or omitted for automatic), got {scale}")
    return scale


def magnitude(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """|image| as float32 NumPy (T, H, W)."""
    a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if a.ndim != 3:
        raise DataError(f"expected a cine image (T, H, W), got shape {a.shape}")
    return np.abs(a).astype(np.float32)


def to_uint8(frames: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Scale magnitude frames (T, H, W) to uint8 with one window for the series (upper = percentile)."""
    hi = float(np.percentile(frames, percentile)) if frames.size else 0.0
    if not np.isfinite(hi) or hi <= 0:
        hi = float(frames.max()) if frames.size and frames.max() > 0 else 1.0
    return (np.clip(frames / hi, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- our HDF5 record


@dataclass(frozen=True)
class ReconRecord:
    """A reconstruction and where it came from.

    Attributes:
        recon: (T, H, W) complex64 reconstructed image.
        name: slice identifier (``P001/cine_sax/slice03``).
        method: ``zero_filled``, ``cg_sense``, ``crunet``, ...
        source: input file.
        mask_key: mask used (``R08``) or ``""`` for k-space as stored.
        accel: nominal acceleration of that mask.
        acs: ACS lines of that mask.
        checkpoint: checkpoint path for learned methods, else ``""``.
        weight_set: which weight set of a two-set model reconstructed it (``"main"`` for masks
            with a calibration block and single-frame series, ``"k-t"`` for the others), else ``""``.
        seconds: reconstruction wall time.
        view: ``sax`` / ``lax`` / ``unknown``.
        pixel_spacing: (along H, along W) in mm, when known.
        frame_times_ms: trigger times, when known.
        geometry: scanner position and orientation, when known (ISMRMRD input).
    """

    recon: torch.Tensor
    name: str = "sample"
    method: str = ""
    source: str = ""
    mask_key: str = ""
    accel: float = 1.0
    acs: int = 0
    checkpoint: str = ""
    weight_set: str = ""
    seconds: float = 0.0
    view: str = "unknown"
    pixel_spacing: tuple[float, float] | None = None
    frame_times_ms: tuple[float, ...] | None = None
    geometry: SliceGeometry | None = None


def geometry_attrs(geometry: SliceGeometry | None) -> dict[str, np.ndarray | float]:
    """HDF5 attributes of a geometry: ``position``, ``read_dir``, ``phase_dir``, ``slice_dir`` (LPS, mm)
    and ``slice_thickness`` (mm, when known); empty for None."""
    if geometry is None:
        return {}
    out: dict[str, np.ndarray | float] = {k: np.asarray(getattr(geometry, k), dtype=np.float64)
                                          for k in GEOMETRY_ATTRS}
    if geometry.thickness is not None:
        out["slice_thickness"] = float(geometry.thickness)
    return out


def shown(value: object, limit: int = 80) -> str:
    """An attribute value for a one-line message: arrays as lists, text quoted, at most ``limit`` characters."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    s = repr(value)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def attr_floats(value: object, where: str, want: str, size: int | None = None,
                ok: Callable[[np.ndarray], bool] | None = None) -> np.ndarray:
    """The numbers of an attribute value (scalar or array) as float64 (N,); DataError otherwise.

    Args:
        value: the value as h5py returns it.
        where: the file and attribute, for the message (``"<file>: attribute 'accel'"``).
        want: what the value must be, for the message (``"a finite number >= 1"``).
        size: the number of values required (any when None).
        ok: a further check of the float64 (N,) array.

    Raises:
        DataError: text, booleans or other non-numbers, the wrong count, NaN / Inf, or ``ok`` false,
            naming ``where``, ``want`` and the value.
    """
    try:
        arr = np.asarray(value)
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"dtype {arr.dtype}")
        v = np.ravel(arr.astype(np.float64))
    except (ValueError, TypeError, OverflowError):
        v = None
    bad = v is None or (size is not None and v.size != size) or not np.isfinite(v).all()
    if bad or (ok is not None and not ok(v)):
        raise DataError(f"{where} must be {want}, got {shown(value)}")
    return v


def geometry_from_attrs(attrs: h5py.AttributeManager, path: Path) -> SliceGeometry | None:
    """The :class:`SliceGeometry` stored by :func:`geometry_attrs`; None when the file has none.

    Raises:
        DataError: a missing, non-numeric or non-finite vector, directions that are not orthonormal
            (within 1 %), or a slice thickness that is not a positive number, naming the attribute.
    """
    if not any(k in attrs for k in GEOMETRY_ATTRS):
        return None
    vecs = {}
    for k in GEOMETRY_ATTRS:
        vecs[k] = attr_floats(attrs.get(k, []), f"{path}: attribute {k!r}",
                              f"3 finite numbers (all of {GEOMETRY_ATTRS} go together)", size=3)
    dirs = GEOMETRY_ATTRS[1:]
    for i, k in enumerate(dirs):
        if abs(np.linalg.norm(vecs[k]) - 1.0) > 0.01:
            raise DataError(f"{path}: attribute {k!r} must be a unit vector, got {shown(vecs[k])}")
        for j in dirs[:i]:
            if abs(float(vecs[k] @ vecs[j])) > 0.01:
                raise DataError(f"{path}: attributes {j!r} {shown(vecs[j])} and {k!r} {shown(vecs[k])} must be at "
                                "right angles (read, phase and slice directions of one slice)")
    thick = attrs.get("slice_thickness")
    thickness = None if thick is None else float(
        attr_floats(thick, f"{path}: attribute 'slice_thickness'", "a positive number of mm", size=1,
                    ok=lambda v: v[0] > 0)[0])
    return SliceGeometry(*(tuple(float(x) for x in vecs[k]) for k in GEOMETRY_ATTRS), thickness)


def write_recon_h5(path: str | Path, rec: ReconRecord, overwrite: bool = False) -> Path:
    """Write ``rec`` as HDF5: dataset ``recon`` (T, H, W) complex64 plus one attribute per field."""
    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("recon", data=rec.recon.detach().cpu().to(torch.complex64).numpy())
            for fl in fields(rec):
                v = getattr(rec, fl.name)
                if fl.name in ("recon", "geometry") or v is None:
                    continue
                f.attrs[fl.name] = np.asarray(v, dtype=np.float64) if isinstance(v, tuple) else v
            f.attrs.update(geometry_attrs(rec.geometry))
    return path


def read_recon_h5(path: str | Path) -> ReconRecord:
    """Read a file written by :func:`write_recon_h5`."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "recon" not in f:
                raise DataError(f"{path}: key 'recon' not found; the file holds {list(f.keys())}")
            kw = {"geometry": geometry_from_attrs(f.attrs, path)}
            for fl in fields(ReconRecord):
                if fl.name != "geometry" and fl.name in f.attrs:
                    v = f.attrs[fl.name]
                    if isinstance(v, np.ndarray):
                        v = tuple(float(x) for x in v)
                    elif isinstance(v, bytes):
                        v = v.decode()
                    elif isinstance(v, np.generic):
                        v = v.item()
                    kw[fl.name] = v
            return ReconRecord(recon=torch.from_numpy(f["recon"][()]), **kw)
    except OSError as e:
        raise DataError(f"{path}: cannot read reconstruction file: {e}") from e


def record_dict(rec: ReconRecord) -> dict:
    """Fields of ``rec`` except the image (for logs and JSON summaries)."""
    d = asdict(rec)
    d.pop("recon")
    return d


# --------------------------------------------------------------------------- NIfTI


def nifti_affine(shape_hw: tuple[int, int], pixel_spacing: tuple[float, float] | None = None,
                 geometry: SliceGeometry | None = None) -> np.ndarray:
    """4 x 4 voxel-to-world affine of a (H, W, 1) slice volume.

    Without ``geometry``: diag(dH, dW, 1) (1 mm when the spacing is unknown). With it: world
    RAS coordinates of the scanner (ISMRMRD's LPS with x and y negated); voxel (i, j, 0) is
    ``position + (i - H // 2) dH read_dir + (j - W // 2) dW phase_dir`` and the third axis
    runs along ``slice_dir`` by the slice thickness (the in-plane spacing when unknown).
    """
    dh, dw = (float(pixel_spacing[0]), float(pixel_spacing[1])) if pixel_spacing else (1.0, 1.0)
    if geometry is None:
        return np.diag([dh, dw, 1.0, 1.0])
    thick = geometry.thickness if geometry.thickness else min(dh, dw)
    r, p, n = (np.asarray(v, dtype=np.float64) for v in (geometry.read_dir, geometry.phase_dir, geometry.slice_dir))
    h, w = shape_hw
    corner = np.asarray(geometry.position, dtype=np.float64) - (h // 2) * dh * r - (w // 2) * dw * p
    a = np.eye(4)
    a[:3, 0], a[:3, 1], a[:3, 2], a[:3, 3] = (_LPS_TO_RAS @ v for v in (dh * r, dw * p, thick * n, corner))
    return a


def write_nifti(path: str | Path, image: torch.Tensor | np.ndarray, pixel_spacing: tuple[float, float] | None = None,
                frame_interval_ms: float | None = None, overwrite: bool = False,
                geometry: SliceGeometry | None = None) -> Path:
    """Write the magnitude of a cine slice as NIfTI-1 of shape (H, W, 1, T), float32.

    Voxel axis i runs along our H, j along W. The affine is :func:`nifti_affine`: the
    scanner position and orientation (sform / qform code "scanner") with ``geometry``,
    else diag(dH, dW, 1) (code "aligned"; 1 mm when ``pixel_spacing`` is unknown), and the
    header's ``descrip`` says which. ``frame_interval_ms`` becomes the fourth zoom (ms);
    without it the time unit is "unknown" and the zoom 1 (one frame).
    """
    import nibabel as nib

    path = Path(path)
    mag = magnitude(image)
    data = np.ascontiguousarray(mag.transpose(1, 2, 0)[:, :, None, :])  # (H, W, 1, T)
    affine = nifti_affine(mag.shape[1:], pixel_spacing, geometry)
    img = nib.Nifti1Image(data, affine)
    code = "scanner" if geometry is not None else "aligned"
    img.set_sform(affine, code=code)
    img.set_qform(affine, code=code)
    timed = bool(frame_interval_ms) and math.isfinite(frame_interval_ms) and frame_interval_ms > 0
    img.header.set_xyzt_units("mm", "msec" if timed else "unknown")
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    img.header.set_zooms((*(float(z) for z in zooms), float(frame_interval_ms) if timed else 1.0))
    img.header["descrip"] = (b"cinerecon: scanner geometry from the source" if geometry is not None else
                             b"cinerecon: no scanner geometry in the source (diagonal affine)")
    with atomic_output(path, overwrite) as tmp:
        tmp.write_bytes(gzip.compress(img.to_bytes(), mtime=0) if path.name.endswith(".gz") else img.to_bytes())
    return path


# --------------------------------------------------------------------------- movies


def movie_scale(shape_hw: tuple[int, int], scale: int | None = None) -> int:
    """Integer enlargement of movie frames: ``scale``, or the smallest giving >= MIN_MOVIE_SIDE px on the short side."""
    if scale is not None:
        return int(check_scale(scale))
    return max(1, math.ceil(MIN_MOVIE_SIDE / max(min(shape_hw), 1)))


def movie_frames(image: torch.Tensor | np.ndarray, scale: int | None = None, even: bool = False) -> np.ndarray:
    """uint8 frames (T, H*s, W*s) of the magnitude, enlarged by nearest neighbour (aspect ratio kept).

    Args:
        image: (T, H, W) cine.
        scale: enlargement factor (None: :func:`movie_scale`).
        even: pad one black row / column where a size is odd (video encoders need even sizes).
    """
    frames = to_uint8(magnitude(image))
    s = movie_scale(frames.shape[1:], scale)
    frames = frames.repeat(s, axis=1).repeat(s, axis=2)
    if even:
        frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2)))
    return np.ascontiguousarray(frames)


def write_gif(path: str | Path, image: torch.Tensor | np.ndarray, fps: float = DEFAULT_FPS,
              overwrite: bool = False, scale: int | None = None) -> Path:
    """Write the magnitude cine (T, H, W) as a looping animated GIF (one grey window for all frames).

    Frames are enlarged by ``scale`` (default: to at least :data:`MIN_MOVIE_SIDE` px on the short side).
    """
    import imageio.v3 as iio

    fps = check_fps(fps, "fps")
    path = Path(path)
    frames = movie_frames(image, scale)
    with atomic_output(path, overwrite) as tmp:
        iio.imwrite(tmp, frames, extension=".gif", duration=1000.0 / fps, loop=0, is_batch=True,
                    optimize=False)  # one grey palette for every frame: exact grey levels, readable back
    return path


def mp4_available() -> bool:
    """True when imageio can write MP4 (the imageio-ffmpeg or PyAV package is installed)."""
    return any(importlib.util.find_spec(m) is not None for m in ("imageio_ffmpeg", "av"))


def require_mp4() -> None:
    """Raise ConfigError, naming the package to install, when MP4 cannot be written."""
    if not mp4_available():
        raise ConfigError("MP4 export needs an ffmpeg backend for imageio: install 'imageio-ffmpeg' (or 'av') "
                          "into this environment, or use --formats gif")


def write_mp4(path: str | Path, image: torch.Tensor | np.ndarray, fps: float = DEFAULT_FPS,
              overwrite: bool = False, scale: int | None = None) -> Path:
    """Write the magnitude cine as H.264 MP4 (needs an ffmpeg backend; raises ConfigError naming it otherwise).

    The aspect ratio is kept: frames are enlarged by an integer ``scale`` (default: to at
    least :data:`MIN_MOVIE_SIDE` px on the short side) and an odd size gets one black row
    or column, never a resize.
    """
    require_mp4()
    import imageio.v3 as iio

    fps = check_fps(fps, "fps")
    path = Path(path)
    frames = np.repeat(movie_frames(image, scale, even=True)[..., None], 3, axis=-1)  # RGB: (T, H, W) is ambiguous
    with atomic_output(path, overwrite) as tmp:
        if importlib.util.find_spec("imageio_ffmpeg"):
            iio.imwrite(tmp, frames, extension=".mp4", plugin="FFMPEG", fps=fps, macro_block_size=1,
                        output_params=["-f", "mp4"])
        else:
            iio.imwrite(tmp, frames, extension=".mp4", plugin="pyav", codec="libx264", fps=fps, format="mp4")
    return path


def output_paths(stem: Path, formats: tuple[str, ...] | list[str]) -> dict[str, Path]:
    """``{format: stem + suffix}`` for the requested formats (validated)."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"unknown output format(s) {bad}; choose from {FORMATS}")
    return {f: stem.with_name(stem.name + SUFFIX[f]) for f in formats}


def check_record(rec: ReconRecord, nifti: bool = False) -> None:
    """Raise DataError, before anything is written, when ``rec``'s metadata cannot be written as is.

    Checks the pixel spacing (2 positive numbers), the frame times (one finite number per frame)
    and, with ``nifti``, that spacing and geometry give an invertible affine.
    """
    where = rec.source or rec.name
    if rec.pixel_spacing is not None:
        attr_floats(np.asarray(rec.pixel_spacing), f"{where}: pixel spacing", "2 positive numbers of mm", size=2,
                    ok=lambda v: bool((v > 0).all()))
    if rec.frame_times_ms is not None:
        t = int(rec.recon.shape[0]) if rec.recon.ndim == 3 else None
        attr_floats(np.asarray(rec.frame_times_ms), f"{where}: frame times",
                    f"one finite number of ms per frame ({t} frames)", size=t)
    if nifti and rec.recon.ndim == 3:
        a = nifti_affine(tuple(rec.recon.shape[1:]), rec.pixel_spacing, rec.geometry)
        if not (np.isfinite(a).all() and abs(np.linalg.det(a[:3, :3])) > 0):
            raise DataError(f"{where}: pixel spacing {shown(rec.pixel_spacing)} and scanner geometry give a "
                            f"singular NIfTI affine {shown(a[:3, :3])}")


def write_outputs(stem: Path, rec: ReconRecord, formats: tuple[str, ...] | list[str], fps: float = DEFAULT_FPS,
                  overwrite: bool = False, scale: int | None = None) -> dict[str, Path]:
    """Write ``rec`` in each format beside ``stem``; checks every target before writing any.

    ``scale`` enlarges GIF / MP4 frames (default: automatic, see :func:`movie_scale`).
    """
    fps = check_fps(fps, "fps")
    check_scale(scale, "scale")
    paths = output_paths(stem, formats)
    check_writable(list(paths.values()), overwrite)
    check_record(rec, nifti="nifti" in paths)
    if "mp4" in paths:
        require_mp4()
    interval = None
    if rec.frame_times_ms and len(rec.frame_times_ms) > 1:
        interval = float(np.median(np.diff(rec.frame_times_ms)))
    for fmt, p in paths.items():
        if fmt == "h5":
            write_recon_h5(p, rec, overwrite)
        elif fmt == "nifti":
            write_nifti(p, rec.recon, rec.pixel_spacing, interval, overwrite, rec.geometry)
        elif fmt == "gif":
            write_gif(p, rec.recon, fps, overwrite, scale)
        else:
            write_mp4(p, rec.recon, fps, overwrite, scale)
    return paths
