"""Receive-coil geometries for simulated multi-coil data beyond the birdcage.

Cardiac arrays are flexible loops on the chest and loops in the table under the back, not
a ring: sensitivities are strong near the anterior and posterior surfaces and weak in the
middle, with some elements much closer to the heart than others. :func:`surface_array_maps`
models that; :func:`random_coil_maps` draws a geometry (birdcage or surface arrays, with
optional SVD coil compression of a larger array) for training data.

All maps are normalised so that ``sum_c |S_c|^2 = 1`` at every pixel.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ConfigError
from .sample import CineSample
from .simulate import birdcage_maps, image_to_sample, noise_sigma, real_cine_to_sample


def _normalise(maps: np.ndarray) -> np.ndarray:
    return maps / np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))


def surface_array_maps(coils: int, size: tuple[int, int], rng: np.random.Generator,
                       body: tuple[float, float] = (0.85, 0.65), loop_radius: float = 0.35) -> torch.Tensor:
    """Sensitivities of an anterior and a posterior array of circular loops.

    Loops lie on the two flat sides of an elliptical body of half-axes ``body`` (half-FOV
    units), rotated as a whole by a random angle. A loop of radius a at out-of-plane
    distance z and in-plane distance d has the on-axis magnitude of a loop,
    ``a^2 / (a^2 + d^2 + z^2)^1.5``; its phase is a per-coil constant plus a smooth linear
    ramp across the loop (no branch cut: real sensitivities have smooth phase).

    Args:
        coils: C >= 1 (the anterior array gets the larger half).
        size: (H, W).
        rng: private generator (positions, jitter, phases).
        body: half-axes (x, y) of the body ellipse relative to the half FOV.
        loop_radius: loop radius (half-FOV units).

    Returns:
        (C, 1, H, W) complex64, ``sum_c |S_c|^2 = 1``.
    """
    if coils < 1:
        raise ConfigError(f"surface_array_maps: coils must be >= 1, got {coils}")
    h, w = size
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    rot = rng.uniform(0, 2 * math.pi)
    xr = x * math.cos(rot) + y * math.sin(rot)
    yr = -x * math.sin(rot) + y * math.cos(rot)
    n_ant = (coils + 1) // 2
    rows = [(-1.0, n_ant), (1.0, coils - n_ant)]
    maps = []
    for side, n in rows:
        if n == 0:
            continue
        xs = np.linspace(-0.75, 0.75, n) if n > 1 else np.zeros(1)
        for cx in xs:
            cx = body[0] * (cx + rng.uniform(-0.08, 0.08))
            cy = side * body[1] * rng.uniform(0.95, 1.15)
            a = loop_radius * rng.uniform(0.8, 1.2)
            z = rng.uniform(0.05, 0.2)
            d2 = (xr - cx) ** 2 + (yr - cy) ** 2
            mag = a ** 2 / (a ** 2 + d2 + z ** 2) ** 1.5
            # smooth phase: a per-coil constant plus a gentle ramp across the loop (no branch cut)
            ramp = rng.uniform(0.5, 1.5) * side
            phase = rng.uniform(-math.pi, math.pi) + ramp * ((xr - cx) + 0.5 * (yr - cy))
            maps.append(mag * np.exp(1j * phase))
    out = _normalise(np.stack(maps)[:, None])
    return torch.from_numpy(out.astype(np.complex64))


def compress_maps(maps: torch.Tensor, n_virtual: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SVD-compress coil maps to ``n_virtual`` virtual coils and renormalise them.

    The compressed array sees ``A S x = S' (g x)`` with ``S' = A S / g`` and
    ``g = sqrt(sum_c |(A S)_c|^2) <= 1``: the image gains the smooth gain g, exactly as
    a scanner's compressed data do once maps are re-estimated from them.

    Args:
        maps: (C, 1, H, W) complex, ``sum_c |S_c|^2 = 1``.
        n_virtual: 1 <= n_virtual <= C.

    Returns:
        (maps' (n_virtual, 1, H, W) normalised, gain g (1, H, W) real).
    """
    from ..coils import coil_compress

    small, _, _ = coil_compress(maps, n_virtual)
    gain = (small.abs() ** 2).sum(dim=0).sqrt().clamp_min(1e-6)
    return (small / gain).to(torch.complex64), gain[0].to(torch.float32)


def random_coil_maps(size: tuple[int, int], rng: np.random.Generator, coils: tuple[int, int] = (8, 16),
                     p_birdcage: float = 0.3, p_compress: float = 0.2) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Draw a coil geometry for one training item.

    Args:
        size: (H, W).
        rng: private generator.
        coils: inclusive range of the coil count C.
        p_birdcage: probability of a birdcage ring instead of surface arrays.
        p_compress: probability of simulating 4-10 more coils and SVD-compressing to C.

    Returns:
        (maps (C, 1, H, W) complex64 with ``sum |S|^2 = 1``, gain (1, H, W) that the image
        must be multiplied by when the array was compressed, else None).
    """
    c = int(rng.integers(coils[0], coils[1] + 1))
    compress = rng.uniform() < p_compress
    n = c + int(rng.integers(4, 11)) if compress else c
    if rng.uniform() < p_birdcage:
        maps = birdcage_maps(n, size, rng, ring=rng.uniform(1.1, 1.6), height=rng.uniform(0.5, 0.9),
                             twist=rng.uniform(0.5, 1.5))
    else:
        maps = surface_array_maps(n, size, rng)
    if not compress:
        return maps, None
    return compress_maps(maps, c)


def real_cine_surface_sample(path, coils: int, snr_db: float, seed: int, size: tuple[int, int],
                             n_frames: int | None = None) -> CineSample:
    """A real magnitude series as multi-coil k-space seen through surface arrays (:func:`surface_array_maps`).

    :func:`~cinerecon.data.simulate.real_cine_to_sample` gives the noise-free complex image
    (its synthetic phase), which is then sensed by the anterior / posterior loop arrays and
    given complex noise of ``snr_db``; the maps and noise come from the private generator
    ``default_rng([seed, 7])``.

    Args:
        path: a real ``.npz`` series.
        coils: C.
        snr_db: added-noise SNR in dB.
        seed: seed of phase, maps and noise.
        size: (H, W) of the images.
        n_frames: frames picked evenly over the cycle (None: all).

    Returns:
        CineSample with fully sampled kspace (C, T, H, W), maps (C, 1, H, W), target (T, H, W).
    """
    clean = real_cine_to_sample(path, coils=coils, snr_db=math.inf, seed=seed, size=size, n_frames=n_frames)
    rng = np.random.default_rng([seed, 7])
    maps = surface_array_maps(coils, tuple(size), rng)
    image = clean.target.numpy()
    return image_to_sample(image, maps, noise_sigma(image, snr_db), rng, clean.meta)
