"""CRUNet-MR keeps its features channels-last (channels stored fastest): same values as the standard layout."""

import pytest
import torch

import cinerecon.models.crunet as crunet_module
from cinerecon.models import build_model
from cinerecon.models.blocks import cat_features, channels_last_frames, roll_frames, shift_sum, stack_frames
from conftest import measured_problem


def _cl(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return channels_last_frames(torch.randn(shape, generator=g))


@pytest.mark.parametrize("layout", ["channels_last", "standard"])
def test_layout_helpers_equal_torch_ops_and_keep_the_layout(layout):
    make = _cl if layout == "channels_last" else (lambda s, seed=0: torch.randn(s, generator=torch.Generator().manual_seed(seed)))
    a, b = make((2, 3, 4, 5, 6)), make((2, 3, 2, 5, 6), seed=1)
    for dim, pair in ((2, (a, b)), (1, (a, a)), (0, (a, a))):
        out = cat_features(list(pair), dim)
        assert torch.equal(out, torch.cat(pair, dim))
        assert (out.stride(2) == 1) == (layout == "channels_last")
    for shift in (1, -1, 2, 0):
        assert torch.equal(roll_frames(a, shift), a.roll(shift, dims=1))
        if shift in (1, -1):
            assert (roll_frames(a, shift).stride(2) == 1) == (layout == "channels_last")
    with pytest.raises(RuntimeError):  # mismatched shapes fail as in torch.cat
        cat_features([a, make((1, 3, 2, 5, 6))], 2)
    frames = [a[:, t] for t in range(a.shape[1])]
    assert torch.equal(stack_frames(frames), a)
    assert (stack_frames(frames).stride(2) == 1) == (layout == "channels_last")
    z = make((2, 3, 12, 5, 6)).reshape(2, 3, 3, 4, 5, 6)
    ref = z[:, :, 1] + z[:, :, 0].roll(1, dims=1) + z[:, :, 2].roll(-1, dims=1)
    assert torch.allclose(shift_sum(z, "circular"), ref)


def test_crunet_features_are_channels_last_and_equal_the_standard_layout(monkeypatch):
    torch.manual_seed(0)
    model = build_model("crunet", chans=8, cascades=2).train()
    k, mask, maps = measured_problem(b=2, c=3, t=4, h=16, w=12, seed=2)
    seen, conv_inputs = [], []
    model.cascades[1].bcrnn.register_forward_hook(lambda m, i, o: seen.append(o.stride(2) == 1))
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.register_forward_pre_hook(lambda m, i: conv_inputs.append(i[0].stride(1) == 1))
    n_convs = len(conv_inputs)
    out = model(k, mask, maps)
    assert len(conv_inputs) > n_convs and all(conv_inputs)  # every module convolution gets channels-last input
    out.abs().pow(2).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert seen == [True]  # the bottleneck's hidden states are stored channels fastest
    model.zero_grad()
    monkeypatch.setattr(crunet_module, "channels_last_frames", lambda x: x)  # the standard layout throughout
    seen.clear()
    ref = model(k, mask, maps)
    ref.abs().pow(2).sum().backward()
    assert seen == [False]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)
