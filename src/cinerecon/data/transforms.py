"""Per-sample transforms: circular frame windows, mask drawing, exact augmentations.

Everything random takes a private ``numpy.random.Generator``; global RNGs are untouched.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..fft import fft2c, ifft2c
from ..masks import PAPER_ACS, MaskSpec, acs_lines, make_mask
from .sample import CineSample

MIN_ACS = 8


def default_acs(width: int, acs: int = PAPER_ACS) -> int:
    """ACS line count for ``width`` phase-encode lines: ``acs`` (24 as in CMRxRecon) capped for small W.

    The cap is ``max(MIN_ACS, W // 8)`` (so 64 -> 8, 128 -> 16, 246 -> 24) and never more than W.
    """
    return int(min(acs, max(MIN_ACS, width // 8), width))


def mask_key(accel: int, kind: str = "equispaced_acs") -> str:
    """Name of a stored mask: ``R08`` for the paper's equispaced + ACS masks, ``R08_<kind>`` otherwise."""
    key = f"R{int(accel):02d}"
    return key if kind == "equispaced_acs" else f"{key}_{kind}"


def parse_mask_key(text: str) -> str:
    """A mask key from a user's acceleration: ``'8'``, ``'R8'``, ``'r08'`` -> ``'R08'``; other keys pass through.

    The CMRxRecon2024 names are aliases of our keys: ``'ktGaussian8'`` -> ``'R08_ktGaussian'``,
    ``'Uniform8'`` -> ``'R08'``, ``'ktRadial8'`` -> ``'R08_ktRadial'`` (any letter case). Every
    other key, e.g. ``R08_uniform`` or a user's ``R8_foo``, is used exactly as typed.
    """
    from .cmrxrecon import challenge_key  # cmrxrecon imports this module

    key = challenge_key(text)
    if key is not None:
        return key
    m = re.fullmatch(r"[Rr]?(\d+)", text.strip())
    return mask_key(int(m.group(1))) if m else text


def window_indices(frames: int, length: int, start: int) -> np.ndarray:
    """Indices of ``length`` adjacent frames starting at ``start``, wrapping around (cine is periodic).

    Args:
        frames: T.
        length: window length, 1 <= length <= T.
        start: first frame (taken modulo T).

    Returns:
        int64 array (length,), e.g. T=6, length=3, start=5 -> [5, 0, 1].
    """
    if not 1 <= length <= frames:
        raise ConfigError(f"frame window must be in [1, {frames}] for {frames} frames, got {length}")
    return (start + np.arange(length)) % frames


def random_window(frames: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """A window of ``length`` adjacent frames with a uniformly random circular start."""
    return window_indices(frames, length, int(rng.integers(frames)))


def draw_mask(specs: MaskSpec | Sequence[MaskSpec], frames: int, width: int,
              rng: np.random.Generator, height: int | None = None) -> tuple[torch.Tensor, MaskSpec]:
    """Draw a mask from one spec or, for mixed-mask training, from a spec chosen uniformly.

    Args:
        specs: a :class:`MaskSpec` or a non-empty sequence of them.
        frames: T.
        width: W.
        rng: private generator (chooses the spec and seeds :func:`make_mask`).
        height: H, for ``kt_radial`` specs.

    Returns:
        The mask (1, T|1, 1, W) float32 ((1, T, H, W) for ``kt_radial``) and the spec used.
    """
    if isinstance(specs, MaskSpec):
        specs = [specs]
    if len(specs) == 0:
        raise ConfigError("mask_spec list is empty")
    spec = specs[int(rng.integers(len(specs)))]
    return make_mask(spec, frames, width, seed=int(rng.integers(2 ** 31)), height=height), spec


def apply_mask(sample: CineSample, mask: torch.Tensor, accel: float) -> CineSample:
    """Undersample a fully sampled sample: k-space ``mask * kspace``, meta accel/acs from the mask."""
    return sample.with_mask(mask, accel=float(accel), acs=acs_lines(mask))


def select_frames(sample: CineSample, index: Sequence[int] | np.ndarray) -> CineSample:
    """Keep the frames ``index`` (in that order) of k-space, target, time-varying mask and times."""
    idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
    mask = sample.mask if sample.mask.shape[1] == 1 else sample.mask[:, idx]
    target = None if sample.target is None else sample.target[idx]
    times = sample.meta.frame_times_ms
    meta = replace(sample.meta, frame_times_ms=None if times is None else tuple(times[i] for i in idx.tolist()))
    return CineSample(sample.kspace[:, idx], mask, sample.maps, target, meta)


def _flip_image_kspace(k: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return fft2c(torch.flip(ifft2c(k), dims))


def augment(sample: CineSample, rng: np.random.Generator, flip_h: bool = True, flip_w: bool = True,
            reverse_time: bool = True, shift_time: bool = True) -> CineSample:
    """Random exact augmentation of a fully sampled sample (apply before undersampling).

    Flips act on the coil images, maps and target together (so k-space, maps and target stay
    consistent); time reversal and circular time shifts act on every time axis.

    Args:
        sample: fully sampled sample (mask of ones).
        rng: private generator; each enabled transform is applied with probability 1/2
            (the shift is uniform over T).
        flip_h, flip_w, reverse_time, shift_time: which transforms may be used.

    Returns:
        A new fully sampled CineSample.
    """
    if not bool((sample.mask == 1).all()):
        raise DataError(f"{sample.meta.source or sample.meta.name}: augmentation needs fully sampled k-space, "
                        f"got a mask of shape {tuple(sample.mask.shape)} with zeros")
    k, maps, target = sample.kspace, sample.maps, sample.target
    dims = tuple(d for d, on in ((-2, flip_h), (-1, flip_w)) if on and rng.random() < 0.5)
    if dims:
        k = _flip_image_kspace(k, dims)
        maps = torch.flip(maps, dims)
        target = None if target is None else torch.flip(target, dims)
    t = k.shape[1]
    order = np.arange(t)
    if reverse_time and rng.random() < 0.5:
        order = order[::-1]
    if shift_time:
        order = np.roll(order, int(rng.integers(t)))
    out = CineSample(k, sample.mask, maps, target, sample.meta)
    return select_frames(out, order.copy()) if not np.array_equal(order, np.arange(t)) else out
