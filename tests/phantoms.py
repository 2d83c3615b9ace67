"""Tiny multi-coil cine phantom for tests (no dependency on cinerecon.data.simulate).

A smooth static body ellipse with a few static structures, and a "heart" whose blood pool
(a disk inside a myocardial ring) beats sinusoidally over the frames; a smooth static phase;
smooth Gaussian coil profiles on a ring around the field of view with distinct phases,
normalised so that sum_c |S_c|^2 = 1 at every pixel. Everything is drawn from a private
``torch.Generator``; the global RNG is never touched.

Usage::

    from phantoms import cine_phantom
    kspace, maps, target = cine_phantom(coils=8, frames=8, size=(48, 48), seed=0)
"""

from __future__ import annotations

import math

import torch

from cinerecon.fft import fft2c
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.operators import SenseOp


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised coordinates y, x in [-1, 1) of shape (H, W) each (float64)."""
    y = (torch.arange(h, dtype=torch.float64) - h // 2) / (h / 2)
    x = (torch.arange(w, dtype=torch.float64) - w // 2) / (w / 2)
    return torch.meshgrid(y, x, indexing="ij")


def _soft_ellipse(y, x, cy, cx, ry, rx, edge):
    """Smooth indicator of an ellipse; ``edge`` is the edge width in normalised units."""
    r = torch.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
    return torch.sigmoid((1.0 - r) * min(ry, rx) / edge)  # distance to the edge over the edge width


def coil_maps(coils: int, size: tuple[int, int], generator: torch.Generator, width: float = 0.6) -> torch.Tensor:
    """Smooth complex coil maps (C, 1, H, W) complex64 with sum_c |S_c|^2 = 1 everywhere.

    Coil c is a Gaussian of standard deviation ``width`` (normalised units, FOV = 2) centred
    outside the field of view; smaller widths give more localised coils (higher usable R).
    """
    h, w = size
    y, x = _grid(h, w)
    rot = float(torch.rand((), generator=generator, dtype=torch.float64)) * 2 * math.pi
    maps = []
    for c in range(coils):
        ang = rot + 2 * math.pi * c / coils
        cy, cx = 1.2 * math.sin(ang), 1.2 * math.cos(ang)
        mag = torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
        ramp = torch.randn(2, generator=generator, dtype=torch.float64) * 0.5
        phase = ang + ramp[0] * y + ramp[1] * x
        maps.append(mag * torch.exp(1j * phase))
    s = torch.stack(maps)
    s = s / (s.abs() ** 2).sum(0, keepdim=True).sqrt()
    return s.unsqueeze(1).to(torch.complex64)


def cine_images(frames: int, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Complex cine (T, H, W) complex64 with a beating disk; magnitudes in about [0, 1]."""
    h, w = size
    y, x = _grid(h, w)
    edge = 0.4 * 2.0 / min(h, w)  # sigmoid scale 0.4 pixel: edges about 2 pixels wide
    u = lambda: float(torch.rand((), generator=generator, dtype=torch.float64))  # noqa: E731
    body = 0.35 * _soft_ellipse(y, x, 0.05 * (u() - 0.5), 0.05 * (u() - 0.5), 0.8, 0.7, edge)
    static = body.clone()
    for _ in range(3):  # static blobs (organs) inside the body
        cy, cx = 0.9 * (u() - 0.5), 0.9 * (u() - 0.5)
        static = static + (0.15 + 0.25 * u()) * _soft_ellipse(y, x, cy, cx, 0.1 + 0.1 * u(), 0.1 + 0.1 * u(), edge)
    hy, hx = 0.2 * (u() - 0.5), 0.2 * (u() - 0.5)
    r0 = 0.22 + 0.05 * u()
    phase0 = 2 * math.pi * u()
    phase = torch.exp(1j * math.pi * (0.3 * (u() - 0.5) * x + 0.3 * (u() - 0.5) * y + 0.2 * (x**2 - y**2)))
    out = []
    for t in range(frames):
        r = r0 * (1.0 + 0.25 * math.sin(2 * math.pi * t / frames + phase0))
        myo = _soft_ellipse(y, x, hy, hx, r + 0.08, r + 0.08, edge)
        pool = _soft_ellipse(y, x, hy, hx, r, r * 0.9, edge)
        img = static * (1 - myo) + 0.45 * myo * (1 - pool) + 1.0 * pool
        out.append(img * phase)
    return torch.stack(out).to(torch.complex64)


def cine_phantom(coils: int = 8, frames: int = 8, size: tuple[int, int] = (48, 48), seed: int = 0,
                 noise: float = 0.0, coil_width: float = 0.6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fully sampled multi-coil cine phantom.

    Args:
        coils: C.
        frames: T.
        size: (H, W).
        seed: seed of the private generator.
        noise: standard deviation of complex Gaussian noise added to k-space, relative to the
            RMS of the noiseless k-space (0 for none).
        coil_width: Gaussian width of the coil profiles (see :func:`coil_maps`).

    Returns:
        full_kspace (1, C, T, H, W) complex64, maps (1, C, 1, H, W) complex64 and
        target (1, T, H, W) complex64 = ``SenseOp(maps).reduce(full_kspace)``.
    """
    g = torch.Generator().manual_seed(seed)
    maps = coil_maps(coils, size, g, coil_width)[None]
    img = cine_images(frames, size, g)[None]
    k = fft2c(maps * img.unsqueeze(1))
    if noise > 0:
        rms = k.abs().pow(2).mean().sqrt()
        n = torch.randn(k.shape, dtype=torch.complex64, generator=g)
        k = k + noise * rms * n
    target = SenseOp(maps).reduce(k)
    return k, maps, target


def nmse(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Normalised mean squared error ||x - ref||^2 / ||ref||^2 over the whole tensor."""
    return float((x - ref).abs().pow(2).sum() / ref.abs().pow(2).sum())


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB of magnitudes, data range = max |ref|."""
    mse = (x.abs() - ref.abs()).pow(2).mean()
    return float(10 * torch.log10(ref.abs().max() ** 2 / mse))


def undersampled_cine(frames: int = 6, size: tuple[int, int] = (16, 16), coils: int = 4, kind: str = "time_varying_acs",
                      accel: int = 4, acs: int = 4, seed: int = 0):
    """:func:`cine_phantom` undersampled by ``make_mask(MaskSpec(kind, accel, acs), ...)``.

    Returns:
        kspace (1, C, T, H, W) complex64 (zero where not sampled), mask (1, 1, T|1, 1, W),
        maps (1, C, 1, H, W) complex64 and target (1, T, H, W) complex64.
    """
    full, maps, target = cine_phantom(coils=coils, frames=frames, size=size, seed=seed)
    mask = make_mask(MaskSpec(kind, accel, acs), frames, size[1], seed=seed)[None]
    return full * mask, mask, maps, target


def zero_filled_psnr(sample) -> float:
    """PSNR of the zero-filled SENSE image of an :func:`undersampled_cine` sample."""
    k, mask, maps, target = sample
    return psnr(SenseOp(maps, mask).adjoint(k), target)


def overfit(model, sample, steps: int, lr: float, loss=None) -> tuple[float, float]:
    """Train ``model`` with Adam on one :func:`undersampled_cine` sample; PSNR before and after.

    ``loss(out, target)`` defaults to the mean absolute complex error.
    """
    k, mask, maps, target = sample
    loss = loss or (lambda out, ref: (out - ref).abs().mean())
    with torch.no_grad():
        before = psnr(model(k, mask, maps), target)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss(model(k, mask, maps), target).backward()
        opt.step()
    with torch.no_grad():
        return before, psnr(model(k, mask, maps), target)
