"""Augmentation of real magnitude cine series into varied complex training images.

Every transform draws from a private ``numpy.random.Generator`` (never the global RNG),
so one (seed, epoch, item) always gives the same image. The chain, in
:func:`augment_magnitude` then :func:`add_phase`:

1. time: circular resampling to T frames with a random start, direction and (sometimes)
   a rate that covers a little more or less than one cycle;
2. space: one affine map per item (zoom around the scale at which the series fills a
   ``ref_size`` field of view, any rotation, a flip) plus a smooth elastic displacement,
   sampled at the crop size anywhere in the image (background included), anti-aliased;
3. intensity: gamma (contrast), a smooth multiplicative bias field, rescaling to a
   99.5th percentile of 1;
4. phase: a smooth background phase and a time-varying phase proportional to the
   intensity change of moving tissue (through-plane flow and motion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .simulate import smooth_field, smooth_phase


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms (each drawn uniformly unless said otherwise).

    Attributes:
        ref_size: side (pixels) of the image that the whole series would fill at zoom 1;
            a crop of ``size`` pixels then shows the part of the FOV it shows at test time.
        zoom: log-uniform range of the extra zoom.
        elastic_px: maximum amplitude (output pixels) of the elastic displacement.
        elastic_sigma: smoothness (output pixels) of the elastic displacement.
        p_rate: probability of a temporal rate other than one cycle per T frames.
        rate: range of that rate relative to one cycle.
        gamma: log-uniform range of the intensity exponent.
        bias: maximum std of the log bias field.
        phase_rad: range of the smooth background phase std.
        motion_phase_rad: maximum time-varying phase in moving tissue.
    """

    ref_size: int = 128
    zoom: tuple[float, float] = (0.8, 1.25)
    elastic_px: float = 2.5
    elastic_sigma: float = 8.0
    p_rate: float = 0.3
    rate: tuple[float, float] = (0.9, 1.1)
    gamma: tuple[float, float] = (0.7, 1.4)
    bias: float = 0.25
    phase_rad: tuple[float, float] = (0.2, 1.5)
    motion_phase_rad: float = 0.5


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def resample_time(frames: np.ndarray, t_out: int, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Circularly resample (T0, H, W) to (t_out, H, W): random start, direction and rate.

    Frames between input frames are linear interpolations (cyclic: after the last frame
    comes the first).
    """
    t0 = frames.shape[0]
    rate = t0 / t_out
    if rng.uniform() < cfg.p_rate:
        rate *= rng.uniform(*cfg.rate)
    direction = 1.0 if rng.uniform() < 0.5 else -1.0
    pos = (rng.uniform(0, t0) + direction * rate * np.arange(t_out)) % t0
    lo = np.floor(pos).astype(int) % t0
    hi = (lo + 1) % t0
    f = (pos - np.floor(pos)).astype(np.float32)[:, None, None]
    return (1 - f) * frames[lo] + f * frames[hi]


def spatial_transform(frames: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
                      cfg: AugmentConfig) -> np.ndarray:
    """Zoom, rotate, flip, deform elastically and crop (T, H0, W0) to (T, h, w).

    Output pixel (i, j) samples the input at ``c + s R F u + d(u)`` with u the offset from
    the crop centre, s input pixels per output pixel, R a rotation, F an optional flip, c
    a random centre inside the image and d a smooth displacement.
    """
    t, h0, w0 = frames.shape
    h, w = size
    s = max(h0, w0) / cfg.ref_size / _log_uniform(rng, *cfg.zoom)
    theta = rng.uniform(0, 2 * math.pi)
    flip = -1.0 if rng.uniform() < 0.5 else 1.0
    cos, sin = math.cos(theta), math.sin(theta)
    ui, uj = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    uj = uj * flip
    amp = rng.uniform(0, cfg.elastic_px)
    di = smooth_field(rng, (h, w), cfg.elastic_sigma)
    dj = smooth_field(rng, (h, w), cfg.elastic_sigma)
    norm = max(float(np.abs(di).max()), float(np.abs(dj).max()), 1e-6)
    di, dj = di * amp / norm, dj * amp / norm
    ci = rng.uniform(0.2, 0.8) * (h0 - 1)
    cj = rng.uniform(0.2, 0.8) * (w0 - 1)
    yi = ci + s * (cos * (ui + di) - sin * (uj + dj))
    yj = cj + s * (sin * (ui + di) + cos * (uj + dj))
    sigma = max(0.0, (s - 1) / 2)
    out = np.empty((t, h, w), dtype=np.float32)
    for k in range(t):
        src = ndimage.gaussian_filter(frames[k], sigma) if sigma > 0 else frames[k]
        out[k] = ndimage.map_coordinates(src, (yi, yj), order=1, mode="constant", cval=0.0)
    return out


def augment_magnitude(frames: np.ndarray, t_out: int, size: tuple[int, int], rng: np.random.Generator,
                      cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Time, space and intensity augmentation of a real magnitude series.

    Args:
        frames: (T0, H0, W0) non-negative magnitudes, any scale.
        t_out: output frames T.
        size: output (h, w).
        rng: private generator.
        cfg: ranges.

    Returns:
        (T, h, w) float32 magnitudes, 99.5th percentile 1 (when not all zero).
    """
    x = resample_time(np.asarray(frames, dtype=np.float32), t_out, rng, cfg)
    x = spatial_transform(x, size, rng, cfg)
    scale = float(np.percentile(x, 99.5))
    x = np.clip(x / scale, 0.0, None) if scale > 0 else x
    x = x ** _log_uniform(rng, *cfg.gamma)
    x = x * np.exp(cfg.bias * rng.uniform() * smooth_field(rng, size, max(size) / 3))[None]
    scale = float(np.percentile(x, 99.5))
    return (x / scale).astype(np.float32) if scale > 0 else x.astype(np.float32)


def add_phase(mag: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Complex image from magnitudes: smooth background phase plus motion phase.

    Args:
        mag: (T, H, W) magnitudes.
        rng: private generator.
        cfg: ranges.

    Returns:
        (T, H, W) complex64.
    """
    t, h, w = mag.shape
    phase = smooth_phase(rng, (h, w), rng.uniform(*cfg.phase_rad))[None]
    change = mag - mag.mean(axis=0, keepdims=True)
    peak = float(np.abs(change).max())
    if peak > 0:
        phase = phase + rng.uniform(-1, 1) * cfg.motion_phase_rad * change / peak
    return (mag * np.exp(1j * phase)).astype(np.complex64)
