import torch

from cinerecon.classical import CLASSICAL
from cinerecon.classical.view_sharing import share_views, view_sharing
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.models import build_model
from cinerecon.operators import SenseOp
from conftest import random_problem


def _static_object(t=8, w=16):
    x, maps, _ = random_problem(1, 3, 1, 12, w, seed=1)
    return x.expand(1, t, 12, w).contiguous(), maps


def test_static_mask_equals_zero_filling():
    x, maps = _static_object()
    mask = make_mask(MaskSpec("uniform", 4), 8, 16, seed=0)[None]
    k = SenseOp(maps, mask).forward(x)
    assert torch.allclose(view_sharing(k, mask, maps), SenseOp(maps, mask).adjoint(k), atol=1e-6)
    assert CLASSICAL["view_sharing"] is view_sharing


def test_time_varying_mask_recovers_a_still_object_exactly():
    x, maps = _static_object()
    mask = make_mask(MaskSpec("time_varying", 4), 8, 16, seed=0)[None]  # every line within 4 frames
    k = SenseOp(maps, mask).forward(x)
    full = SenseOp(maps).expand(x)
    assert torch.allclose(share_views(k, mask), full, atol=1e-5)
    assert torch.allclose(view_sharing(k, mask, maps), SenseOp(maps).reduce(full), atol=1e-5)
    zf = SenseOp(maps, mask).adjoint(k)
    assert (zf - SenseOp(maps).reduce(full)).abs().max() > 0.1  # zero-filling is far off


def test_unrolled_initial_image_option():
    x, maps = _static_object()
    static = make_mask(MaskSpec("uniform", 4), 8, 16, seed=0)[None]
    varying = make_mask(MaskSpec("time_varying", 4), 8, 16, seed=0)[None]
    torch.manual_seed(0)
    a = build_model("crunet", chans=4, cascades=1).eval()
    b = build_model("crunet", chans=4, cascades=1, initial_image="view_sharing").eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        ks = SenseOp(maps, static).forward(x)
        assert torch.allclose(a(ks, static, maps), b(ks, static, maps), atol=1e-5)
        kv = SenseOp(maps, varying).forward(x)
        assert not torch.allclose(a(kv, varying, maps), b(kv, varying, maps), atol=1e-3)
