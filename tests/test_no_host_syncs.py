"""The iterative initial images read no device values to the host off the CPU.

CG (:func:`cinerecon.solvers.conjugate_gradient`) and L+S stop early on the CPU only; on
other devices they run their fixed number of iterations and freeze converged items, which
gives the same result without stalling the stream. ``solvers._NO_HOST_SYNC`` takes that
device path on the CPU, so both paths are compared here and the device path's host reads
counted.
"""

from __future__ import annotations

import collections
import contextlib
import traceback
from pathlib import Path

import pytest
import torch

import cinerecon
import cinerecon.solvers as solvers
from cinerecon.classical.cg_sense import cg_sense
from cinerecon.classical.lowrank_sparse import lplus_s_decompose
from cinerecon.models import build_model
from cinerecon.solvers import conjugate_gradient
from conftest import measured_problem

PACKAGE = str(Path(cinerecon.__file__).resolve().parent)
#: Tensor methods that read a value to the host (as counted for the training loop).
READS = ("item", "tolist", "__bool__", "__float__", "__int__")


@contextlib.contextmanager
def device_path(on: bool = True):
    """Take the no-host-read (accelerator) path of the iterative methods on the CPU."""
    old, solvers._NO_HOST_SYNC = solvers._NO_HOST_SYNC, on
    try:
        yield
    finally:
        solvers._NO_HOST_SYNC = old


@contextlib.contextmanager
def count_reads():
    """Counter of host reads made from cinerecon's own files, keyed by (file, line, method)."""
    counts, saved = collections.Counter(), {}

    def counting(name):
        f = saved[name] = getattr(torch.Tensor, name)

        def g(self, *a, **k):
            caller = traceback.extract_stack(limit=2)[0]
            if str(Path(caller.filename).resolve()).startswith(PACKAGE):
                counts[(Path(caller.filename).name, caller.lineno, name)] += 1
            return f(self, *a, **k)
        return g

    try:
        for n in READS:
            setattr(torch.Tensor, n, counting(n))
        yield counts
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


def _cg_problem():
    """Three diagonal systems whose CG converges after 1, 3 and 8 steps (distinct eigenvalues)."""
    g = torch.Generator().manual_seed(0)
    diag = torch.stack([torch.full((8,), 2.0), torch.tensor([1.0, 2, 3] * 2 + [1, 2]),
                        torch.linspace(0.5, 4.0, 8)]).to(torch.float64)
    b = torch.complex(torch.randn(3, 8, generator=g, dtype=torch.float64),
                      torch.randn(3, 8, generator=g, dtype=torch.float64))
    calls = []

    def apply_a(v):
        calls.append(1)
        return diag * v
    return apply_a, b, diag, calls


def test_cg_device_path_equals_early_stopping_and_reads_nothing():
    apply_a, b, diag, calls = _cg_problem()
    ref = conjugate_gradient(apply_a, b, iters=30, tol=1e-10)
    early_calls = len(calls)
    assert early_calls <= 9  # stopped once all three had converged
    torch.testing.assert_close(ref, b / diag, rtol=1e-9, atol=1e-9)
    calls.clear()
    with device_path(), count_reads() as reads:
        out = conjugate_gradient(apply_a, b, iters=30, tol=1e-10)
    assert len(calls) == 30 and sum(reads.values()) == 0, (len(calls), reads)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_lplus_s_device_path_equals_early_stopping_and_reads_nothing():
    k, mask, maps = measured_problem(b=2, t=4, h=12, w=10, seed=3)
    k = torch.cat([k[:1], 3 * k[1:]])
    kw = dict(iters=40, tol=3e-3)
    ref = lplus_s_decompose(k, mask, maps, **kw)
    assert int(ref.iterations.max()) < kw["iters"], ref.iterations  # the CPU path stopped early
    with device_path(), count_reads() as reads:
        out = lplus_s_decompose(k, mask, maps, **kw)
    assert sum(reads.values()) == 0, reads
    assert torch.equal(out.iterations, ref.iterations)
    torch.testing.assert_close(out.low_rank, ref.low_rank, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.sparse, ref.sparse, rtol=0, atol=1e-6)


@pytest.mark.parametrize("initial", ["cg_sense", "lplus_s", "lplus_s_kt"])
def test_crunet_step_with_iterative_initial_image_reads_no_device_values(initial):
    """A CRUNet-MR forward + backward reads nothing to the host on the device path, same result."""
    k, mask, maps = measured_problem(b=2, t=3, h=16, w=16, seed=1)
    mask = mask.clone()
    mask[..., 6:10] = 1  # a 4-line calibration block, so "lplus_s" runs L+S
    k = k * mask

    def step():
        torch.manual_seed(0)
        model = build_model("crunet", chans=2, cascades=2, initial_image=initial).train()
        y = model(k, mask, maps)
        y.abs().pow(2).sum().backward()
        return y.detach(), [p.grad for p in model.parameters() if p.grad is not None]

    with count_reads() as cpu_reads:
        y_ref, g_ref = step()
    assert sum(cpu_reads.values()) > 0  # the CPU path does stop early (reads a flag per iteration)
    with device_path(), count_reads() as reads:
        y, g = step()
    assert sum(reads.values()) == 0, reads
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-6)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_cg_sense_device_path_equals_cpu_path():
    k, mask, maps = measured_problem(b=2, t=3, h=12, w=10, seed=2)
    ref = cg_sense(k, mask, maps, iters=50, tol=1e-4)
    with device_path():
        out = cg_sense(k, mask, maps, iters=50, tol=1e-4)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
