"""Classical methods give the same result up to the scale of the k-space (arbitrary scanner units).

``method(s * k) == s * method(k)`` for s from 1e-25 to 1e25 on a tiny simulated slice: before
the methods divided out a data scale, CG-SENSE returned zeros at x1e-20 / x1e20, L+S the
zero-filled image from x1e18 and GRAPPA an MKL error from x1e20. A power-of-two scale leaves
the result bit-identical; all-zero k-space still gives a finite (zero) image.
"""

from __future__ import annotations

import pytest
import torch

from cinerecon.classical import CLASSICAL
from cinerecon.classical.cg_sense import cg_sense
from cinerecon.classical.grappa import grappa_kspace
from cinerecon.classical.lowrank_sparse import lplus_s_decompose
from cinerecon.classical.view_sharing import view_sharing
from cinerecon.data.simulate import SimConfig, simulate_cine
from cinerecon.masks import MaskSpec, make_mask

METHODS = sorted(CLASSICAL)
SCALES = (1e-25, 1e25)


@pytest.fixture(scope="module")
def problem():
    """(kspace (2, 4, 4, 32, 32) undersampled, mask (1, 1, 4, 1, 32), maps (2, 4, 1, 32, 32)).

    Two items with different masks (static R = 4 with ACS; time-varying R = 4 with ACS) and a
    factor 7 between their intensities.
    """
    sample = simulate_cine(SimConfig(frames=4, coils=4, size=(32, 32)))
    k = sample.kspace[None]
    maps = sample.maps[None]
    static = make_mask(MaskSpec("equispaced_acs", 4, 8), 4, 32, seed=0).reshape(1, 1, -1, 1, 32)
    moving = make_mask(MaskSpec("time_varying_acs", 4, 8), 4, 32, seed=1).reshape(1, 1, -1, 1, 32)
    mask = torch.cat([static.expand(1, 1, 4, 1, 32), moving.expand(1, 1, 4, 1, 32)]).to(torch.float32)
    k = torch.cat([k, 7 * k]) * mask
    return k, mask, torch.cat([maps, maps])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().norm() / b.abs().norm())


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("scale", SCALES)
def test_method_is_scale_equivariant(problem, name, scale):
    k, mask, maps = problem
    ref = CLASSICAL[name](k, mask, maps)
    out = CLASSICAL[name](k * scale, mask, maps)
    assert torch.isfinite(ref).all() and torch.isfinite(out).all()
    assert float(out.abs().amax()) > 0
    # 2e-5: the methods' own float32 sensitivity to rounding the data (CG-SENSE, 20 iterations,
    # differs by 7e-6 between k and 3 k as well)
    for i in range(k.shape[0]):
        assert _rel(out[i] / scale, ref[i]) < 2e-5, (name, scale, i, _rel(out[i] / scale, ref[i]))


@pytest.mark.parametrize("name", METHODS)
def test_power_of_two_scale_is_exact(problem, name):
    k, mask, maps = problem
    ref = CLASSICAL[name](k, mask, maps)
    for e in (-80, 80):
        out = CLASSICAL[name](k * 2.0 ** e, mask, maps)
        assert torch.equal(out * 2.0 ** -e, ref), (name, e)


@pytest.mark.parametrize("name", METHODS)
def test_zero_kspace_gives_a_finite_image(problem, name):
    k, mask, maps = problem
    out = CLASSICAL[name](torch.zeros_like(k), mask, maps)
    assert torch.isfinite(out).all() and not out.abs().any()


def test_priors_and_starts_follow_the_scale(problem):
    """The image-domain inputs (CG-SENSE's prior, L+S's start) are divided by the same scale."""
    k, mask, maps = problem
    prior = view_sharing(k, mask, maps)
    ref = cg_sense(k, mask, maps, prior=prior)
    res = lplus_s_decompose(k, mask, maps, start=prior)
    for s in SCALES:
        out = cg_sense(k * s, mask, maps, prior=prior * s)
        assert _rel(out / s, ref) < 2e-5
        dec = lplus_s_decompose(k * s, mask, maps, start=prior * s)
        assert _rel((dec.low_rank + dec.sparse) / s, res.low_rank + res.sparse) < 2e-5
    filled = grappa_kspace(k[:1], mask[:1])
    assert _rel(grappa_kspace(k[:1] * 1e25, mask[:1]) / 1e25, filled) < 2e-5
