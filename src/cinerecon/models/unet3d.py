"""3D UNet-MR: CRUNet-MR with every CRNN-TI unit replaced by a Conv3D block (no recurrence).

Same two-level U-Net per cascade (conv0, Conv(2+1)D down/up-sampling, dilated Conv(2+1)D
blocks, 1x1 side branches, 5x5 output conv), same unrolled loop with hard DC, but the
recurrent units become :class:`~cinerecon.models.blocks.Conv3dBlock` (3x3x3 conv + ReLU), so
nothing is handed from one cascade to the next (the state is ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import ConfigError
from . import register
from .blocks import Conv2p1d, Conv3dBlock, TemporalPadding, add_side, check_unet_config, conv_frames, side_conv
from .complex_io import from_channels, to_channels
from .unrolled import ConfiguredUnrolled, config_from_kwargs


@dataclass(frozen=True)
class UNet3DConfig:
    """Hyper-parameters of the 3D UNet-MR baseline.

    Attributes:
        chans: feature channels C.
        cascades: number of unrolled cascades.
        dilations: spatial dilation of (level 1, level 2, bottleneck).
        side_branches: the 1x1 side branches around each Conv3D block.
        temporal_padding: "circular" or "zero" padding along time.
        checkpoint_cascades: activation checkpointing per cascade.
        initial_image: first cascade's input, "zero_filled" (paper) or "view_sharing"
            (for time-varying masks without ACS; see :class:`~cinerecon.models.unrolled.Unrolled`).
    """

    chans: int = 64
    cascades: int = 5
    dilations: tuple[int, int, int] = (1, 2, 4)
    side_branches: bool = True
    temporal_padding: TemporalPadding = "circular"
    checkpoint_cascades: bool = False
    initial_image: str = "zero_filled"

    def __post_init__(self) -> None:
        check_unet_config(self)


class UNet3DCascade(nn.Module):
    """One cascade: ``(x (B, T, H', W') complex, None) -> (x + residual, None)``."""

    def __init__(self, cfg: UNet3DConfig) -> None:
        super().__init__()
        c, (d1, d2, d3), tp = cfg.chans, cfg.dilations, cfg.temporal_padding
        side = cfg.side_branches
        self.conv0 = nn.Conv2d(2, c, 3, padding=1)
        self.d_block1, self.conv11 = Conv3dBlock(c, c, d1, tp), side_conv(c, side)
        self.d_conv = Conv2p1d(c, c, 2, stride=2, padding=0, temporal_padding=tp)
        self.d_block2, self.conv21 = Conv3dBlock(c, c, d2, tp), side_conv(c, side)
        self.convs1 = Conv2p1d(c, c, 3, padding=d2, dilation=d2, temporal_padding=tp)
        self.b_block, self.conv31 = Conv3dBlock(c, c, d3, tp), side_conv(c, side)
        self.convs2 = Conv2p1d(c, c, 3, padding=d3, dilation=d3, temporal_padding=tp)
        self.u_block1, self.conv41 = Conv3dBlock(c, c, d2, tp), side_conv(c, side)
        self.conv1 = Conv2p1d(2 * c, c, 3, padding=d2, dilation=d2, temporal_padding=tp)
        self.u_conv = Conv2p1d(c, c, 2, stride=2, padding=0, transpose=True, temporal_padding=tp)
        self.u_block2, self.conv51 = Conv3dBlock(c, c, d1, tp), side_conv(c, side)
        self.conv2 = Conv2p1d(2 * c, c, 3, padding=1, temporal_padding=tp)
        self.conv = nn.Conv2d(c, 2, 5, padding=2)

    def forward(self, x: torch.Tensor, state: None = None) -> tuple[torch.Tensor, None]:
        """Denoise a normalised, padded image (B, T, H', W') complex (H', W' even)."""
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ConfigError(f"UNet3D cascade needs even H and W after padding, got {tuple(x.shape)}")
        f0 = conv_frames(self.conv0, to_channels(x))
        e1 = add_side(self.d_block1(f0), self.conv11, f0)
        f1 = self.d_conv(e1)
        e2 = self.convs1(add_side(self.d_block2(f1), self.conv21, f1))
        b = self.convs2(add_side(self.b_block(e2), self.conv31, e2))
        d2 = self.conv1(torch.cat([e2, add_side(self.u_block1(b), self.conv41, b)], dim=2))
        u = self.u_conv(d2)
        d1 = add_side(self.u_block2(u), self.conv51, u)
        d1 = self.conv2(torch.cat([e1, d1], dim=2))
        return x + from_channels(conv_frames(self.conv, d1).to(x.real.dtype)), None


class UNet3D(ConfiguredUnrolled):
    """3D UNet-MR, called as ``model(kspace, mask, sens_maps) -> (B, T, H, W)``."""

    def __init__(self, cfg: UNet3DConfig) -> None:
        super().__init__(cfg, UNet3DCascade, pad_multiple=8)


@register("unet3d")
def build_unet3d(**kwargs) -> UNet3D:
    """Build the 3D UNet-MR baseline from :class:`UNet3DConfig` keyword arguments."""
    return UNet3D(config_from_kwargs(UNet3DConfig, "unet3d", kwargs))
