"""Shared fixtures: small problems built in memory; paths to ../shared assets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cinerecon.models import build_model
from cinerecon.operators import SenseOp

torch.set_num_threads(1)  # collection and module-level code run on one thread too

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GOLDEN = SHARED / "reference" / "crunet_golden.pt"
REAL_CINE_DIR = SHARED / "data" / "real_cine"


@pytest.fixture(autouse=True)
def one_thread():
    """Every test on one intra-op thread, restored afterwards (a test or script may change it).

    Test problems are tiny: more threads only add overhead (and stall badly on a loaded machine).
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def golden():
    """The authors' golden CRUNet-MR problem; skips when the file is absent."""
    if not GOLDEN.exists():
        pytest.skip(f"golden file {GOLDEN} not present")
    return torch.load(GOLDEN, weights_only=False)


@pytest.fixture
def real_cine_path():
    """Path to a real magnitude cine .npz; skips when absent."""
    files = sorted(REAL_CINE_DIR.glob("*.npz")) if REAL_CINE_DIR.exists() else []
    if not files:
        pytest.skip(f"no real cine series under {REAL_CINE_DIR}")
    return files[0]


def random_problem(b=1, c=3, t=4, h=10, w=9, seed=0, dtype=torch.complex64):
    """Random image, unit-norm coil maps and a line mask: (x, maps, mask)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, h, w, dtype=dtype, generator=g)
    maps = torch.randn(b, c, 1, h, w, dtype=dtype, generator=g)
    maps = maps / (maps.abs() ** 2).sum(1, keepdim=True).sqrt()
    mask = (torch.rand(b, 1, 1, 1, w, generator=g) > 0.5).to(x.real.dtype)
    return x, maps, mask


def random_kspace(b=1, c=3, t=4, h=10, w=9, seed=0):
    """Masked random k-space with :func:`random_problem`'s maps and mask: (kspace, mask, maps).

    The k-space (B, C, T, H, W) complex64 is drawn from torch's global RNG (seed it first);
    maps and mask come from ``random_problem(..., seed=seed)``.
    """
    _, maps, mask = random_problem(b=b, c=c, t=t, h=h, w=w, seed=seed)
    kspace = torch.randn(b, c, t, h, w, dtype=torch.complex64) * mask
    return kspace, mask, maps


def measured_problem(b=1, c=3, t=4, h=12, w=10, seed=0):
    """Sampled k-space of :func:`random_problem`'s image: (kspace, mask, maps), all seeded."""
    x, maps, mask = random_problem(b, c, t, h, w, seed=seed)
    return SenseOp(maps, mask).forward(x), mask, maps


def seeded_model(name, seed=0, **kwargs):
    """``build_model(name, **kwargs)`` in eval mode, initialised after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return build_model(name, **kwargs).eval()


def assert_image_output(out, shape):
    """A reconstruction of the given (B, T, H, W) shape, complex64 and finite everywhere."""
    assert out.shape == tuple(shape) and out.dtype == torch.complex64, (out.shape, out.dtype)
    assert torch.isfinite(torch.view_as_real(out)).all()


def assert_reconstructs_size(name, b, t, h, w, **kwargs):
    """The model on random masked three-coil k-space of any size gives a finite (B, T, H, W) image.

    Seeds torch's global RNG with 0, draws :func:`random_kspace`, then builds
    ``build_model(name, **kwargs)``.
    """
    torch.manual_seed(0)
    k, mask, maps = random_kspace(b=b, c=3, t=t, h=h, w=w)
    assert_image_output(build_model(name, **kwargs)(k, mask, maps), (b, t, h, w))


def assert_batch_consistent(model, kspace, mask, maps, rtol=1e-4, atol=1e-5):
    """The model on a batch equals the model on each sample alone (concatenated)."""
    with torch.no_grad():
        both = model(kspace, mask, maps)
        single = torch.cat([model(kspace[i:i + 1], mask[i:i + 1], maps[i:i + 1]) for i in range(kspace.shape[0])])
    torch.testing.assert_close(both, single, rtol=rtol, atol=atol)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, stderr) of ``cinerecon ARGV`` run in-process; argparse exits count too."""
    from cinerecon.cli import main

    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    return rc, capsys.readouterr().err


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module, imported once per session (the benchmarks are not a
    package; the module is registered before it runs because dataclasses look it up)."""
    import importlib.util
    import sys

    mod_name = f"cinerecon_bench_{name}"
    if mod_name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[mod_name]
            raise
    return sys.modules[mod_name]
