"""Shared fixtures: small problems built in memory; paths to ../shared assets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GOLDEN = SHARED / "reference" / "crunet_golden.pt"
REAL_CINE_DIR = SHARED / "data" / "real_cine"


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
