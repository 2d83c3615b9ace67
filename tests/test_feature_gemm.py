"""1x1 and temporal convolutions as matrix products on channels-last features, and the in-place scan.

References are PyTorch's own convolutions (``F.conv2d`` per frame, ``F.conv1d`` per pixel with
explicit circular or zero padding) and the autograd path of the CRNN-TI unit.
"""

import pytest
import torch
import torch.nn.functional as F

from cinerecon.models.blocks import (CRNNUnit, add_side, channels_last_frames, pixel_rows, pointwise_conv,
                                     temporal_conv)


def _features(b, t, c, h, w, seed, layout):
    x = torch.randn(b, t, c, h, w, generator=torch.Generator().manual_seed(seed))
    return channels_last_frames(x) if layout == "channels_last" else x


def _conv1d_reference(x, weight, bias, padding):
    b, t, c, h, w = x.shape
    seq = x.permute(0, 3, 4, 2, 1).reshape(-1, c, t)  # (B*H*W, C, T)
    ref = F.conv1d(F.pad(seq, (1, 1), mode="circular" if padding == "circular" else "constant"), weight, bias)
    return ref.reshape(b, h, w, weight.shape[0], t).permute(0, 4, 3, 1, 2)


def test_pixel_rows_only_for_channels_fastest_features():
    x = _features(2, 3, 4, 5, 6, 0, "channels_last")
    rows = pixel_rows(x)
    assert rows.shape == (2 * 3 * 5 * 6, 4) and rows.data_ptr() == x.data_ptr()
    assert torch.equal(rows[7], x.permute(0, 1, 3, 4, 2).reshape(-1, 4)[7])
    assert pixel_rows(x.contiguous()) is None and pixel_rows(x[:, :, :2]) is None and pixel_rows(x[0]) is None


@pytest.mark.parametrize("layout", ["channels_last", "standard"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_pointwise_conv_and_side_branch_equal_conv2d(layout, with_bias):
    x = _features(2, 3, 4, 5, 6, 1, layout)
    conv = torch.nn.Conv2d(4, 7, 1, bias=with_bias)
    ref = conv(x.reshape(6, 4, 5, 6)).reshape(2, 3, 7, 5, 6)
    out = pointwise_conv(x, conv.weight, conv.bias)
    torch.testing.assert_close(out, ref)
    side = torch.nn.Conv2d(4, 4, 1, bias=with_bias)
    y = _features(2, 3, 4, 5, 6, 2, layout)
    ref_side = y + side(x.reshape(6, 4, 5, 6)).reshape(2, 3, 4, 5, 6)
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            torch.testing.assert_close(add_side(y, side, x), ref_side)
    assert torch.equal(y, _features(2, 3, 4, 5, 6, 2, layout))  # y itself is not modified


@pytest.mark.parametrize("padding", ["circular", "zero"])
@pytest.mark.parametrize("t", [1, 2, 5])
@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("with_bias", [True, False])
def test_temporal_conv_on_channels_last_equals_conv1d(padding, t, b, with_bias):
    x = _features(b, t, 3, 4, 5, t + b, "channels_last")
    g = torch.Generator().manual_seed(9)
    weight, bias = torch.randn(6, 3, 3, generator=g), torch.randn(6, generator=g) if with_bias else None
    out = temporal_conv(x, weight, bias, padding)
    torch.testing.assert_close(out, _conv1d_reference(x, weight, bias, padding), atol=1e-5, rtol=1e-5)
    assert pixel_rows(out) is not None  # stays channels-last


@pytest.mark.parametrize("padding", ["circular", "zero"])
def test_temporal_conv_gradients_equal_conv1d(padding):
    """The in-place accumulation of the outer taps keeps autograd exact (input, weight and bias)."""
    x0 = _features(2, 4, 3, 3, 2, 5, "channels_last").double()
    g = torch.Generator().manual_seed(3)
    w0, b0 = torch.randn(5, 3, 3, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    up = torch.randn(2, 4, 5, 3, 2, generator=g, dtype=torch.float64)
    grads = []
    for fn in (temporal_conv, _conv1d_reference):
        x, w, bias = (t.clone().requires_grad_(True) for t in (x0, w0, b0))
        (fn(x, w, bias, padding) * up).sum().backward()
        grads.append((x.grad, w.grad, bias.grad))
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref)


def test_temporal_conv_under_bf16_autocast_is_close_to_fp32():
    x = _features(1, 4, 8, 6, 6, 4, "channels_last")
    g = torch.Generator().manual_seed(4)
    weight, bias = torch.randn(8, 8, 3, generator=g) / 5, torch.randn(8, generator=g)
    ref = _conv1d_reference(x, weight, bias, "circular")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = temporal_conv(x.to(torch.bfloat16), weight, bias, "circular")
    assert out.dtype == torch.bfloat16
    assert float((out.float() - ref).abs().max() / ref.abs().max()) < 2e-2


@pytest.mark.parametrize("direction", ["forward", "backward", "bidirectional"])
@pytest.mark.parametrize("layout", ["channels_last", "standard"])
def test_in_place_scan_equals_the_autograd_scan(direction, layout):
    """Without autograd the unit scans in place; the values equal those of the autograd path."""
    torch.manual_seed(0)
    unit = CRNNUnit(4, 2, direction)
    x, hiter = _features(2, 5, 4, 6, 6, 11, layout), _features(2, 5, 4, 6, 6, 12, layout)
    with torch.no_grad():
        fast = unit(x, hiter)
    slow = unit(x, hiter)
    assert slow.requires_grad and not fast.requires_grad
    torch.testing.assert_close(fast, slow.detach(), atol=1e-6, rtol=1e-6)
    with torch.inference_mode():
        torch.testing.assert_close(unit(x, hiter), slow.detach(), atol=1e-6, rtol=1e-6)
    assert torch.equal(x, _features(2, 5, 4, 6, 6, 11, layout))  # the inputs are not modified


def test_scan_with_only_the_recurrent_weight_trainable_keeps_autograd():
    """Grad enabled, inputs without grad, only h2h trainable: the autograd scan runs and backward works."""
    unit = CRNNUnit(3, 1, "forward")
    for name, p in unit.named_parameters():
        p.requires_grad_(name == "cell.h2h.weight")
    x = _features(2, 4, 3, 5, 5, 13, "channels_last")
    unit(x, x).square().sum().backward()
    assert unit.cell.h2h.weight.grad is not None and unit.cell.h2h.weight.grad.abs().sum() > 0


def test_cat_features_edge_cases_follow_torch_cat():
    """A zero-channel part joins like torch.cat; an out-of-range dim raises as torch.cat does."""
    from cinerecon.models.blocks import cat_features

    a = _features(2, 3, 4, 5, 6, 14, "channels_last")
    empty = torch.randn(2, 3, 0, 5, 6)
    torch.testing.assert_close(cat_features([a, empty], 2), torch.cat([a, empty], 2))
    for dim in (7, -8):
        with pytest.raises(IndexError):
            cat_features([a, a], dim)
