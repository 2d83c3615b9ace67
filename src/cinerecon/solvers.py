"""Iterative solvers on native complex tensors.

:func:`conjugate_gradient` solves ``A x = b`` for a Hermitian positive (semi-)definite
linear operator ``A`` given as a callable. It is batched over the first axis (each
sample has its own step sizes) and differentiable by plain autograd through the
iterations, so it can serve as a data-consistency layer inside a network.

Early stopping reads a convergence test to the host, which on an accelerator stalls the
stream until all queued work is done. :func:`may_stop_early` therefore allows it on the CPU
only; elsewhere the iterative methods (here and in
:mod:`cinerecon.classical.lowrank_sparse`) run their fixed maximum of iterations and freeze
converged batch items with ``torch.where``, which gives the same result.
"""

from __future__ import annotations

from typing import Callable

import torch

from .errors import ConfigError


#: Test hook: ``True`` takes the accelerator code path (no host reads) on the CPU as well.
_NO_HOST_SYNC = False


def may_stop_early(t: torch.Tensor) -> bool:
    """Whether an iterative method may read its convergence test on ``t`` to stop early.

    Only on the CPU, where reading a value costs nothing. On other devices each read waits
    for the queued kernels, so methods run all their iterations instead; their converged
    items take zero (or frozen) steps, so the result does not depend on this choice.
    """
    return t.device.type == "cpu" and not _NO_HOST_SYNC


def _batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of <a, b> = sum(conj(a) * b) per sample, shape (B,)."""
    prod = a.conj() * b if a.is_complex() else a * b
    return prod.reshape(prod.shape[0], -1).sum(dim=1).real


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a (B,) vector so that it broadcasts against ``like`` (B, ...)."""
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def conjugate_gradient(
    apply_a: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    x0: torch.Tensor | None = None,
    iters: int = 10,
    tol: float = 1e-6,
) -> torch.Tensor:
    """Solve ``A x = b`` by conjugate gradients, batched over axis 0.

    Each sample ``b[i]`` is an independent system: step sizes alpha and beta are
    computed per sample from inner products over all remaining axes. Iteration stops
    after ``iters`` steps or once every sample has ``||r|| <= tol * ||b||`` (the latter on
    the CPU only, see :func:`may_stop_early`; elsewhere all ``iters`` steps run). Samples
    that have converged (or whose search direction vanishes) take zero steps, so a
    semi-definite ``A`` with ``b`` in its range is handled. No operation is in place,
    so gradients flow to ``b``, ``x0`` and any parameters used inside ``apply_a``.

    Args:
        apply_a: the Hermitian positive (semi-)definite operator, mapping a tensor of
            the shape of ``b`` to the same shape, acting on each sample independently.
        b: right-hand side (B, ...), real or complex.
        x0: initial guess of the shape of ``b``; zeros when ``None``.
        iters: maximum number of iterations (>= 0).
        tol: relative residual tolerance; 0 runs exactly ``iters`` iterations.

    Returns:
        The approximate solution x, shape of ``b``.
    """
    if iters < 0:
        raise ConfigError(f"conjugate_gradient: iters must be >= 0, got {iters}")
    if b.ndim < 1:
        raise ConfigError(f"conjugate_gradient: b needs a batch axis, got shape {tuple(b.shape)}")
    if x0 is not None and x0.shape != b.shape:
        raise ConfigError(f"conjugate_gradient: x0 shape {tuple(x0.shape)} differs from b {tuple(b.shape)}")
    if x0 is None:
        x = torch.zeros_like(b)
        r = b
    else:
        x = x0
        r = b - apply_a(x0)
    p = r
    rs = _batch_dot(r, r)
    b_norm2 = _batch_dot(b, b)
    stop2 = (tol ** 2) * b_norm2
    tiny = torch.finfo(rs.dtype).tiny
    early = tol > 0 and may_stop_early(b)
    for _ in range(iters):
        # the only host read: on the CPU, when early stopping is asked for. Once every sample
        # has converged, further steps have alpha = beta = 0 and leave x unchanged, so
        # running them (the accelerator path) gives the same x.
        if early and bool((rs <= stop2).all()):
            break
        ap = apply_a(p)
        pap = _batch_dot(p, ap)
        active = (pap > tiny) & (rs > stop2)
        alpha = torch.where(active, rs / torch.where(active, pap, torch.ones_like(pap)), torch.zeros_like(pap))
        x = x + _per_sample(alpha, x) * p
        r = r - _per_sample(alpha, r) * ap
        rs_new = _batch_dot(r, r)
        ok = active & (rs > tiny)
        beta = torch.where(ok, rs_new / torch.where(ok, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = r + _per_sample(beta, p) * p
        rs = torch.where(active, rs_new, rs)
    return x
