"""Writing reconstructions: our HDF5 record, NIfTI, animated GIF and (with ffmpeg) MP4.

Images are cine slices (T, H, W) (complex or real); NIfTI and the movies hold the
magnitude. Every writer refuses to replace an existing file unless ``overwrite=True``
(:class:`~cinerecon.errors.OutputExistsError`), and writes to a temporary file first
so that an interrupted run never leaves a half-written output under the final name.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import torch

from ..errors import ConfigError, DataError, OutputExistsError

FORMATS = ("h5", "nifti", "gif", "mp4")
SUFFIX = {"h5": ".h5", "nifti": ".nii.gz", "gif": ".gif", "mp4": ".mp4"}
DEFAULT_FPS = 12.0


def check_writable(paths: list[Path], overwrite: bool) -> None:
    """Raise OutputExistsError naming every existing path unless ``overwrite``."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{', '.join(existing)} already exists; refusing to overwrite existing output "
                                "(pass overwrite=True / --overwrite to replace it)")


@contextmanager
def atomic_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary file beside ``path`` that replaces ``path`` only when the block completes.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False (checked before anything is created).
    """
    check_writable([path], overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        seconds: reconstruction wall time.
        view: ``sax`` / ``lax`` / ``unknown``.
        pixel_spacing: (along H, along W) in mm, when known.
        frame_times_ms: trigger times, when known.
    """

    recon: torch.Tensor
    name: str = "sample"
    method: str = ""
    source: str = ""
    mask_key: str = ""
    accel: float = 1.0
    acs: int = 0
    checkpoint: str = ""
    seconds: float = 0.0
    view: str = "unknown"
    pixel_spacing: tuple[float, float] | None = None
    frame_times_ms: tuple[float, ...] | None = None


def write_recon_h5(path: str | Path, rec: ReconRecord, overwrite: bool = False) -> Path:
    """Write ``rec`` as HDF5: dataset ``recon`` (T, H, W) complex64 plus one attribute per field."""
    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("recon", data=rec.recon.detach().cpu().to(torch.complex64).numpy())
            for fl in fields(rec):
                v = getattr(rec, fl.name)
                if fl.name == "recon" or v is None:
                    continue
                f.attrs[fl.name] = np.asarray(v, dtype=np.float64) if isinstance(v, tuple) else v
    return path


def read_recon_h5(path: str | Path) -> ReconRecord:
    """Read a file written by :func:`write_recon_h5`."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "recon" not in f:
                raise DataError(f"{path}: key 'recon' not found; the file holds {list(f.keys())}")
            kw = {}
            for fl in fields(ReconRecord):
                if fl.name in f.attrs:
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


def write_nifti(path: str | Path, image: torch.Tensor | np.ndarray, pixel_spacing: tuple[float, float] | None = None,
                frame_interval_ms: float | None = None, overwrite: bool = False) -> Path:
    """Write the magnitude of a cine slice as NIfTI-1 of shape (H, W, 1, T), float32.

    Voxel axis i runs along our H, j along W. With ``pixel_spacing`` (mm along H, W)
    the affine is diag(dH, dW, 1) and the header zooms say so; without it 1 mm is written.
    ``frame_interval_ms`` becomes the fourth zoom (units ms).
    """
    import nibabel as nib

    path = Path(path)
    mag = magnitude(image)
    data = np.ascontiguousarray(mag.transpose(1, 2, 0)[:, :, None, :])  # (H, W, 1, T)
    dh, dw = (float(pixel_spacing[0]), float(pixel_spacing[1])) if pixel_spacing else (1.0, 1.0)
    affine = np.diag([dh, dw, 1.0, 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "msec")
    img.header.set_zooms((dh, dw, 1.0, float(frame_interval_ms) if frame_interval_ms else 1.0))
    with atomic_output(path, overwrite) as tmp:
        nib.save(img, str(tmp))
    return path


# --------------------------------------------------------------------------- movies


def write_gif(path: str | Path, image: torch.Tensor | np.ndarray, fps: float = DEFAULT_FPS,
              overwrite: bool = False) -> Path:
    """Write the magnitude cine (T, H, W) as a looping animated GIF (one grey window for all frames)."""
    import imageio.v3 as iio

    path = Path(path)
    frames = to_uint8(magnitude(image))
    with atomic_output(path, overwrite) as tmp:
        iio.imwrite(tmp, frames, extension=".gif", duration=1000.0 / fps, loop=0)
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
              overwrite: bool = False) -> Path:
    """Write the magnitude cine as MP4 (needs an ffmpeg backend; raises ConfigError naming it otherwise)."""
    require_mp4()
    import imageio.v3 as iio

    path = Path(path)
    frames = to_uint8(magnitude(image))
    # even sizes for yuv420p encoders
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    with atomic_output(path, overwrite) as tmp:
        plugin = "FFMPEG" if importlib.util.find_spec("imageio_ffmpeg") else "pyav"
        if plugin == "pyav":
            iio.imwrite(tmp, frames, extension=".mp4", plugin=plugin, codec="libx264", fps=fps)
        else:
            iio.imwrite(tmp, frames, extension=".mp4", plugin=plugin, fps=fps)
    return path


def output_paths(stem: Path, formats: tuple[str, ...] | list[str]) -> dict[str, Path]:
    """``{format: stem + suffix}`` for the requested formats (validated)."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"unknown output format(s) {bad}; choose from {FORMATS}")
    return {f: stem.with_name(stem.name + SUFFIX[f]) for f in formats}


def write_outputs(stem: Path, rec: ReconRecord, formats: tuple[str, ...] | list[str], fps: float = DEFAULT_FPS,
                  overwrite: bool = False) -> dict[str, Path]:
    """Write ``rec`` in each format beside ``stem``; checks every target before writing any."""
    paths = output_paths(stem, formats)
    check_writable(list(paths.values()), overwrite)
    if "mp4" in paths:
        require_mp4()
    interval = None
    if rec.frame_times_ms and len(rec.frame_times_ms) > 1:
        interval = float(np.median(np.diff(rec.frame_times_ms)))
    for fmt, p in paths.items():
        if fmt == "h5":
            write_recon_h5(p, rec, overwrite)
        elif fmt == "nifti":
            write_nifti(p, rec.recon, rec.pixel_spacing, interval, overwrite)
        elif fmt == "gif":
            write_gif(p, rec.recon, fps, overwrite)
        else:
            write_mp4(p, rec.recon, fps, overwrite)
    return paths
