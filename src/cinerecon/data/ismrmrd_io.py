"""Cartesian cine k-space from ISMRMRD (MRD) HDF5 raw data.

Each acquisition is one readout line of all active coils. Lines are placed by
``idx.kspace_encode_step_1`` (phase encoding -> our W axis, shifted so that the
header's ``encodingLimits.kspace_encoding_step_1.center`` lands at ``W // 2``; W is the
encoded matrix size, enlarged with zero lines when an asymmetric (partial Fourier)
acquisition would not fit around that centre),
``idx.phase`` (cardiac phase -> T) and ``idx.slice`` (one output per slice); the
readout goes to our H axis with the acquisition's ``center_sample`` at ``H // 2``.
Noise, navigator, phase-correction, dummy and feedback scans are skipped; repeated
lines (``idx.average``) are averaged; reversed readouts (``ACQ_IS_REVERSE``) are flipped.
The sampling mask is derived from which lines were acquired in each frame.

Scanner geometry comes with each slice when the headers have it: the acquisitions'
``position``, ``read_dir`` (our H axis), ``phase_dir`` (our W axis) and ``slice_dir``
(patient coordinates, LPS, mm), the slice thickness from the encoded field of view's
``z`` and the frame times from ``sequenceParameters.TR`` (frame t at t x TR; ISMRMRD does
not record the lines per segment of a segmented cine, so TR is taken as the frame time).

The XML header is parsed with :mod:`ismrmrd.xsd`; acquisitions are read in blocks
directly from the documented HDF5 layout (``/<group>/data`` records with ``head``,
``traj`` and ``data``), which is much faster than ``Dataset.read_acquisition`` per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import torch

from ..errors import DataError
from ..fft import fft1c, ifft1c
from .sample import SliceGeometry, check_array_size

_BLOCK = 4096


def _flag(bit: int) -> int:
    return 1 << (bit - 1)


def _skip_flags() -> int:
    import ismrmrd

    bits = (ismrmrd.ACQ_IS_NOISE_MEASUREMENT, ismrmrd.ACQ_IS_NAVIGATION_DATA, ismrmrd.ACQ_IS_PHASECORR_DATA,
            ismrmrd.ACQ_IS_DUMMYSCAN_DATA, ismrmrd.ACQ_IS_HPFEEDBACK_DATA, ismrmrd.ACQ_IS_RTFEEDBACK_DATA,
            ismrmrd.ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA, ismrmrd.ACQ_IS_PHASE_STABILIZATION,
            ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE)
    out = 0
    for b in bits:
        out |= _flag(b)
    return out


@dataclass(frozen=True)
class IsmrmrdConfig:
    """How to assemble k-space.

    Attributes:
        group: HDF5 group of the dataset (``dataset`` by convention).
        encoding: index of the ``<encoding>`` element to use.
        remove_oversampling: crop the readout to the recon-space matrix in image space
            when the encoded readout is larger (typically 2x oversampling).
        include_calibration: keep ``ACQ_IS_PARALLEL_CALIBRATION`` lines (reference-only ACS).
        repetition, contrast, set: which of these counters to keep (others are dropped).
    """

    group: str = "dataset"
    encoding: int = 0
    remove_oversampling: bool = True
    include_calibration: bool = True
    repetition: int = 0
    contrast: int = 0
    set: int = 0


@dataclass(frozen=True)
class IsmrmrdSlice:
    """One assembled slice.

    Attributes:
        kspace: (C, T, H, W) complex64, zero where not acquired.
        mask: (1, 1|T, 1, W) float32 of acquired lines (time-varying when frames differ).
        slice_index: ``idx.slice`` of the lines.
        pixel_spacing: (spacing along H (readout), spacing along W (phase encoding)) in mm.
        source: the file.
        geometry: position and orientation of the slice, when the acquisition headers have them.
        frame_times_ms: t x TR for each frame, when the header gives TR.
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    slice_index: int
    pixel_spacing: tuple[float, float] | None
    source: Path
    geometry: SliceGeometry | None = None
    frame_times_ms: tuple[float, ...] | None = None

    @property
    def fully_sampled(self) -> bool:
        return bool(self.mask.min() > 0)


@dataclass(frozen=True)
class _Geometry:
    readout: int          # encoded readout samples (H before oversampling removal)
    readout_recon: int    # recon-space readout samples
    lines: int            # W
    centre_line: int      # encoded index of the k-space centre line
    frames: int | None    # from encodingLimits.phase, if present
    spacing: tuple[float, float] | None
    fov_phase: float      # encoded field of view along the phase encoding (mm), 0 when unknown
    thickness: float | None  # encoded field of view along z (mm) of a 2D acquisition
    tr_ms: float | None   # first sequenceParameters.TR


def _geometry(path: Path, xml: bytes | str, encoding: int) -> _Geometry:
    import ismrmrd.xsd

    try:
        hdr = ismrmrd.xsd.CreateFromDocument(xml)
    except Exception as e:
        raise DataError(f"{path}: the ISMRMRD XML header cannot be parsed: {e}") from e
    if len(hdr.encoding) <= encoding:
        raise DataError(f"{path}: header has {len(hdr.encoding)} <encoding> elements; asked for index {encoding}")
    enc = hdr.encoding[encoding]
    if enc.trajectory is not None and getattr(enc.trajectory, "value", str(enc.trajectory)) != "cartesian":
        raise DataError(f"{path}: trajectory {enc.trajectory} is not Cartesian")
    es, rs, lim = enc.encodedSpace, enc.reconSpace, enc.encodingLimits
    e1 = lim.kspace_encoding_step_1
    lines = int(es.matrixSize.y)
    if e1 is not None:
        lines = max(lines, int(e1.maximum) + 1)
    centre = int(e1.center) if e1 is not None and e1.center > 0 else lines // 2
    frames = int(lim.phase.maximum) + 1 if lim.phase is not None else None
    spacing = None
    fov, mat = rs.fieldOfView_mm, rs.matrixSize
    if fov.x > 0 and fov.y > 0 and mat.x > 0 and mat.y > 0 and (es.fieldOfView_mm.y or 0) > 0:
        spacing = (float(fov.x) / int(mat.x), float(es.fieldOfView_mm.y) / max(int(es.matrixSize.y), 1))
    thickness = float(es.fieldOfView_mm.z) if es.fieldOfView_mm.z and es.fieldOfView_mm.z > 0 else None
    seq = getattr(hdr, "sequenceParameters", None)
    trs = [float(v) for v in (getattr(seq, "TR", None) or []) if v and float(v) > 0] if seq is not None else []
    return _Geometry(int(es.matrixSize.x), int(rs.matrixSize.x), lines, centre, frames, spacing,
                     float(es.fieldOfView_mm.y or 0.0), thickness, trs[0] if trs else None)


@dataclass(frozen=True)
class _Scan:
    """What the headers say: the selected acquisitions and the k-space grid."""

    head: np.ndarray      # all acquisition headers (structured)
    sel: np.ndarray       # indices of the acquisitions to use
    slices: np.ndarray    # sorted idx.slice values present
    coils: int
    samples: int
    frames: int
    height: int
    width: int
    offset: int           # column = kspace_encode_step_1 + offset


def _open(path: Path, cfg: IsmrmrdConfig) -> h5py.File:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot open as HDF5 (truncated or corrupted?): {e}") from e
    if cfg.group not in f or "xml" not in f[cfg.group] or "data" not in f[cfg.group]:
        have = list(f[cfg.group].keys()) if cfg.group in f else list(f.keys())
        f.close()
        raise DataError(f"{path}: expected ISMRMRD datasets '/{cfg.group}/xml' and '/{cfg.group}/data'; "
                        f"found {have}")
    return f


def iter_ismrmrd(path: str | Path, cfg: IsmrmrdConfig | None = None) -> Iterator[IsmrmrdSlice]:
    """Assemble Cartesian cine k-space one slice at a time from an ISMRMRD file.

    Only one slice's k-space is held in memory (the headers of all acquisitions are read
    once; the data blocks holding a slice's lines are read for each slice).

    Args:
        path: ISMRMRD/MRD HDF5 file.
        cfg: assembly options (defaults: :class:`IsmrmrdConfig`).

    Yields:
        One :class:`IsmrmrdSlice` per ``idx.slice`` value present, in increasing order.

    Raises:
        DataError: unreadable file, missing header or data, non-Cartesian trajectory,
            inconsistent coil counts or readout lengths, frames without any line.
    """
    cfg = cfg or IsmrmrdConfig()
    path = Path(path)
    with _open(path, cfg) as f:
        try:
            geo = _geometry(path, f[cfg.group]["xml"][0], cfg.encoding)
            data = f[cfg.group]["data"]
            scan = _scan(path, data, geo, cfg)
            for z in scan.slices:
                yield _assemble_slice(path, data, geo, scan, int(z), cfg)
        except (OSError, KeyError) as e:
            raise DataError(f"{path}: reading '/{cfg.group}/data' failed (truncated or corrupted?): {e}") from e


def read_ismrmrd(path: str | Path, cfg: IsmrmrdConfig | None = None) -> list[IsmrmrdSlice]:
    """All slices of an ISMRMRD file (see :func:`iter_ismrmrd`), sorted by ``idx.slice``."""
    return list(iter_ismrmrd(path, cfg))


def ismrmrd_slices(path: str | Path, cfg: IsmrmrdConfig | None = None) -> list[int]:
    """The ``idx.slice`` values an ISMRMRD file holds (headers only)."""
    cfg = cfg or IsmrmrdConfig()
    path = Path(path)
    with _open(path, cfg) as f:
        try:
            geo = _geometry(path, f[cfg.group]["xml"][0], cfg.encoding)
            return [int(z) for z in _scan(path, f[cfg.group]["data"], geo, cfg).slices]
        except (OSError, KeyError) as e:
            raise DataError(f"{path}: reading '/{cfg.group}/data' failed (truncated or corrupted?): {e}") from e


def _scan(path: Path, data: h5py.Dataset, geo: _Geometry, cfg: IsmrmrdConfig) -> _Scan:
    import ismrmrd

    skip = _skip_flags()
    if not cfg.include_calibration:
        skip |= _flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
    n = data.shape[0]
    heads = [data.fields("head")[a:min(a + _BLOCK, n)] for a in range(0, n, _BLOCK)]
    head = np.concatenate(heads) if heads else np.empty(0)
    if head.size == 0:
        raise DataError(f"{path}: '/{cfg.group}/data' holds no acquisitions")
    idx = head["idx"]
    keep = ((head["flags"] & np.uint64(skip)) == 0)
    keep &= (idx["repetition"] == cfg.repetition) & (idx["contrast"] == cfg.contrast) & (idx["set"] == cfg.set)
    if not keep.any():
        raise DataError(f"{path}: no imaging acquisitions left after skipping noise/navigator scans and "
                        f"selecting repetition={cfg.repetition}, contrast={cfg.contrast}, set={cfg.set}")
    sel = np.flatnonzero(keep)
    ch = head["active_channels"][sel]
    if (ch != ch[0]).any():
        bad = sel[np.flatnonzero(ch != ch[0])[0]]
        raise DataError(f"{path}: inconsistent coil counts: acquisition {sel[0]} has {ch[0]} active channels, "
                        f"acquisition {bad} has {head['active_channels'][bad]}")
    ns = head["number_of_samples"][sel]
    if (ns != ns[0]).any():
        bad = sel[np.flatnonzero(ns != ns[0])[0]]
        raise DataError(f"{path}: inconsistent readout lengths: acquisition {sel[0]} has {ns[0]} samples, "
                        f"acquisition {bad} has {head['number_of_samples'][bad]}")
    samples = int(ns[0])
    e1 = idx["kspace_encode_step_1"][sel].astype(np.int64)
    # the header's centre line goes to W // 2; grow W (zero-filled) when the lines would not fit otherwise
    before, after = geo.centre_line - int(e1.min()), int(e1.max()) - geo.centre_line
    width = max(geo.lines, 2 * max(before, after + 1))
    frames = max(int(idx["phase"][sel].max()) + 1, geo.frames or 0)
    check_array_size((int(ch[0]), frames, max(geo.readout, samples), width), 8,
                     f"{path}: k-space of one slice (C, T, H, W) from the header and acquisitions")
    return _Scan(head, sel, np.unique(idx["slice"][sel]), int(ch[0]), samples,
                 frames, max(geo.readout, samples), width,
                 width // 2 - geo.centre_line)


def _assemble_slice(path: Path, data: h5py.Dataset, geo: _Geometry, sc: _Scan, z: int,
                    cfg: IsmrmrdConfig) -> IsmrmrdSlice:
    import ismrmrd

    reverse = _flag(ismrmrd.ACQ_IS_REVERSE)
    mine = sc.sel[sc.head["idx"]["slice"][sc.sel] == z]
    acc = np.zeros((sc.coils, sc.frames, sc.height, sc.width), dtype=np.complex64)
    count = np.zeros((sc.frames, sc.width), dtype=np.int32)
    for a in range(0, len(mine), _BLOCK):
        part = mine[a:a + _BLOCK]
        recs = data[part[0]:part[-1] + 1]["data"]
        for i in part:
            h = sc.head[i]
            raw = np.asarray(recs[i - part[0]])
            if raw.size != 2 * sc.coils * sc.samples:
                raise DataError(f"{path}: acquisition {i} holds {raw.size // 2} complex samples, header says "
                                f"{sc.coils} coils x {sc.samples} samples")
            line = raw.view(np.complex64).reshape(sc.coils, sc.samples)
            if int(h["flags"]) & reverse:
                line = line[:, ::-1]
            centre = int(h["center_sample"])
            start = sc.height // 2 - centre if centre else (sc.height - sc.samples) // 2
            lo, hi = max(start, 0), min(start + sc.samples, sc.height)
            t, c = int(h["idx"]["phase"]), int(h["idx"]["kspace_encode_step_1"]) + sc.offset
            acc[:, t, lo:hi, c] += line[:, lo - start:hi - start]
            count[t, c] += 1
    lines = count > 0  # (T, W)
    if not lines.any(axis=1).all():
        empty = np.flatnonzero(~lines.any(axis=1)).tolist()
        raise DataError(f"{path}: slice {z} has no lines in cardiac phases {empty} of {sc.frames}")
    acc /= np.maximum(count, 1)[None, :, None, :].astype(np.float32)
    if not np.isfinite(acc).all():
        raise DataError(f"{path}: slice {z} k-space (C, T, H, W) = {acc.shape} contains NaN or Inf values")
    if not acc.any():
        raise DataError(f"{path}: slice {z} k-space (C, T, H, W) = {acc.shape} is all zeros")
    k = torch.from_numpy(acc)
    if cfg.remove_oversampling and geo.readout_recon < sc.height:
        k = _crop_readout(k, geo.readout_recon)
    m = lines[:1] if (lines == lines[:1]).all() else lines
    mask = torch.from_numpy(m.astype(np.float32))[None, :, None, :]
    spacing = geo.spacing
    if spacing is not None and geo.fov_phase > 0:  # W may have grown around the centre line: same FOV, W pixels
        spacing = (spacing[0], geo.fov_phase / sc.width)
    times = None if geo.tr_ms is None else tuple(t * geo.tr_ms for t in range(sc.frames))
    return IsmrmrdSlice(k.to(torch.complex64), mask, z, spacing, path, _slice_geometry(sc.head[mine], geo, path),
                        times)


def _unit(v: np.ndarray) -> tuple[float, float, float] | None:
    n = float(np.linalg.norm(v))
    return None if not np.isfinite(n) or n < 1e-6 else tuple(float(x) / n for x in v)


def _slice_geometry(head: np.ndarray, geo: _Geometry, path: Path) -> SliceGeometry | None:
    """Position and directions of a slice from its acquisitions' headers (mean position).

    Returns None when the headers carry no geometry (zero or non-finite vectors).

    Raises:
        DataError: directions that are not at right angles (the file named), which no reader of
            the prepared file would accept.
    """
    pos = np.asarray(head["position"], dtype=np.float64).mean(axis=0)
    names = ("read_dir", "phase_dir", "slice_dir")
    dirs = [_unit(np.asarray(head[k][0], dtype=np.float64)) for k in names]
    if any(d is None for d in dirs) or not np.isfinite(pos).all():
        return None
    for i in range(3):
        for j in range(i):
            if abs(float(np.dot(dirs[i], dirs[j]))) > 0.01:
                shown_j, shown_i = (tuple(round(float(x), 4) for x in head[n][0]) for n in (names[j], names[i]))
                raise DataError(f"{path}: acquisition headers {names[j]} {shown_j} and {names[i]} {shown_i} "
                                "are not at right angles")
    return SliceGeometry(tuple(float(x) for x in pos), dirs[0], dirs[1], dirs[2], geo.thickness)


def _crop_readout(k: torch.Tensor, size: int) -> torch.Tensor:
    """Remove readout oversampling: centred iFFT along H, crop the central ``size`` rows, FFT back.

    Image values inside the kept field of view are unchanged (orthonormal transforms on both grids).
    """
    img = ifft1c(k, dim=-2)
    h = img.shape[-2]
    start = h // 2 - size // 2
    return fft1c(img[..., start:start + size, :], dim=-2)
