"""Seeded Cartesian sampling masks along the phase-encoding axis (W).

All generators take an explicit ``seed`` and use a private ``numpy.random.Generator``;
the global NumPy and torch RNGs are never touched.

Mask tensors returned by :func:`make_mask` have shape (1, T|1, 1, W) so that they
broadcast against k-space (C, T, H, W) (add a leading batch axis for batches).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError

KINDS = ("equispaced_acs", "uniform", "time_varying", "time_varying_acs", "random_acs")
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


@dataclass(frozen=True)
class MaskSpec:
    """Description of a sampling pattern.

    Attributes:
        kind: one of ``equispaced_acs`` (CMRxRecon style), ``uniform`` (equispaced, no ACS),
            ``time_varying`` (equispaced, offset shifted every frame, no ACS),
            ``time_varying_acs`` (the same plus ACS), ``random_acs`` (per-frame
            variable-density random lines plus ACS).
        accel: nominal acceleration R: a whole number for the line patterns (every R-th line),
            any finite number >= 1 for ``random_acs``.
        acs: number of central lines for the ``*_acs`` kinds.
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
        if self.kind != "random_acs" and self.accel != int(self.accel):  # every R-th line: R is a whole number
            raise ConfigError(f"mask {self.kind}: accel must be a whole number (only random_acs takes a "
                              f"fractional R), got {self.accel!r}")
        if isinstance(self.acs, bool) or not isinstance(self.acs, numbers.Integral) or self.acs < 0:
            raise ConfigError(f"mask {self.kind}: acs must be an integer >= 0, got {self.acs!r}")


def make_mask(spec: MaskSpec, frames: int, width: int, seed: int = 0) -> torch.Tensor:
    """Build a mask for ``frames`` frames and ``width`` phase-encode lines.

    Args:
        spec: the pattern.
        frames: T.
        width: W.
        seed: seed of the private RNG (random offsets and random lines).

    Returns:
        float32 tensor (1, 1, 1, W) for static patterns or (1, T, 1, W) for time-varying ones.
    """
    rng = np.random.default_rng(seed)
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


def regular_lines(mask: torch.Tensor) -> bool:
    """Whether every frame samples an equispaced grid of lines (plus a central block).

    Per frame, the lines outside the contiguous central run (the ACS block, if any) must be
    equally spaced; the one gap that spans the central run is not counted. Equispaced masks
    with or without ACS (CMRxRecon2023, CMRxRecon2024 ``Uniform``) and time-varying shifted
    ones are regular; variable-density random lines (``random_acs``, ``ktGaussian``) are not.
    This is the pattern GRAPPA's interpolation is made for.

    Args:
        mask: real, (..., W) along the phase-encoding axis W, with the frames (if any) before
            it, e.g. (1, T|1, 1, W) or (B, 1, T, 1, W); must not vary along other axes
            than the frames (line masks).

    Returns:
        True when every frame's non-central lines have one spacing. A frame with too few lines
        outside the block to show a spacing (under 3) counts as regular only when the mask is
        the same in every frame; lines that move between frames are then taken for random ones.
    """
    w = mask.shape[-1]
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
