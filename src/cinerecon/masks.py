"""Seeded Cartesian sampling masks: phase-encode lines (W), and pseudo-radial k-t patterns.

All generators take an explicit ``seed`` and use a private ``numpy.random.Generator``;
the global NumPy and torch RNGs are never touched.

Mask tensors returned by :func:`make_mask` have shape (1, T|1, 1, W) for the line patterns
and (1, T, H, W) for ``kt_radial``, so that they broadcast against k-space (C, T, H, W) (add
a leading batch axis for batches).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError

KINDS = ("equispaced_acs", "uniform", "time_varying", "time_varying_acs", "random_acs", "kt_radial")
FRACTIONAL_KINDS = ("random_acs", "kt_radial")
"""Kinds whose R may be fractional: they reach 1 / R of the points by a count, not a line spacing."""
GOLDEN_ANGLE_DEG = 180.0 * (3.0 - math.sqrt(5.0)) / 2.0 * (1.0 + math.sqrt(5.0)) / 2.0
"""111.246...: the spoke rotation between frames of ``kt_radial`` (180 / golden ratio, Winkelmann 2007)."""
PAPER_ACCELS = (4, 8, 10, 24)
PAPER_ACS = 24


def _centre_block(width: int, acs: int) -> np.ndarray:
    """Boolean (W,) with ``acs`` lines around the DC index ``W // 2``."""
    line = np.zeros(width, dtype=bool)
    if acs > 0:
        start = width // 2 - acs // 2
        line[max(start, 0):min(start + acs, width)] = True
    return line


def equispaced(width: int, accel: int, offset: int = 0, acs: int = 0) -> np.ndarray:
    """Every ``accel``-th phase-encode line starting at ``offset``, plus ``acs`` central lines.

    Args:
        width: number of phase-encode lines W.
        accel: nominal acceleration (line spacing) R >= 1.
        offset: index of the first sampled line, 0 <= offset < R.
        acs: number of fully sampled central lines (0 for none).

    Returns:
        Boolean array (W,).
    """
    if accel < 1 or int(accel) != accel:
        raise ConfigError(f"acceleration must be a positive integer, got {accel}")
    if acs < 0 or acs > width:
        raise ConfigError(f"acs lines must be in [0, {width}], got {acs}")
    line = np.zeros(width, dtype=bool)
    line[offset % int(accel)::int(accel)] = True
    return line | _centre_block(width, acs)


def random_lines(width: int, accel: float, acs: int, rng: np.random.Generator) -> np.ndarray:
    """The ACS block plus round((W - ACS) / R) variable-density random lines outside it.

    The lines outside the ACS block have the density 1 / R of an equispaced mask (Gaussian
    density around the centre, standard deviation W / 4), so the total matches
    ``equispaced_acs`` of the same R and ACS (e.g. 37 of 128 lines at R = 8 with 24 ACS).
    """
    line = _centre_block(width, acs)
    x = np.arange(width) - width // 2
    p = np.exp(-0.5 * (x / (width / 4.0)) ** 2)
    p[line] = 0
    n_more = min(int(round((width - int(line.sum())) / accel)), int((p > 0).sum()))
    if n_more > 0:
        pick = rng.choice(width, size=n_more, replace=False, p=p / p.sum())
        line[pick] = True
    return line


def _spokes(height: int, width: int, angles: np.ndarray, calib: int) -> np.ndarray:
    """Boolean (H, W): lines through the k-space centre (H // 2, W // 2) at ``angles`` (radians).

    Each spoke is traced at half-pixel steps out to max(H, W) / 2 on either side of the centre
    and rounded to the grid (corners beyond that radius stay empty), plus the centred
    ``calib`` x ``calib`` block (clipped to the field).
    """
    ch, cw = height // 2, width // 2
    r = max(height, width) / 2.0
    s = np.arange(-r, r + 0.25, 0.5)
    rows = np.rint(ch + np.outer(np.sin(angles), s)).astype(np.int64).ravel()
    cols = np.rint(cw + np.outer(np.cos(angles), s)).astype(np.int64).ravel()
    keep = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    out = np.zeros((height, width), dtype=bool)
    out[rows[keep], cols[keep]] = True
    if calib > 0:
        top, left = ch - calib // 2, cw - calib // 2
        out[max(top, 0):top + calib, max(left, 0):left + calib] = True
    return out


def pseudo_radial(height: int, width: int, frames: int, accel: float, calib: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Pseudo-radial k-t sampling on the Cartesian grid (like CMRxRecon2024's ``ktRadial``).

    Every frame samples ``n`` equally spaced spokes through the k-space centre and a centred
    ``calib`` x ``calib`` calibration block; frame t's spokes are frame 0's rotated by t times
    the golden angle (:data:`GOLDEN_ANGLE_DEG`), from a random first angle. ``n`` is the fewest
    spokes whose sampled fraction over the first frames reaches 1 / ``accel``, so ``accel``
    is the effective acceleration (fully sampled points / sampled points) up to one spoke
    (when the block alone samples more than 1 / ``accel``, one spoke is drawn and R is not
    reached). The CMRxRecon mask generator instead counts floor(180 / (0.6 R)) spokes of a
    max(H, W) square and turns them by 137.5 degrees per frame.

    Args:
        height: readout size H (the pattern varies along it too).
        width: phase-encode size W.
        frames: T.
        accel: target effective acceleration R >= 1.
        calib: side of the fully sampled central block (0 for none).
        rng: private generator (the first angle).

    Returns:
        Boolean array (T, H, W).
    """
    if calib < 0 or calib > min(height, width):
        raise ConfigError(f"kt_radial: calibration block side must be in [0, {min(height, width)}] for "
                          f"(H, W) = ({height}, {width}), got {calib}")
    first = float(rng.uniform(0.0, math.pi))
    step = math.radians(GOLDEN_ANGLE_DEG)

    def frame(n: int, t: int) -> np.ndarray:
        return _spokes(height, width, first + t * step + np.arange(n) * math.pi / n, calib)

    def fraction(n: int) -> float:
        return float(np.mean([frame(n, t).mean() for t in range(min(frames, 4))]))

    lo, hi = 1, max(1, int(math.ceil(math.pi * max(height, width))))  # hi spokes fill the disc
    if fraction(lo) < 1.0 / accel:
        while lo < hi:  # fewest spokes reaching the fraction (monotone up to the rounding of angles)
            mid = (lo + hi) // 2
            if fraction(mid) >= 1.0 / accel:
                hi = mid
            else:
                lo = mid + 1
    return np.stack([frame(lo, t) for t in range(frames)])


@dataclass(frozen=True)
class MaskSpec:
    """Description of a sampling pattern.

    Attributes:
        kind: one of ``equispaced_acs`` (CMRxRecon style), ``uniform`` (equispaced, no ACS),
            ``time_varying`` (equispaced, offset shifted every frame, no ACS),
            ``time_varying_acs`` (the same plus ACS), ``random_acs`` (per-frame
            variable-density random lines plus ACS), ``kt_radial`` (pseudo-radial spokes
            rotated by the golden angle every frame plus a centred square, like CMRxRecon2024's
            ``ktRadial``; it varies along the readout H too, see :func:`pseudo_radial`).
        accel: nominal acceleration R: a whole number for the line patterns (every R-th line),
            any finite number >= 1 for ``random_acs`` and ``kt_radial``.
        acs: number of central lines for the ``*_acs`` kinds; the side of the central square
            for ``kt_radial`` (the CMRxRecon2025 generator's is 20).
    """

    kind: str = "equispaced_acs"
    accel: int = 8
    acs: int = PAPER_ACS

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown mask kind {self.kind!r}; choose one of {KINDS}")
        if (isinstance(self.accel, bool) or not isinstance(self.accel, numbers.Real) or not self.accel >= 1
                or not math.isfinite(self.accel)):
            raise ConfigError(f"mask {self.kind}: accel must be a finite number >= 1, got {self.accel!r}")
        if self.kind not in FRACTIONAL_KINDS and self.accel != int(self.accel):  # every R-th line: R is whole
            raise ConfigError(f"mask {self.kind}: accel must be a whole number (only {' and '.join(FRACTIONAL_KINDS)} "
                              f"take a fractional R), got {self.accel!r}")
        if isinstance(self.acs, bool) or not isinstance(self.acs, numbers.Integral) or self.acs < 0:
            raise ConfigError(f"mask {self.kind}: acs must be an integer >= 0, got {self.acs!r}")


def make_mask(spec: MaskSpec, frames: int, width: int, seed: int = 0, height: int | None = None) -> torch.Tensor:
    """Build a mask for ``frames`` frames and ``width`` phase-encode lines.

    Args:
        spec: the pattern.
        frames: T.
        width: W.
        seed: seed of the private RNG (random offsets, random lines, the first spoke angle).
        height: readout size H; needed by ``kt_radial`` only (the line patterns ignore it).

    Returns:
        float32 tensor (1, 1, 1, W) for static line patterns, (1, T, 1, W) for time-varying
        ones, (1, T, H, W) for ``kt_radial``.

    Raises:
        ConfigError: ``kt_radial`` without ``height``, or a calibration block that does not fit.
    """
    rng = np.random.default_rng(seed)
    if spec.kind == "kt_radial":
        if height is None:
            raise ConfigError("mask kt_radial varies along the readout H too: make_mask needs height=H")
        pattern = pseudo_radial(int(height), width, frames, float(spec.accel), spec.acs, rng)
        return torch.from_numpy(pattern.astype(np.float32))[None]
    r = int(spec.accel)
    if spec.kind == "equispaced_acs":
        lines = equispaced(width, r, int(rng.integers(r)), spec.acs)[None]
    elif spec.kind == "uniform":
        lines = equispaced(width, r, int(rng.integers(r)), 0)[None]
    elif spec.kind in ("time_varying", "time_varying_acs"):
        acs = spec.acs if spec.kind == "time_varying_acs" else 0
        base = int(rng.integers(r))
        lines = np.stack([equispaced(width, r, base + t, acs) for t in range(frames)])
    else:  # random_acs
        lines = np.stack([random_lines(width, spec.accel, spec.acs, rng) for _ in range(frames)])
    return torch.from_numpy(lines.astype(np.float32))[None, :, None, :]


def effective_acceleration(mask: torch.Tensor) -> float:
    """Fully sampled size over sampled size (lines per frame averaged), e.g. R = 8 -> 4.8 with 24 ACS of 246 lines."""
    m = mask.float()
    frac = float(m.mean())
    if frac == 0:
        return float("inf")
    return 1.0 / frac


def central_run(line: np.ndarray) -> tuple[int, int]:
    """[lo, hi) of the contiguous run of True values containing W // 2 of a 1D bool array (W,).

    The run is empty (lo = hi = W // 2) when position W // 2 is False.
    """
    c = line.shape[0] // 2
    if not line[c]:
        return c, c
    lo, hi = c, c + 1
    while lo > 0 and line[lo - 1]:
        lo -= 1
    while hi < line.shape[0] and line[hi]:
        hi += 1
    return lo, hi


def acs_lines(mask: torch.Tensor) -> int:
    """Length of the contiguous run of sampled lines around W // 2, sampled in every frame."""
    lo, hi = central_run(mask.reshape(-1, mask.shape[-1]).amin(dim=0).bool().cpu().numpy())
    return hi - lo


def varies_along_readout(mask: torch.Tensor) -> bool:
    """Whether a mask (..., H|1, W), readout axis H at -2, differs between rows: a 2-D pattern
    such as ``kt_radial`` rather than whole phase-encode lines."""
    return mask.dim() >= 2 and mask.shape[-2] > 1 and bool((mask != mask[..., :1, :]).any())


def regular_lines(mask: torch.Tensor) -> bool:
    """Whether every frame samples an equispaced grid of lines (plus a central block).

    Per frame, the lines outside the contiguous central run (the ACS block, if any) must be
    equally spaced; the one gap that spans the central run is not counted. Equispaced masks
    with or without ACS (CMRxRecon2023, CMRxRecon2024 ``Uniform``) and time-varying shifted
    ones are regular; variable-density random lines (``random_acs``, ``ktGaussian``) are not.
    This is the pattern GRAPPA's interpolation is made for.

    Args:
        mask: real, (..., W) along the phase-encoding axis W, with the frames (if any) before
            it, e.g. (1, T|1, 1, W) or (B, 1, T, 1, W); a mask of rank 4 or more that varies
            along its readout axis -2 (1, T, H, W) (pseudo-radial) is not a line pattern at all.

    Returns:
        False for a mask that varies along the readout H; else True when every frame's
        non-central lines have one spacing. A frame with too few lines
        outside the block to show a spacing (under 3) counts as regular only when the mask is
        the same in every frame; lines that move between frames are then taken for random ones.
    """
    w = mask.shape[-1]
    if mask.dim() >= 4 and varies_along_readout(mask):
        return False
    frames = np.unique(mask.reshape(-1, w).bool().cpu().numpy(), axis=0)
    for line in frames:
        lo, hi = central_run(line)
        idx = np.flatnonzero(line)
        idx = idx[(idx < lo) | (idx >= hi)]
        if idx.size < 3 and frames.shape[0] > 1:
            return False
        gaps = np.diff(idx)
        gaps = gaps[~((idx[:-1] < lo) & (idx[1:] >= hi))]  # the gap across the central run
        if gaps.size and (gaps != gaps[0]).any():
            return False
    return True
