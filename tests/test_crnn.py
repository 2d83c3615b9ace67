"""CRNN-MRI (Qin et al. 2019): recurrence reference, shapes, batch consistency, learning."""

import pytest
import torch
import torch.nn.functional as F

from cinerecon.models import build_model
from cinerecon.models.crnn import BCRNNLayer, CRNNState
from conftest import assert_batch_consistent, assert_reconstructs_size, random_kspace, random_problem
from phantoms import overfit, undersampled_cine, zero_filled_psnr


def test_parameter_count_matches_paper():
    # Qin et al. report 297K parameters for CRNN-MRI (nf=64, 5 layers, shared over iterations).
    n = sum(p.numel() for p in build_model("crnn").parameters())
    assert abs(n - 297e3) / 297e3 < 0.01


def test_bcrnn_matches_naive_recurrence():
    torch.manual_seed(0)
    layer = BCRNNLayer(2, 5)
    b, t, h, w = 2, 4, 6, 5
    x = torch.randn(b, t, 2, h, w)
    hi = torch.randn(b, t, 5, h, w)
    out = layer(x, hi)

    def step(k, prev):
        pre = F.conv2d(x[:, k], layer.w_x.weight, layer.w_x.bias, padding=1)
        pre = pre + F.conv2d(hi[:, k], layer.w_i.weight, layer.w_i.bias, padding=1)
        if prev is not None:
            pre = pre + F.conv2d(prev, layer.w_h.weight, layer.w_h.bias, padding=1)
        return torch.relu(pre)

    fwd, bwd = [None] * t, [None] * t
    prev = None
    for k in range(t):
        prev = fwd[k] = step(k, prev)
    prev = None
    for k in reversed(range(t)):
        prev = bwd[k] = step(k, prev)
    ref = torch.stack([f + g for f, g in zip(fwd, bwd)], dim=1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_bcrnn_is_bidirectional():
    torch.manual_seed(0)
    layer = BCRNNLayer(2, 4)
    x = torch.randn(1, 5, 2, 6, 6)
    y0 = layer(x, None)
    x2 = x.clone()
    x2[:, -1] += 1.0
    y1 = layer(x2, None)
    assert (y1[:, 0] - y0[:, 0]).abs().max() > 0  # last frame reaches the first via the backward pass


@pytest.mark.parametrize("b,t,h,w", [(2, 3, 8, 10), (1, 2, 13, 11)])
def test_shape_and_odd_sizes(b, t, h, w):
    assert_reconstructs_size("crnn", b, t, h, w, nf=6, cascades=2)


def test_state_is_passed_between_cascades():
    model = build_model("crnn", nf=4, cascades=3, share_weights=False)
    seen = []
    for casc in model.cascades:
        casc.register_forward_hook(lambda mod, args, out: seen.append((args[1], out[1])))
    _, maps, mask = random_problem(b=1, c=2, t=3, h=6, w=6)
    model(torch.randn(1, 2, 3, 6, 6, dtype=torch.complex64) * mask, mask, maps)
    assert seen[0][0] is None
    for (_, out_prev), (inp, _) in zip(seen[:-1], seen[1:]):
        assert isinstance(inp, CRNNState) and inp is out_prev
        assert inp.bcrnn.shape == (1, 3, 4, 6, 6) and len(inp.crnn_i) == 3


def test_shared_weights_count_once():
    shared = build_model("crnn", nf=4, cascades=4)
    single = build_model("crnn", nf=4, cascades=1)
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(shared) == count(single)
    assert count(build_model("crnn", nf=4, cascades=4, share_weights=False)) == 4 * count(single)


def test_batch_consistency():
    torch.manual_seed(0)
    model = build_model("crnn", nf=6, cascades=2, dc_lambda=0.5).eval()
    assert_batch_consistent(model, *random_kspace(b=2, c=3, t=3, h=8, w=7, seed=1))


def test_overfits_one_sample_beyond_zero_filling():
    torch.manual_seed(0)
    sample = undersampled_cine()
    zf = zero_filled_psnr(sample)
    model = build_model("crnn", nf=16, cascades=3)
    before, after = overfit(model, sample, steps=40, lr=3e-3)
    assert after > zf + 6.0 and after > before + 5.0, (zf, before, after)
