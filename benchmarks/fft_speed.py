"""Centred FFTs, the SENSE normal operator and data consistency against their plain forms.

Two changes are measured, each against the package without it, in this process on the same
inputs:

* **phase ramps**: ``cinerecon.fft`` computes ``fftshift(fft(ifftshift(x)))`` as two
  element-wise phase ramps around the FFT, and ``SenseOp`` folds those ramps into its maps and
  mask; the reference ("shift-based") is the definition itself, with ``torch.fft.fftshift`` and
  ``ifftshift`` (``torch.roll`` copies), and the SENSE operator as the plain composition
  ``M fft2c(S x)``;
* **line-mask normal operator**: ``SenseOp.gram`` (A^H A) of a mask of whole readout lines
  needs FFTs along W only, in cache-sized chunks of rows, and the DC steps use it
  (S^H S x - A^H A x + A^H k0, with A^H k0 computed once per forward pass); the reference
  ("2D normal") is ``adjoint(forward(x))`` and the DC steps through the full coil k-space
  (``expand``, replace, ``reduce``), the package before this change.

Every ratio is reference time / ours (median of ``--repeats`` calls after one warm-up) and
every result is checked against the reference. Rows that use both changes (CG-SENSE, L+S, the
shipped CRUNet-MR) print both ratios: against "2D normal" (the ramps kept) and against
"shift-based" (neither change).

Measured: the centred 2D FFT and its inverse on multi-coil cine tensors (CMRxRecon SAX size
10 coils x 12 frames x 204 x 448, an odd-sized one, and 128 x 128); the SENSE operator's
forward + adjoint; A^H A; hard DC; CG-SENSE (10 iterations); L+S (the paper's start and
threshold, up to 50 iterations); and the shipped CRUNet-MR (its L+S start and 5 cascades of
data consistency) on one SAX slice, where the FFTs are only part of the work.

The allocator is tuned at start-up as the ``cinerecon`` CLI does (``--system-malloc`` keeps
glibc's default, as a Python session that never ran the CLI has it).

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fft_speed.py --threads 1
    .venv/bin/python benchmarks/fft_speed.py --threads 1 --skip-model   # without the CRUNet-MR call
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

import cinerecon.fft as cfft
import cinerecon.runtime as runtime
import cinerecon.models.unrolled as unrolled
from cinerecon.classical.cg_sense import cg_sense
from cinerecon.classical.lowrank_sparse import lplus_s
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.operators import SenseOp


def shift_based(x: torch.Tensor, dims: tuple[int, ...], inverse: bool) -> torch.Tensor:
    """The definition: ``fftshift(fftn(ifftshift(x)))`` (or ``ifftn``), orthonormal."""
    transform = torch.fft.ifftn if inverse else torch.fft.fftn
    x = torch.fft.ifftshift(x, dim=dims)
    return torch.fft.fftshift(transform(x, dim=dims, norm="ortho"), dim=dims)


def _plain_expand(op: SenseOp, x: torch.Tensor) -> torch.Tensor:
    return cfft.fft2c(op.maps * x.unsqueeze(1))


def _plain_reduce(op: SenseOp, k: torch.Tensor) -> torch.Tensor:
    return (op.maps.conj() * cfft.ifft2c(k)).sum(dim=1)


def _plain_mask(op: SenseOp, k: torch.Tensor) -> torch.Tensor:
    return k if op.mask is None else k * op.mask


def _plain_forward(op: SenseOp, x: torch.Tensor) -> torch.Tensor:
    return _plain_mask(op, _plain_expand(op, x))


def _plain_adjoint(op: SenseOp, k: torch.Tensor) -> torch.Tensor:
    return _plain_reduce(op, _plain_mask(op, k))


PLAIN_SENSE = {"expand": _plain_expand, "reduce": _plain_reduce, "forward": _plain_forward,
               "adjoint": _plain_adjoint, "H": _plain_adjoint}
"""The SENSE operator as it was: ``M fft2c(S x)`` and ``S^H ifft2c(M k)``, no ramps folded in."""


def _plain_gram(op: SenseOp, x: torch.Tensor) -> torch.Tensor:
    return op.adjoint(op.forward(x))


def _kspace_hard_dc(x, k0, op, adjoint_k0=None):
    return _kspace_dc(x, k0, op, float("inf"))


def _kspace_soft_dc(x, k0, op, lam, adjoint_k0=None):
    return _kspace_dc(x, k0, op, lam)


def _kspace_dc(x, k0, op, lam):
    """The DC step through the full coil k-space: expand, replace the sampled entries, reduce."""
    k = op.expand(x)
    m = op.mask
    if lam == float("inf"):
        return op.reduce(k - m * k + m * k0)
    lam = torch.as_tensor(lam, device=k.device, dtype=k.real.dtype)
    return op.reduce((1 - m) * k + m * (k + lam * k0) / (1 + lam))


@contextmanager
def two_d_normal() -> Iterator[None]:
    """Inside the block: A^H A as ``adjoint(forward(x))`` and the DC steps of the unrolled models
    through the full coil k-space, i.e. the package before the line-mask normal operator."""
    saved = SenseOp.gram, unrolled.hard_dc, unrolled.soft_dc
    SenseOp.gram, unrolled.hard_dc, unrolled.soft_dc = _plain_gram, _kspace_hard_dc, _kspace_soft_dc
    try:
        yield
    finally:
        SenseOp.gram, unrolled.hard_dc, unrolled.soft_dc = saved


@contextmanager
def reference_ffts() -> Iterator[None]:
    """Inside the block: every centred FFT computed by :func:`shift_based`, the SENSE operator
    as the plain composition (:data:`PLAIN_SENSE`) and :func:`two_d_normal`, i.e. the package
    before both changes."""
    ours, methods = cfft._centred, {name: getattr(SenseOp, name) for name in PLAIN_SENSE}
    cfft._centred = shift_based
    for name, fn in PLAIN_SENSE.items():
        setattr(SenseOp, name, fn)
    try:
        with two_d_normal():
            yield
    finally:
        cfft._centred = ours
        for name, fn in methods.items():
            setattr(SenseOp, name, fn)


REFERENCES = {"shift-based": reference_ffts, "2D normal": two_d_normal}


def timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    """Median wall seconds of ``repeats`` calls after one warm-up, and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def compare(name: str, fn: Callable[[], torch.Tensor], repeats: int,
            references: tuple[str, ...] = ("shift-based",)) -> list[float]:
    """Time ``fn`` with each reference (:data:`REFERENCES`) and with ours; print and return the ratios."""
    t_ours, out = timed(fn, repeats)
    ratios = []
    for r in references:
        with REFERENCES[r]():
            t_ref, ref = timed(fn, repeats)
        err = float((out - ref).abs().max() / ref.abs().max().clamp(min=1e-30))
        ratios.append(t_ref / t_ours)
        print(f"{name:58s} {r:>11s} {t_ref * 1e3:9.1f} ms   ours {t_ours * 1e3:9.1f} ms   "
              f"{ratios[-1]:5.2f}x   max rel. difference {err:.1e}", flush=True)
    return ratios


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-model", action="store_true", help="leave out the shipped CRUNet-MR call")
    p.add_argument("--small", action="store_true", help="tiny sizes (a smoke test of the script)")
    p.add_argument("--system-malloc", action="store_true",
                   help="keep glibc's default allocator (as a Python session that never ran the CLI has it)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # as the CLI does at start-up; with the system allocator every multi-coil temporary over
    # glibc's mmap threshold is page-faulted in afresh, which slows both sides (more so the reference)
    allocator = "system allocator (--system-malloc)" if args.system_malloc else runtime.tune_cpu_allocator()
    print(f"# centred FFTs: phase ramps (ours) vs fftshift/ifftshift (reference); {args.threads} thread(s), "
          f"median of {args.repeats}; {allocator}")
    c, t, h, w = (4, 3, 32, 48) if args.small else (10, 12, 204, 448)
    for shape in ((1, c, t, h, w), (1, c, t, h + 1, w - 1), (1, c, t, 128 // (4 if args.small else 1), 128 // (4 if args.small else 1))):
        x = torch.randn(shape, dtype=torch.complex64)
        compare(f"fft2c  {'x'.join(map(str, shape))}", lambda: cfft.fft2c(x), args.repeats)
        compare(f"ifft2c {'x'.join(map(str, shape))}", lambda: cfft.ifft2c(x), args.repeats)
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(1, c, 1, h, w, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = make_mask(MaskSpec("equispaced_acs", 8, 8 if args.small else 24), t, w, seed=0)[None]
    image = torch.randn(1, t, h, w, dtype=torch.complex64, generator=g)
    op = SenseOp(maps, mask)
    kspace = op.forward(image)
    compare(f"SENSE forward + adjoint, {c} x {t} x {h} x {w}", lambda: op.adjoint(op.forward(image)), args.repeats)
    both = ("2D normal", "shift-based")
    compare(f"A^H A, R = 8 line mask, {c} x {t} x {h} x {w}", lambda: op.gram(image), args.repeats, both)
    adjoint_k0 = op.adjoint(kspace)  # computed once per forward pass by the unrolled models
    compare("hard DC, A^H k0 given (as in the unrolled models)",
            lambda: unrolled.hard_dc(image, kspace, op, adjoint_k0), args.repeats, both)
    compare("CG-SENSE, 10 iterations, R = 8", lambda: cg_sense(kspace, mask, maps, iters=10),
            max(1, args.repeats // 2), both)
    compare("L+S (paper's start and threshold, <= 50 iterations), R = 8",
            lambda: lplus_s(kspace, mask, maps, lam_l=0.03, start="zero_filled"), 1, both)
    if not args.skip_model:
        from cinerecon.models import load_pretrained

        model = load_pretrained("crunet")
        with torch.no_grad():
            compare("shipped CRUNet-MR (L+S start, 5 cascades), one SAX slice",
                    lambda: model(kspace, mask, maps), 1, both)
    return 0


if __name__ == "__main__":
    sys.exit(main())
