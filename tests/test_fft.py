"""Centred FFTs (phase ramps instead of shifts) against NumPy's fftshift / ifftshift definition."""

import numpy as np
import pytest
import torch

from cinerecon.fft import fft1c, fft2c, ifft1c, ifft2c


def _np_centred(x: np.ndarray, axes: tuple[int, ...], inverse: bool) -> np.ndarray:
    f = np.fft.ifftn if inverse else np.fft.fftn
    return np.fft.fftshift(f(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


@pytest.mark.parametrize("shape,axes", [((2, 3, 8, 6), (-2, -1)), ((3, 7, 9), (-2, -1)), ((5, 4, 6), (0, 2)),
                                        ((2, 1, 5), (-2, -1))])
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_centred_2d_ffts_equal_the_shift_definition(shape, axes, dtype):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, dtype=dtype, generator=g)
    tol = 1e-12 if dtype == torch.complex128 else 2e-6
    for ours, inverse in ((fft2c, False), (ifft2c, True)):
        ref = _np_centred(x.numpy().astype(np.complex128), axes, inverse)
        out = ours(x, dim=axes)
        assert out.dtype == dtype and out.shape == x.shape
        np.testing.assert_allclose(out.numpy(), ref, atol=tol * np.abs(ref).max())
    assert torch.allclose(ifft2c(fft2c(x, axes), axes), x, atol=10 * tol)


@pytest.mark.parametrize("n", [1, 6, 7])
def test_centred_1d_ffts_and_real_input(n):
    x = torch.randn(3, n, 4, dtype=torch.float64)
    for ours, inverse in ((fft1c, False), (ifft1c, True)):
        out = ours(x, dim=1)
        assert out.dtype == torch.complex128  # real input becomes complex of the same precision
        np.testing.assert_allclose(out.numpy(), _np_centred(x.numpy(), (1,), inverse), atol=1e-12)
    assert fft2c(x.float()).dtype == torch.complex64


def test_centred_fft_input_untouched_and_gradients_exact():
    x = torch.randn(2, 3, 6, 5, dtype=torch.complex128, requires_grad=True)
    before = x.detach().clone()
    fft2c(x)
    assert torch.equal(x.detach(), before)  # the in-place ramp acts on the FFT's own output only
    assert torch.autograd.gradcheck(fft2c, (x,))
    assert torch.autograd.gradcheck(lambda t: ifft1c(t, 1), (x,))


def test_ramps_cached_under_inference_mode_still_serve_autograd():
    """The first call may come under torch.inference_mode (reconstruction); the cached ramps must
    still work in a later training graph (the 1D transforms use them without a copy)."""
    with torch.inference_mode():
        fft1c(torch.randn(2, 13, 4, dtype=torch.complex64), 1)
        fft2c(torch.randn(2, 13, 9, dtype=torch.complex64))
    x = torch.randn(2, 13, 9, dtype=torch.complex64, requires_grad=True)
    (fft1c(x, 1).abs().sum() + fft2c(x).abs().sum()).backward()
    assert x.grad is not None and bool(torch.isfinite(torch.view_as_real(x.grad)).all())


def test_public_ramps_are_copies_and_dims_are_checked():
    from cinerecon.fft import centring_ramps

    x = torch.randn(3, 7, dtype=torch.complex64)
    ref = fft1c(x, 1)
    before, after = centring_ramps((7,), False, torch.complex64, torch.device("cpu"), dims=(0,))
    before.mul_(0)
    after.mul_(0)  # the caller's copies: the cache is untouched
    assert torch.equal(fft1c(x, 1), ref)
    with pytest.raises(IndexError):
        fft1c(x, 2)
    with pytest.raises(IndexError):
        fft2c(x, dim=(-3, -1))
