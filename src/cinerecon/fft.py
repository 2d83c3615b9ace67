"""Centred orthonormal 2D FFTs on native complex tensors.

The k-space centre (DC) sits at index ``n // 2`` of each transformed axis, as in
CMRxRecon and fastMRI. Both transforms are unitary (``norm="ortho"``).

``fftshift(fft(ifftshift(x)))`` is computed without the two shifts: shifting by ``a`` before a
DFT of length N multiplies its output by a phase ramp, and shifting its output by ``b``
equals a ramp on its input, so with ``a = b = N // 2``

    fftshift(fft(ifftshift(x)))[k] = exp(2 pi i (k - b) a / N) * fft(x * exp(2 pi i b n / N))[k]

(the signs flip for the inverse; for even N both ramps are +-1). Two element-wise products
(the second in place, on the FFT's own output) replace two ``torch.roll`` copies, which on CPU
cost as much as the FFT itself: the centred 2D FFT of 10 coils x 12 frames x 204 x 448 takes
185 ms instead of 325-344 ms on one thread (``benchmarks/fft_speed.py``). The ramps are cached
per (size, direction, dtype, device). Real input is transformed as complex (complex128 for
float64, complex64 otherwise).
"""

from __future__ import annotations

import functools
import math

import torch

DIMS = (-2, -1)


@functools.lru_cache(maxsize=64)
def _ramps_1d(n: int, inverse: bool, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ramp, output ramp) of length ``n`` for a centred DFT, in ``dtype`` on ``device``.

    Cached and shared: built as normal tensors outside any autograd graph (even when the first
    call happens under ``torch.inference_mode``), and never modified in place by their users.
    """
    with torch.inference_mode(False), torch.no_grad():
        half = n // 2
        idx = torch.arange(n, dtype=torch.float64)
        sign = -1.0 if inverse else 1.0
        before = torch.exp(sign * 2j * math.pi * half * idx / n)
        after = torch.exp(sign * 2j * math.pi * (idx - half) * half / n)
        return before.to(dtype=dtype, device=device), after.to(dtype=dtype, device=device)


def _ramps(shape: torch.Size, dims: tuple[int, ...], inverse: bool, dtype: torch.dtype,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Input and output ramps over ``dims``, broadcastable to ``shape``."""
    before = after = None
    for d in dims:
        view = [1] * len(shape)
        view[d] = shape[d]
        b, a = (r.reshape(view) for r in _ramps_1d(shape[d], inverse, dtype, device))
        before, after = (b, a) if before is None else (before * b, after * a)
    return before, after


def centring_ramps(shape: torch.Size | tuple[int, ...], inverse: bool, dtype: torch.dtype, device: torch.device,
                   dims: tuple[int, ...] = DIMS) -> tuple[torch.Tensor, torch.Tensor]:
    """The phase ramps (before, after) of a centred FFT over ``dims``, broadcastable to ``shape``.

    ``fft2c(x) == torch.fft.fftn(x * before, dim=dims, norm="ortho") * after`` (with
    ``inverse=True`` the same for :func:`ifft2c` with ``ifftn``), so operators can fold them into
    their own element-wise products (:class:`~cinerecon.operators.SenseOp`).

    Args:
        shape: shape of the transformed tensor (or just its transformed axes, e.g. (H, W)).
        inverse: the inverse transform's ramps.
        dtype: complex dtype of the ramps.
        device: their device.
        dims: the transformed axes.

    Returns:
        (before, after), each with the sizes of ``shape`` along ``dims`` and 1 elsewhere; new
        tensors the caller may modify.
    """
    shape = torch.Size(shape)
    before, after = _ramps(shape, _axes(dims, len(shape)), inverse, dtype, device)
    return before.clone(), after.clone()


def _axes(dims: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """``dims`` as non-negative axes of an ``ndim``-dimensional tensor; IndexError when out of range."""
    for d in dims:
        if not -ndim <= d < ndim:
            raise IndexError(f"centred FFT: dimension {d} out of range for a tensor of {ndim} dimensions")
    return tuple(d % ndim for d in dims)


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """``dtype`` if complex, else the complex dtype real input is transformed in (complex128 for float64)."""
    if dtype.is_complex:
        return dtype
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _centred(x: torch.Tensor, dims: tuple[int, ...], inverse: bool) -> torch.Tensor:
    """``fftshift(fftn(ifftshift(x)))`` (or with ``ifftn``) over ``dims``, orthonormal, without shifts."""
    x = x.to(complex_dtype(x.dtype))
    dims = _axes(dims, x.ndim)
    before, after = _ramps(x.shape, dims, inverse, x.dtype, x.device)
    transform = torch.fft.ifftn if inverse else torch.fft.fftn
    out = transform(x * before, dim=dims, norm="ortho").mul_(after)
    # Over axes other than the last ones (e.g. the frames), the FFT returns its transformed axis
    # stored fastest; every later element-wise operation would inherit that layout (and an FFT
    # over W of it would copy), so return the standard one.
    return out if out.is_contiguous() else out.contiguous()


def fft2c(x: torch.Tensor, dim: tuple[int, int] = DIMS) -> torch.Tensor:
    """Centred orthonormal forward FFT over ``dim``.

    Args:
        x: tensor (..., H, W) in image space, complex (real input is transformed as complex).
        dim: the two spatial axes.

    Returns:
        Complex tensor of the same shape in centred k-space.
    """
    return _centred(x, tuple(dim), inverse=False)


def ifft2c(k: torch.Tensor, dim: tuple[int, int] = DIMS) -> torch.Tensor:
    """Centred orthonormal inverse FFT over ``dim``.

    Args:
        k: tensor (..., H, W) in centred k-space, complex (real input is transformed as complex).
        dim: the two spatial axes.

    Returns:
        Complex tensor of the same shape in image space.
    """
    return _centred(k, tuple(dim), inverse=True)


def fft1c(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred orthonormal 1D FFT along ``dim`` (e.g. the temporal axis for x-f sparsity)."""
    return _centred(x, (dim,), inverse=False)


def ifft1c(k: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred orthonormal 1D inverse FFT along ``dim``."""
    return _centred(k, (dim,), inverse=True)
