"""Maps that are not unit-norm: L+S and the unrolled models reconstruct k = M F S x for any map scale."""

import torch

from cinerecon.classical.lowrank_sparse import lplus_s
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.models import build_model
from cinerecon.operators import unit_norm_maps
from phantoms import cine_phantom


def _problem(t=6, h=24, w=20, coils=4, seed=0):
    full, maps, x = cine_phantom(coils, t, (h, w), seed=seed, noise=0.02)  # unit-norm maps
    mask = make_mask(MaskSpec("equispaced_acs", 4, 6), t, w, seed=seed)
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


def test_lplus_s_gives_the_same_image_for_scaled_maps():
    k, mask, maps, _ = _problem()
    ref = lplus_s(k, mask, maps, iters=15)
    for a in (1.7, 3.0, 0.4):  # a * S explains the same data with the image x / a
        got = lplus_s(k, mask, a * maps, iters=15)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got * a, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


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
    torch.testing.assert_close(out[1] * 2.5, ref[0], rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    with torch.no_grad():  # without the normalisation the same scaled maps go wrong
        raw = model._forward(k, mask, 2.5 * maps)
    assert float((raw * 2.5 - ref).abs().max()) > 0.1 * float(ref.abs().max())
