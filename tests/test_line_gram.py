"""A^H A of a line mask through FFTs along W only, and data consistency built on it.

Every result is compared with the definition written out with 2D centred FFTs
(``S^H ifft2c(M fft2c(S x))`` and the k-space form of the DC steps), not with the operator's
other methods.
"""

import pytest
import torch

import cinerecon.operators as operators
from cinerecon.fft import fft2c, ifft2c
from cinerecon.models.layers import CGDataConsistency, GradientStepDC
from cinerecon.operators import SenseOp, hard_dc, soft_dc


def _problem(b, c, t, h, w, dtype, mask_shape, seed=0, real_maps=False):
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(b, c, 1, h, w, generator=g, dtype=torch.float64).to(dtype.to_real()) if real_maps \
        else torch.randn(b, c, 1, h, w, dtype=dtype, generator=g)
    x = torch.randn(b, t, h, w, dtype=dtype, generator=g)
    mask = (torch.rand(mask_shape, generator=g) > 0.5).to(dtype.to_real())
    return x, maps, mask


def _gram_definition(x, maps, mask):
    """S^H F^-1 M F S x with 2D centred FFTs (mask applied on both sides, as adjoint(forward))."""
    cm = maps.to(x.dtype)
    k = fft2c(cm * x.unsqueeze(1))
    if mask is not None:
        k = k * mask * mask
    return (cm.conj() * ifft2c(k)).sum(1)


def _dc_definition(x, k0, maps, mask, lam):
    """Image of the DC-corrected coil k-space: sampled entries -> (k + lam k0) / (1 + lam) (lam = inf: k0)."""
    cm = maps.to(x.dtype)
    k = fft2c(cm * x.unsqueeze(1))
    new = k0 if lam == float("inf") else (k + lam * k0) / (1 + lam)
    k = (1 - mask) * k + mask * new
    return (cm.conj() * ifft2c(k)).sum(1)


TOL = {torch.complex64: dict(atol=2e-5, rtol=2e-5), torch.complex128: dict(atol=1e-11, rtol=1e-11)}

CASES = [  # (b, c, t, h, w), mask shape
    ((1, 3, 4, 10, 9), (1, 1, 1, 1, 9)),  # static line mask, odd W
    ((2, 2, 3, 7, 8), (2, 1, 3, 1, 8)),  # one time-varying line mask per item, odd H
    ((1, 4, 5, 12, 6), (5, 1, 6)),  # lower-rank line mask (T, 1, W)
    ((2, 3, 2, 6, 10), (10,)),  # a 1-D mask over W
]


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("shape,mask_shape", CASES)
@pytest.mark.parametrize("chunk_bytes", [1, None])
def test_line_mask_gram_equals_the_2d_definition(shape, mask_shape, dtype, chunk_bytes, monkeypatch):
    """Whole slice at once and one row per chunk (chunk_bytes=1) give S^H F^-1 M F S x."""
    if chunk_bytes is not None:
        monkeypatch.setattr(operators, "GRAM_CHUNK_BYTES", chunk_bytes)
    x, maps, mask = _problem(*shape, dtype, mask_shape)
    op = SenseOp(maps, mask)
    assert op.line_mask
    out = op.gram(x)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out, _gram_definition(x, maps, mask), **TOL[dtype])


def test_gram_with_real_maps_and_no_mask_and_a_2d_mask():
    x, maps, mask = _problem(1, 3, 4, 8, 6, torch.complex64, (1, 1, 1, 1, 6), real_maps=True)
    torch.testing.assert_close(SenseOp(maps, mask).gram(x), _gram_definition(x, maps, mask), **TOL[torch.complex64])
    torch.testing.assert_close(SenseOp(maps).gram(x), _gram_definition(x, maps, None), **TOL[torch.complex64])
    mask2d = (torch.rand(1, 1, 4, 8, 6, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    op = SenseOp(maps, mask2d)
    assert not op.line_mask
    torch.testing.assert_close(op.gram(x), _gram_definition(x, maps, mask2d), **TOL[torch.complex64])


def test_line_gram_gradients_match_the_definition(monkeypatch):
    """Gradients through the chunked path (w.r.t. the image and the maps) equal those of the definition."""
    monkeypatch.setattr(operators, "GRAM_CHUNK_BYTES", 1)
    x, maps, mask = _problem(2, 3, 3, 5, 6, torch.complex128, (2, 1, 3, 1, 6))
    w = torch.randn_like(x)
    grads = []
    for fn in (lambda a, s: SenseOp(s, mask).gram(a), lambda a, s: _gram_definition(a, s, mask)):
        a, s = x.clone().requires_grad_(True), maps.clone().requires_grad_(True)
        (fn(a, s) * w.conj()).real.sum().backward()
        grads.append((a.grad, s.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])
    xs, ms, mk = _problem(1, 2, 2, 3, 4, torch.complex128, (1, 1, 2, 1, 4), seed=1)
    assert torch.autograd.gradcheck(lambda s: SenseOp(s, mk).gram(xs), (ms.requires_grad_(True),))


@pytest.mark.parametrize("line", [True, False])
@pytest.mark.parametrize("given", [True, False])
@pytest.mark.parametrize("lam", [float("inf"), 0.0, 0.7, 1e3])
def test_dc_steps_equal_their_kspace_definition(line, given, lam):
    """hard_dc / soft_dc (and the learnable soft DC) equal the k-space replacement, for a line mask
    and a mask that varies along H, with A^H k0 given or not; maps not normalised."""
    mask_shape = (1, 1, 3, 1, 8) if line else (1, 1, 3, 6, 8)
    x, maps, mask = _problem(1, 4, 3, 6, 8, torch.complex128, mask_shape, seed=5)
    op = SenseOp(maps, mask)
    k0 = op.forward(torch.randn_like(x))
    adj = op.adjoint(k0) if given else None
    out = hard_dc(x, k0, op, adj) if lam == float("inf") else soft_dc(x, k0, op, lam, adj)
    torch.testing.assert_close(out, _dc_definition(x, k0, maps, mask, lam))
    if lam not in (0.0, float("inf")):  # a learnable lambda gets the gradient of the definition
        grads = []
        for use_op in (True, False):
            lt = torch.tensor(lam, dtype=torch.float64, requires_grad=True)
            y = soft_dc(x, k0, op, lt, adj) if use_op else _dc_definition(x, k0, maps, mask, lt)
            y.abs().sum().backward()
            grads.append(lt.grad)
        torch.testing.assert_close(grads[0], grads[1])


def test_baseline_dc_modules_equal_their_definitions():
    """GradientStepDC: x - eta A^H (A x - k0); CGDataConsistency: the same with A^H k0 given or not."""
    x, maps, mask = _problem(1, 3, 4, 6, 8, torch.complex128, (1, 1, 4, 1, 8), seed=2)
    op = SenseOp(maps, mask)
    k0 = op.forward(torch.randn_like(x))
    step = GradientStepDC(0.6).double()
    residual = fft2c(maps * x.unsqueeze(1)) * mask - k0
    ref = x - 0.6 * (maps.conj() * ifft2c(residual * mask)).sum(1)
    torch.testing.assert_close(step(x, k0, op), ref)
    torch.testing.assert_close(step(x, k0, op, op.adjoint(k0)), ref)
    cg = CGDataConsistency(0.5, 3).double()
    torch.testing.assert_close(cg(x, k0, op), cg(x, k0, op, op.adjoint(k0)))


@pytest.mark.parametrize("maps_shape", [(1, 1, 1, 1, 1), (1, 3, 1, 1, 16), (1, 3, 1, 12, 1)])
def test_maps_broadcast_over_h_or_w_in_chunks(maps_shape, monkeypatch):
    """Maps with a size-1 H or W axis broadcast in every chunk of rows (as in the 2D definition)."""
    monkeypatch.setattr(operators, "GRAM_CHUNK_BYTES", 1)
    g = torch.Generator().manual_seed(4)
    maps = torch.randn(maps_shape, dtype=torch.complex64, generator=g)
    x = torch.randn(1, 3, 12, 16, dtype=torch.complex64, generator=g)
    mask = (torch.rand(1, 1, 3, 1, 16, generator=g) > 0.5).float()
    op = SenseOp(maps, mask)
    full = maps.expand(1, maps_shape[1], 1, 12, 16)
    torch.testing.assert_close(op.gram(x), _gram_definition(x, full, mask), **TOL[torch.complex64])
    k0 = op.forward(torch.randn_like(x))
    torch.testing.assert_close(hard_dc(x, k0, op), _dc_definition(x, k0, full, mask, float("inf")),
                               **TOL[torch.complex64])


@pytest.mark.parametrize("line", [True, False])
def test_dc_with_a_weighted_mask_equals_the_kspace_definition(line):
    """The DC identity applies the mask once, so it holds for masks that are not {0, 1} too."""
    mask_shape = (1, 1, 3, 1, 8) if line else (1, 1, 3, 6, 8)
    x, maps, _ = _problem(1, 4, 3, 6, 8, torch.complex128, mask_shape, seed=6)
    mask = torch.rand(mask_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    op = SenseOp(maps, mask)
    k0 = torch.randn(1, 4, 3, 6, 8, dtype=torch.complex128) * mask
    for adj in (None, op.adjoint(k0)):
        torch.testing.assert_close(hard_dc(x, k0, op, adj), _dc_definition(x, k0, maps, mask, float("inf")))
        torch.testing.assert_close(soft_dc(x, k0, op, 0.4, adj), _dc_definition(x, k0, maps, mask, 0.4))


def test_soft_dc_with_one_lambda_per_item_keeps_the_kspace_route():
    x, maps, mask = _problem(2, 3, 3, 6, 8, torch.complex128, (2, 1, 3, 1, 8), seed=8)
    op = SenseOp(maps, mask)
    k0 = op.forward(torch.randn_like(x))
    lam = torch.tensor([0.3, 2.0], dtype=torch.float64).reshape(2, 1, 1, 1, 1)
    out = soft_dc(x, k0, op, lam, op.adjoint(k0))
    assert out.shape == x.shape
    for i in range(2):
        torch.testing.assert_close(out[i:i + 1], _dc_definition(x[i:i + 1], k0[i:i + 1], maps[i:i + 1],
                                                               mask[i:i + 1], float(lam[i])))
