"""Typed cine samples and batches.

One sample is one slice of one subject: multi-coil k-space over time, the sampling
mask, coil maps and (when known) the fully sampled target image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import torch

from ..errors import DataError


@dataclass(frozen=True)
class SliceGeometry:
    """Where a slice lies in the scanner, in patient coordinates (LPS, mm; as ISMRMRD and DICOM).

    The image pixel (h, w) of a (T, H, W) series lies at
    ``position + (h - H // 2) * dH * read_dir + (w - W // 2) * dW * phase_dir``, with (dH, dW)
    the pixel spacing: index ``n // 2`` is the origin of the centred FFT.

    Attributes:
        position: (x, y, z) centre of the slice.
        read_dir: unit vector along our H axis (the readout).
        phase_dir: unit vector along our W axis (the phase encoding).
        slice_dir: unit vector normal to the slice.
        thickness: slice thickness in mm, when known.
    """

    position: tuple[float, float, float]
    read_dir: tuple[float, float, float]
    phase_dir: tuple[float, float, float]
    slice_dir: tuple[float, float, float]
    thickness: float | None = None


@dataclass(frozen=True)
class SampleMeta:
    """Descriptive metadata of one slice.

    Attributes:
        name: identifier (e.g. ``P001/cine_sax/slice03``).
        view: ``"sax"``, ``"lax"`` or ``"unknown"``.
        accel: nominal acceleration factor R of ``mask`` (1 for fully sampled).
        acs: number of fully sampled central phase-encode lines (0 when none).
        source: file the sample came from, for error messages.
        pixel_spacing: (dy, dx) in mm when known.
        frame_times_ms: trigger times when known.
        geometry: position and orientation in the scanner when the source has them (ISMRMRD).
    """

    name: str = "sample"
    view: str = "unknown"
    accel: float = 1.0
    acs: int = 0
    source: str = ""
    pixel_spacing: tuple[float, float] | None = None
    frame_times_ms: tuple[float, ...] | None = None
    geometry: SliceGeometry | None = None


@dataclass(frozen=True)
class CineSample:
    """One cine slice.

    Attributes:
        kspace: (C, T, H, W) complex64, measured k-space (zero where not sampled).
        mask: real {0, 1}, broadcastable to ``kspace`` and of rank 4: (1, 1, 1, W),
            (1, T, 1, W) for time-varying masks, or (1, 1 or T, H, W).
        maps: (C, 1, H, W) complex64 coil sensitivities.
        target: (T, H, W) complex64 fully sampled coil-combined image, or None.
        meta: descriptive metadata.
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor
    target: torch.Tensor | None = None
    meta: SampleMeta = field(default_factory=SampleMeta)

    def __post_init__(self) -> None:
        validate_sample(self)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W)."""
        c, t, h, w = self.kspace.shape
        return c, t, h, w

    def with_mask(self, mask: torch.Tensor, accel: float | None = None, acs: int | None = None) -> "CineSample":
        """Return a copy re-undersampled with ``mask`` (requires the fully sampled k-space).

        The new k-space is ``mask * kspace`` of this sample, so call it on a fully
        sampled sample.
        """
        meta = replace(self.meta, accel=self.meta.accel if accel is None else accel,
                       acs=self.meta.acs if acs is None else acs)
        return CineSample(self.kspace * mask, mask.to(self.kspace.real.dtype), self.maps, self.target, meta)


def validate_sample(s: CineSample) -> None:
    """Check shapes, dtypes and finiteness; raise DataError naming the source and problem."""
    src = s.meta.source or s.meta.name
    if s.kspace.ndim != 4 or not s.kspace.is_complex():
        raise DataError(f"{src}: kspace must be complex (C, T, H, W), got {tuple(s.kspace.shape)} {s.kspace.dtype}")
    c, t, h, w = s.kspace.shape
    if t < 1 or h < 2 or w < 2:
        raise DataError(f"{src}: kspace shape (C, T, H, W) = {tuple(s.kspace.shape)} is too small")
    if s.maps.ndim != 4 or not s.maps.is_complex():
        raise DataError(f"{src}: maps must be complex (C, 1, H, W), got {tuple(s.maps.shape)} {s.maps.dtype}")
    if s.maps.shape[0] != c:
        raise DataError(f"{src}: coil count mismatch: kspace has {c} coils {tuple(s.kspace.shape)}, "
                        f"maps have {s.maps.shape[0]} {tuple(s.maps.shape)}")
    if s.maps.shape[-2:] != (h, w) or s.maps.shape[1] != 1:
        raise DataError(f"{src}: maps shape {tuple(s.maps.shape)} does not match kspace (C, 1, H, W) = ({c}, 1, {h}, {w})")
    if s.mask.ndim != 4:
        raise DataError(f"{src}: mask must have rank 4 broadcastable to (C, T, H, W) = {tuple(s.kspace.shape)}, "
                        f"got {tuple(s.mask.shape)}")
    try:
        torch.broadcast_shapes(s.mask.shape, s.kspace.shape)
    except RuntimeError as e:
        raise DataError(f"{src}: mask shape {tuple(s.mask.shape)} is not broadcastable to kspace "
                        f"{tuple(s.kspace.shape)}") from e
    if s.mask.shape[0] != 1:
        raise DataError(f"{src}: mask must be shared across coils (first axis 1), got {tuple(s.mask.shape)}")
    check_mask_values(s.mask, f"{src}: mask")
    if s.target is not None and tuple(s.target.shape) != (t, h, w):
        raise DataError(f"{src}: target shape {tuple(s.target.shape)} does not match (T, H, W) = ({t}, {h}, {w})")
    for name, x in (("kspace", s.kspace), ("maps", s.maps), ("mask", s.mask), ("target", s.target)):
        if x is not None and not bool(torch.isfinite(torch.view_as_real(x) if x.is_complex() else x).all()):
            raise DataError(f"{src}: {name} contains NaN or Inf values")


def check_mask_values(mask: torch.Tensor, where: str) -> None:
    """Raise DataError unless ``mask`` (..., T|1, H|1, W) is 0/1 with a sampled line in every frame.

    Args:
        mask: a rank-4 sample mask (1, T|1, H|1, W) or a stored (T|1, W) line mask.
        where: the file and key for the message (``"x.h5: mask 'masks/R08'"``).
    """
    m = mask.detach()
    if not bool(torch.isfinite(m).all()) or not bool(((m == 0) | (m == 1)).all()):
        vals = torch.unique(m[torch.isfinite(m)])[:6].tolist()
        raise DataError(f"{where} {tuple(mask.shape)} must hold only 0 and 1, found values {vals}"
                        + (" and NaN/Inf" if not bool(torch.isfinite(m).all()) else ""))
    frames = m.reshape(-1, m.shape[-1]) if m.ndim == 2 else m.reshape(m.shape[-3], -1)
    empty = torch.nonzero(frames.amax(dim=-1) == 0).flatten().tolist()
    if empty:
        which = "every frame" if len(empty) == frames.shape[0] else f"frames {empty[:8]}"
        raise DataError(f"{where} {tuple(mask.shape)} samples no line in {which}; at least one line per "
                        "frame is needed")


def check_array_size(shape: tuple[int, ...], itemsize: int, where: str) -> None:
    """Refuse to read an array larger than this machine's memory (a corrupt or hostile size field).

    Args:
        shape: declared shape.
        itemsize: bytes per element.
        where: the file and key for the message.

    Raises:
        DataError: naming ``where``, the shape and both sizes.
    """
    n = itemsize
    for d in shape:
        if int(d) < 0:
            raise DataError(f"{where}: declared shape {tuple(shape)} has a negative size")
        n *= int(d)
    limit = _memory_bytes()
    if n > limit:
        raise DataError(f"{where}: declared shape {tuple(int(d) for d in shape)} needs {n / 2 ** 30:.3g} GiB, more "
                        f"than this machine's {limit / 2 ** 30:.3g} GiB of memory; refusing to read it")


def _memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 64 * 2 ** 30


@dataclass
class CineBatch:
    """A batch of samples with equal (C, T, H, W).

    Attributes:
        kspace: (B, C, T, H, W) complex64.
        mask: (B, 1, T|1, H|1, W) real.
        maps: (B, C, 1, H, W) complex64.
        target: (B, T, H, W) complex64 or None.
        meta: per-sample metadata.
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor
    target: torch.Tensor | None
    meta: list[SampleMeta]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "CineBatch":
        """Move every tensor to ``device`` (``non_blocking``: asynchronous copies from pinned memory)."""
        kw = dict(non_blocking=non_blocking)
        return CineBatch(self.kspace.to(device, **kw), self.mask.to(device, **kw), self.maps.to(device, **kw),
                         None if self.target is None else self.target.to(device, **kw), self.meta)

    def pin_memory(self) -> "CineBatch":
        """A copy in page-locked memory (called by ``DataLoader(pin_memory=True)``)."""
        return CineBatch(self.kspace.pin_memory(), self.mask.pin_memory(), self.maps.pin_memory(),
                         None if self.target is None else self.target.pin_memory(), self.meta)

    def __len__(self) -> int:
        return self.kspace.shape[0]


def collate(samples: list[CineSample], pad_coils: bool = False) -> CineBatch:
    """Stack samples into a :class:`CineBatch`; masks are broadcast to a common shape.

    Args:
        samples: samples of equal (C, T, H, W), or of equal (T, H, W) with ``pad_coils``.
        pad_coils: append all-zero coils (zero k-space and zero maps) to samples with fewer
            coils than the largest; SENSE operators, data consistency and the coil-combined
            target are unchanged by such coils.
    """
    if pad_coils:
        c = max(s.shape[0] for s in samples)
        samples = [_pad_coils(s, c) for s in samples]
    shapes = {s.shape for s in samples}
    if len(shapes) != 1:
        raise DataError("cannot batch samples of different (C, T, H, W): " +
                        ", ".join(f"{s.meta.name}: {s.shape}" for s in samples))
    mshape = torch.broadcast_shapes(*[s.mask.shape for s in samples])
    mask = torch.stack([s.mask.expand(mshape) for s in samples])
    target = None if any(s.target is None for s in samples) else torch.stack([s.target for s in samples])
    return CineBatch(torch.stack([s.kspace for s in samples]), mask,
                     torch.stack([s.maps for s in samples]), target, [s.meta for s in samples])


def _pad_coils(s: CineSample, coils: int) -> CineSample:
    extra = coils - s.shape[0]
    if extra == 0:
        return s
    k = torch.cat([s.kspace, s.kspace.new_zeros((extra,) + s.kspace.shape[1:])])
    m = torch.cat([s.maps, s.maps.new_zeros((extra,) + s.maps.shape[1:])])
    return CineSample(k, s.mask, m, s.target, s.meta)
