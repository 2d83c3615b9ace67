"""Centred orthonormal 2D FFTs on native complex tensors.

The k-space centre (DC) sits at index ``n // 2`` of each transformed axis, as in
CMRxRecon and fastMRI. Both transforms are unitary (``norm="ortho"``).
"""

from __future__ import annotations

import torch

DIMS = (-2, -1)


def fft2c(x: torch.Tensor, dim: tuple[int, int] = DIMS) -> torch.Tensor:
    """Centred orthonormal forward FFT over ``dim``.

    Args:
        x: complex tensor (..., H, W) in image space.
        dim: the two spatial axes.

    Returns:
        Complex tensor of the same shape in centred k-space.
    """
    x = torch.fft.ifftshift(x, dim=dim)
    x = torch.fft.fftn(x, dim=dim, norm="ortho")
    return torch.fft.fftshift(x, dim=dim)


def ifft2c(k: torch.Tensor, dim: tuple[int, int] = DIMS) -> torch.Tensor:
    """Centred orthonormal inverse FFT over ``dim``.

    Args:
        k: complex tensor (..., H, W) in centred k-space.
        dim: the two spatial axes.

    Returns:
        Complex tensor of the same shape in image space.
    """
    k = torch.fft.ifftshift(k, dim=dim)
    k = torch.fft.ifftn(k, dim=dim, norm="ortho")
    return torch.fft.fftshift(k, dim=dim)


def fft1c(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred orthonormal 1D FFT along ``dim`` (e.g. the temporal axis for x-f sparsity)."""
    x = torch.fft.ifftshift(x, dim=dim)
    x = torch.fft.fft(x, dim=dim, norm="ortho")
    return torch.fft.fftshift(x, dim=dim)


def ifft1c(k: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred orthonormal 1D inverse FFT along ``dim``."""
    k = torch.fft.ifftshift(k, dim=dim)
    k = torch.fft.ifft(k, dim=dim, norm="ortho")
    return torch.fft.fftshift(k, dim=dim)
