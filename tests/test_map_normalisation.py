"""Maps that are not unit-norm: CG-SENSE, L+S and the unrolled models stay exact, on the toolkit's image scale.

That scale is the coil combination S^H F^-1 k of the fully sampled data (stored targets, evaluation
references): with maps a S (S unit-norm) and the same k-space it is a times the image of S.
"""

import torch

from cinerecon.classical.cg_sense import cg_sense
from cinerecon.classical.lowrank_sparse import lplus_s
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.models import build_model
from cinerecon.operators import SenseOp, unit_norm_maps
from phantoms import cine_phantom


def _problem(t=6, h=24, w=20, coils=4, seed=0, full_data=False):
    full, maps, x = cine_phantom(coils, t, (h, w), seed=seed, noise=0.02)  # unit-norm maps
    mask = make_mask(MaskSpec("equispaced_acs", 4, 6), t, w, seed=seed)
    if full_data:
        return full, torch.ones_like(mask)[None], maps, x
    return full * mask, mask[None], maps, x


def test_unit_norm_maps_rescales_only_items_whose_maps_do_not_peak_at_one():
    _, _, maps, _ = _problem()
    maps = maps.clone()
    maps[..., :3, :] = 0  # pixels outside the support keep the factor 1
    both = torch.cat([maps, 2.0 * maps, 0.5 * maps])
    unit, r = unit_norm_maps(both)
    assert r.shape == (3, 1, 1, 24, 20)
    assert torch.equal(r[0], torch.ones_like(r[0])) and torch.equal(unit[0], both[0])
    torch.testing.assert_close(r[1, ..., 3:, :], torch.full_like(r[1, ..., 3:, :], 2.0))
    torch.testing.assert_close(r[2, ..., 3:, :], torch.full_like(r[2, ..., 3:, :], 0.5))
    assert torch.equal(r[1:, ..., :3, :], torch.ones_like(r[1:, ..., :3, :]))
    power = unit.abs().square().sum(1)
    torch.testing.assert_close(power[:, ..., 3:, :], torch.ones_like(power[:, ..., 3:, :]))


def test_classical_solvers_scale_with_the_maps():
    k, mask, maps, _ = _problem()
    for solve in (lambda s: lplus_s(k, mask, s, iters=15), lambda s: cg_sense(k, mask, s, iters=20)):
        ref = solve(maps)
        for a in (1.7, 3.0, 0.4):
            got = solve(a * maps)
            assert torch.isfinite(got).all()  # L+S used to diverge for a > sqrt(2)
            torch.testing.assert_close(got, a * ref, rtol=1e-4, atol=1e-4 * a * float(ref.abs().max()))


def test_fully_sampled_data_give_the_coil_combination_of_the_given_maps():
    k, mask, maps, _ = _problem(full_data=True)
    torch.manual_seed(0)
    model = build_model("crunet", chans=4, cascades=2).eval()
    for a in (1.0, 2.0, 0.5):
        ref = SenseOp(a * maps).reduce(k)  # the stored target's definition
        with torch.no_grad():
            got = model(k, mask, a * maps)  # hard DC with every line sampled: the data alone
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
        torch.testing.assert_close(cg_sense(k, mask, a * maps, iters=30, lam=0.0), ref, rtol=1e-4,
                                   atol=1e-4 * float(ref.abs().max()))


def test_zero_map_pixels_leave_gradients_finite():
    k, mask, maps, _ = _problem()
    maps = maps.clone()
    maps[..., 0, :] = 0
    maps.requires_grad_(True)
    unit, r = unit_norm_maps(maps)
    (unit.abs().sum() + r.sum()).backward()
    assert torch.isfinite(maps.grad).all()


def test_unrolled_model_gives_the_same_image_for_scaled_maps_and_leaves_unit_maps_alone():
    torch.manual_seed(0)
    model = build_model("crunet", chans=4, cascades=2, initial_image="lplus_s").eval()
    k, mask, maps, _ = _problem()
    with torch.no_grad():
        ref = model(k, mask, maps)
        assert torch.equal(ref, model._forward(k, mask, maps))  # unit-norm maps: untouched, bit for bit
        kk, mm, ss = torch.cat([k, k]), torch.cat([mask, mask]), torch.cat([maps, 2.5 * maps])
        out = model(kk, mm, ss)
    torch.testing.assert_close(out[0], ref[0], rtol=1e-5, atol=1e-6)  # the other item: as alone (batched round-off)
    torch.testing.assert_close(out[1], 2.5 * ref[0], rtol=1e-4, atol=1e-4 * 2.5 * float(ref.abs().max()))
    with torch.no_grad():  # without the normalisation the same scaled maps go wrong
        raw = model._forward(k, mask, 2.5 * maps)
    assert float((raw - 2.5 * ref).abs().max()) > 0.1 * float(ref.abs().max())
