"""3D UNet-MR: parameter counts of the presets, the Conv3D block against F.conv3d, shapes, batch
consistency, input dependence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cinerecon.errors import ConfigError
from cinerecon.models import build_model
from cinerecon.models.blocks import Conv3dBlock
from cinerecon.operators import SenseOp
from conftest import assert_batch_consistent, assert_image_output, measured_problem, seeded_model

SMALL = dict(chans=6, cascades=2)


def _model(seed=0, **kw):
    return seeded_model("unet3d", seed, **{**SMALL, **kw})


@pytest.mark.parametrize("padding,dilation", [("circular", 1), ("zero", 2), ("circular", 3)])
def test_conv3d_block_matches_conv3d(padding, dilation):
    torch.manual_seed(0)
    block = Conv3dBlock(3, 5, dilation, padding)
    x = torch.randn(2, 4, 3, 9, 7)  # (B, T, C, H, W)
    xc = x.permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)
    xc = F.pad(xc, (0, 0, 0, 0, 1, 1), mode="circular" if padding == "circular" else "constant")
    ref = F.conv3d(xc, block.conv.weight, block.conv.bias, padding=(0, dilation, dilation),
                   dilation=(1, dilation, dilation))
    ref = torch.relu(ref).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(block(x), ref, atol=1e-5, rtol=1e-5)


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_paper_preset_has_the_papers_4_00_m_parameters():
    """Lyu et al. Table 2: 4.00 M. Closed form per cascade at C = 64 (biases included):
    conv0 2*9C+C, five Conv3D 27C^2+C, five 1x1 sides C^2+C, convs1/convs2 9C^2+C,
    conv1/conv2 18C^2+C, output 25*2C+2; pooling and up-sampling have no weights."""
    c = 64
    per_cascade = (19 * c + 5 * (27 * c * c + c) + 5 * (c * c + c) + 2 * (9 * c * c + c)
                   + 2 * (18 * c * c + c) + 50 * c + 2)
    model = build_model("unet3d")
    assert _count(model) == 5 * per_cascade == 3_999_690
    assert f"{_count(model) / 1e6:.2f}" == "4.00"
    assert _count(build_model("unet3d", preset="paper")) == 3_999_690


def test_crunet_layout_preset_counts_like_crunet_without_recurrence():
    """CRUNet-MR's layout (the authors' 4,537,930 acting weights, shared/reference/README.md) with
    each of the 25 CRNN-TI units (three 3x3 convs, 3 (9C^2+C)) swapped for a Conv3D (27C^2+C)."""
    c = 64
    swapped = 4_537_930 - 5 * 5 * (3 * (9 * c * c + c) - (27 * c * c + c))
    assert _count(build_model("unet3d", preset="crunet_layout")) == swapped == 4_534_730


def test_presets_differ_only_where_documented():
    paper = build_model("unet3d", chans=4, cascades=1).config
    layout = build_model("unet3d", preset="crunet_layout", chans=4, cascades=1).config
    assert (paper.conv2p1d, paper.resampling) == (False, "pool")
    assert (layout.conv2p1d, layout.resampling) == (True, "conv")
    assert build_model("unet3d", preset="crunet_layout", resampling="pool").config.resampling == "pool"
    with pytest.raises(ConfigError, match="preset"):
        build_model("unet3d", preset="nope")
    with pytest.raises(ConfigError, match="resampling"):
        build_model("unet3d", resampling="stride")


@pytest.mark.parametrize("preset", ["paper", "crunet_layout"])
@pytest.mark.parametrize("t,h,w", [(2, 8, 8), (5, 15, 13)])
def test_shapes(preset, t, h, w):
    model = _model(preset=preset)
    k0, mask, maps = measured_problem(t=t, h=h, w=w, seed=1)
    with torch.no_grad():
        out = model(k0, mask, maps)
    assert_image_output(out, (1, t, h, w))


@pytest.mark.parametrize("preset", ["paper", "crunet_layout"])
def test_batch_consistency(preset):
    model = _model(seed=2, preset=preset)
    k0, mask, maps = measured_problem(b=2, t=4, seed=3)
    assert_batch_consistent(model, k0, mask, maps)


def test_output_depends_on_input_and_neighbouring_frames():
    model = _model(seed=4)
    k0, mask, maps = measured_problem(t=5, seed=5)
    op = SenseOp(maps, mask)
    with torch.no_grad():
        a = model(k0, mask, maps)
        k1 = k0.clone()
        k1[:, :, 2] *= 1.5  # change frame 2 only
        b = model(k1, mask, maps)
        zf_a, zf_b = op.adjoint(k0), op.adjoint(k1)
    # the network's contribution (beyond the zero-filled image) changes on frames 1 and 3 too
    diff = ((b - zf_b) - (a - zf_a)).abs().flatten(2).amax(-1)[0]
    assert diff[2] > 0 and diff[1] > 0 and diff[3] > 0
    # stacked kernel-3 temporal convolutions reach frames 0 and 4 as well
    assert diff[0] > 0 and diff[4] > 0


def test_temporal_padding_switch_changes_output_and_no_state():
    a = _model(seed=6)
    b = _model(seed=6, temporal_padding="zero")
    k0, mask, maps = measured_problem(seed=7)
    with torch.no_grad():
        assert not torch.allclose(a(k0, mask, maps), b(k0, mask, maps))
        _, state = a.cascades[0](torch.randn(1, 3, 8, 8, dtype=torch.complex64), None)
    assert state is None
    with pytest.raises(ConfigError):
        build_model("unet3d", iteration_recurrence=True)
