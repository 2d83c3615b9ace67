import numpy as np
import pytest
import torch

from cinerecon.fft import fft1c, fft2c, ifft1c, ifft2c
from cinerecon.operators import CoilSensitivity, Mask, SenseOp, hard_dc, soft_dc
from conftest import random_problem


def _dot(a, b):
    return torch.vdot(a.flatten(), b.flatten())


def test_fft2c_matches_numpy_centred_orthonormal():
    x = torch.randn(3, 7, 6, dtype=torch.complex128)
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(fft2c(x).numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(ifft2c(fft2c(x)).numpy(), x.numpy(), atol=1e-12)
    np.testing.assert_allclose(ifft1c(fft1c(x, 0), 0).numpy(), x.numpy(), atol=1e-12)


def test_fft_dc_at_centre():
    x = torch.ones(8, 7, dtype=torch.complex128)
    k = fft2c(x)
    assert abs(k[4, 3]) == pytest.approx(np.sqrt(56))
    assert float(k.abs().sum() - k[4, 3].abs()) < 1e-9


@pytest.mark.parametrize("shape", [(1, 3, 4, 10, 9), (2, 2, 3, 7, 8)])
def test_sense_adjoint_complex128(shape):
    b, c, t, h, w = shape
    x, maps, mask = random_problem(b, c, t, h, w, dtype=torch.complex128)
    op = SenseOp(maps, mask)
    y = torch.randn(b, c, t, h, w, dtype=torch.complex128)
    lhs, rhs = _dot(op.forward(x), y), _dot(x, op.adjoint(y))
    assert abs(lhs - rhs) / abs(lhs) < 1e-12
    # gram is self-adjoint and positive semi-definite
    x2 = torch.randn_like(x)
    assert abs(_dot(op.gram(x), x2) - _dot(x, op.gram(x2))) < 1e-10 * abs(_dot(op.gram(x), x2))
    assert _dot(x, op.gram(x)).real >= 0


def test_coil_and_mask_adjoint():
    x, maps, mask = random_problem(2, 3, 4, 6, 5, dtype=torch.complex128)
    s = CoilSensitivity(maps)
    y = torch.randn(2, 3, 4, 6, 5, dtype=torch.complex128)
    assert abs(_dot(s.forward(x), y) - _dot(x, s.H(y))) < 1e-10
    m = Mask(mask)
    assert abs(_dot(m.forward(y), y.conj()) - _dot(y, m.H(y.conj()))) < 1e-10


def test_hard_dc_keeps_measured_and_soft_interpolates():
    x, maps, mask = random_problem(1, 4, 3, 8, 8, dtype=torch.complex128)
    op = SenseOp(maps, mask)
    k0 = op.forward(x)
    guess = torch.randn_like(x)
    out = hard_dc(guess, k0, op)
    # the coil k-space of the result equals the measurement where sampled (maps are unit sum-of-squares
    # so S^H S = I; the projection of F S out on sampled lines equals k0 up to the coil-space projection)
    assert torch.allclose(op.forward(hard_dc(x, k0, op)), k0, atol=1e-10)
    assert torch.allclose(soft_dc(guess, k0, op, 0.0), op.reduce(op.expand(guess)), atol=1e-10)
    assert torch.allclose(soft_dc(guess, k0, op, float("inf")), out)
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    assert torch.allclose(soft_dc(guess, k0, op, inf), out)  # a tensor holding inf: hard DC, not NaN
    assert torch.allclose(soft_dc(guess, k0, op, inf, op.adjoint(k0)), out)  # the image-domain route
    lams = torch.full((1, 1, 3, 1, 1), float("inf"), dtype=torch.float64)  # several values: the k-space route
    assert torch.allclose(soft_dc(guess, k0, op, lams), out)
    big = soft_dc(guess, k0, op, 1e9)
    assert torch.allclose(big, out, atol=1e-6)


@pytest.mark.parametrize("h,w", [(8, 6), (7, 9)])
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_sense_op_with_folded_ramps_equals_the_plain_composition(h, w, dtype):
    """SenseOp folds the centred FFTs' phase ramps into maps and mask: same values as M fft2c(S x)
    and S^H ifft2c(M k), for even and odd sizes, a float64 mask, and gradients through the maps."""
    from cinerecon.fft import fft2c, ifft2c

    g = torch.Generator().manual_seed(h * w)
    b, c, t = 2, 3, 4
    maps = torch.randn(b, c, 1, h, w, dtype=dtype, generator=g)
    mask = (torch.rand(b, 1, t, 1, w, generator=g) > 0.5).double()
    x = torch.randn(b, t, h, w, dtype=dtype, generator=g)
    k = torch.randn(b, c, t, h, w, dtype=dtype, generator=g)
    op = SenseOp(maps, mask)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.complex64 else dict(atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(op.expand(x), fft2c(maps * x[:, None]), **tol)
    torch.testing.assert_close(op.forward(x), (fft2c(maps * x[:, None]) * mask).to(dtype), **tol)
    torch.testing.assert_close(op.reduce(k), (maps.conj() * ifft2c(k)).sum(1), **tol)
    torch.testing.assert_close(op.adjoint(k), (maps.conj() * ifft2c((k * mask).to(dtype))).sum(1), **tol)
    assert op.forward(x).dtype == dtype and op.adjoint(k).dtype == dtype
    if dtype == torch.complex128:
        m = maps.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda s: SenseOp(s, mask).gram(x), (m,))


def test_sense_op_broadcasting_cases_of_the_plain_composition():
    """Maps that broadcast over H and W, real maps, and a one-frame image with a multi-frame mask
    give what M fft2c(S x) and S^H ifft2c(M k) give; an operator is reusable across graphs."""
    g = torch.Generator().manual_seed(7)
    b, c, t, h, w = 1, 2, 3, 7, 5
    x1 = torch.randn(b, 1, h, w, dtype=torch.complex64, generator=g)
    mask = (torch.rand(1, 1, t, 1, w, generator=g) > 0.4).float()
    for maps in (torch.full((1, 1, 1, 1, 1), 0.7 + 0.2j, dtype=torch.complex64),
                 torch.rand(b, c, 1, h, w, generator=g),  # real
                 torch.randn(b, c, 1, h, w, dtype=torch.complex64, generator=g)):
        op = SenseOp(maps, mask)
        cm = maps.to(torch.complex64)
        torch.testing.assert_close(op.forward(x1), fft2c(cm * x1[:, None]) * mask, atol=1e-5, rtol=1e-5)
        k = op.forward(x1)
        torch.testing.assert_close(op.adjoint(k), (cm.conj() * ifft2c(k * mask)).sum(1), atol=1e-5, rtol=1e-5)
    leaf = torch.randn(b, c, 1, h, w, dtype=torch.complex64, generator=g, requires_grad=True)
    op = SenseOp(leaf, mask)
    with torch.no_grad():
        op.gram(x1)
    for _ in range(2):  # first use under no_grad, then two separate graphs
        op.gram(x1).abs().sum().backward()
    assert leaf.grad is not None
