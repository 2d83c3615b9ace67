"""Typed cine samples and batches.

One sample is one slice of one subject: multi-coil k-space over time, the sampling
mask, coil maps and (when known) the fully sampled target image.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from ..errors import DataError


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
    """

    name: str = "sample"
    view: str = "unknown"
    accel: float = 1.0
    acs: int = 0
    source: str = ""
    pixel_spacing: tuple[float, float] | None = None
    frame_times_ms: tuple[float, ...] | None = None


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
    if s.target is not None and tuple(s.target.shape) != (t, h, w):
        raise DataError(f"{src}: target shape {tuple(s.target.shape)} does not match (T, H, W) = ({t}, {h}, {w})")
    for name, x in (("kspace", s.kspace), ("maps", s.maps), ("mask", s.mask), ("target", s.target)):
        if x is not None and not bool(torch.isfinite(torch.view_as_real(x) if x.is_complex() else x).all()):
            raise DataError(f"{src}: {name} contains NaN or Inf values")


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

    def to(self, device: torch.device | str) -> "CineBatch":
        """Move every tensor to ``device``."""
        return CineBatch(self.kspace.to(device), self.mask.to(device), self.maps.to(device),
                         None if self.target is None else self.target.to(device), self.meta)

    def __len__(self) -> int:
        return self.kspace.shape[0]


def collate(samples: list[CineSample]) -> CineBatch:
    """Stack samples into a :class:`CineBatch`; masks are broadcast to a common shape."""
    shapes = {s.shape for s in samples}
    if len(shapes) != 1:
        raise DataError("cannot batch samples of different (C, T, H, W): " +
                        ", ".join(f"{s.meta.name}: {s.shape}" for s in samples))
    mshape = torch.broadcast_shapes(*[s.mask.shape for s in samples])
    mask = torch.stack([s.mask.expand(mshape) for s in samples])
    target = None if any(s.target is None for s in samples) else torch.stack([s.target for s in samples])
    return CineBatch(torch.stack([s.kspace for s in samples]), mask,
                     torch.stack([s.maps for s in samples]), target, [s.meta for s in samples])
