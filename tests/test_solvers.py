import pytest
import torch

from cinerecon.errors import ConfigError
from cinerecon.solvers import conjugate_gradient


def _hpd(b, n, seed, cond=10.0):
    """Batch of Hermitian positive definite matrices (B, n, n) complex128 with condition number ~cond."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(b, n, n, dtype=torch.complex128, generator=g))
    ev = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n, dtype=torch.float64)
    ev = ev * (1 + torch.arange(b, dtype=torch.float64)[:, None])  # different spectra per sample
    return q @ torch.diag_embed(ev.to(torch.complex128)) @ q.mH


def _mv(a):
    return lambda x: (a @ x.unsqueeze(-1)).squeeze(-1)


def test_cg_matches_linalg_solve_batched():
    b, n = 3, 12
    a = _hpd(b, n, 0)
    rhs = torch.randn(b, n, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    x = conjugate_gradient(_mv(a), rhs, iters=50, tol=1e-12)
    ref = torch.linalg.solve(a, rhs)
    assert torch.allclose(x, ref, atol=1e-9, rtol=0)


def test_cg_multi_axis_samples_and_x0():
    # a (B, 2, 3) shaped unknown: the operator acts on the flattened trailing axes
    b, n = 2, 6
    a = _hpd(b, n, 2)
    rhs = torch.randn(b, 2, 3, dtype=torch.complex128)
    op = lambda x: _mv(a)(x.reshape(b, n)).reshape(b, 2, 3)  # noqa: E731
    x0 = torch.randn_like(rhs)
    x = conjugate_gradient(op, rhs, x0=x0, iters=30, tol=1e-13)
    ref = torch.linalg.solve(a, rhs.reshape(b, n)).reshape(b, 2, 3)
    assert torch.allclose(x, ref, atol=1e-9, rtol=0)


def test_cg_batch_consistency_per_sample_steps():
    a = _hpd(2, 10, 3, cond=100.0)
    rhs = torch.randn(2, 10, dtype=torch.complex128, generator=torch.Generator().manual_seed(4))
    joint = conjugate_gradient(_mv(a), rhs, iters=4, tol=0.0)
    single = torch.cat([conjugate_gradient(_mv(a[i:i + 1]), rhs[i:i + 1], iters=4, tol=0.0) for i in range(2)])
    assert torch.allclose(joint, single, atol=1e-12)
    # after 4 of 10 steps the ill-conditioned systems are not solved yet (iters is honoured)
    assert not torch.allclose(joint, torch.linalg.solve(a, rhs), atol=1e-3)


def test_cg_semidefinite_and_zero_rhs():
    # projector onto the first 3 coordinates; b in its range -> x = b; zero rhs -> zero, no NaN
    p = torch.zeros(2, 5, 5, dtype=torch.complex128)
    p[:, :3, :3] = torch.eye(3)
    rhs = torch.zeros(2, 5, dtype=torch.complex128)
    rhs[0, :3] = torch.tensor([1 + 2j, -1, 0.5j])
    x = conjugate_gradient(_mv(p), rhs, iters=10, tol=1e-10)
    assert torch.isfinite(torch.view_as_real(x)).all()
    assert torch.allclose(x, rhs, atol=1e-12)


def test_cg_gradient_matches_solve():
    b, n = 2, 8
    a = _hpd(b, n, 5)
    g = torch.Generator().manual_seed(6)
    rhs = torch.randn(b, n, dtype=torch.complex128, generator=g)
    w = torch.randn(b, n, dtype=torch.complex128, generator=g)
    scale = torch.tensor(1.3, dtype=torch.float64)

    def loss(solver):
        r = rhs.clone().requires_grad_(True)
        s = scale.clone().requires_grad_(True)
        x = solver(r, s)
        out = (w.conj() * x).real.sum() + x.abs().pow(2).sum()
        gr, gs = torch.autograd.grad(out, (r, s))
        return gr, gs

    def op(s):
        return lambda x: s * _mv(a)(x) + 0.1 * x

    cg = loss(lambda r, s: conjugate_gradient(op(s), r, iters=60, tol=0.0))
    ref = loss(lambda r, s: torch.linalg.solve(s * a + 0.1 * torch.eye(n), r))
    assert torch.allclose(cg[0], ref[0], atol=1e-8)
    assert torch.allclose(cg[1], ref[1], atol=1e-8)


def test_cg_float32_real_and_bad_args():
    a = _hpd(1, 4, 7).real.float() + 5 * torch.eye(4)
    a = (a + a.mT) / 2
    rhs = torch.randn(1, 4)
    x = conjugate_gradient(_mv(a), rhs, iters=20, tol=1e-7)
    assert torch.allclose(x, torch.linalg.solve(a, rhs), atol=1e-4)
    with pytest.raises(ConfigError, match="iters"):
        conjugate_gradient(_mv(a), rhs, iters=-1)
    with pytest.raises(ConfigError, match="x0 shape"):
        conjugate_gradient(_mv(a), rhs, x0=torch.zeros(2, 4))
