"""3D UNet-MR: CRUNet-MR's U-Net with Conv3D blocks in place of its CRNN-TI units (no recurrence).

Lyu et al. (CRUNet-MR) compare with a "3D UNet-MR" and count it at 4.00 M parameters (their
Table 2) next to CRUNet-MR's 4.79 M (4,537,930 weights in the authors' layout plus five unused
``pp`` tensors, see ``shared/reference/README.md``). The authors' CRUNet-MR repository holds no code for it, so
the layout below is a reconstruction; what is known and what is our choice:

Known
    * The name: a U-Net of 3D convolutions in the "-MR" family of CRUNet-MR, compared in the
      paper's Tables 1 and 2.
    * 4.00 M parameters (Table 2).

Assumed from CRUNet-MR (the name ties the two)
    An unrolled U-Net of CRUNet-MR's width (C = 64), cascades (5), dilations (1, 2, 4), 1x1 side
    branches and hard data consistency, whose spatio-temporal units are 3x3x3 Conv3D blocks
    instead of CRNN-TI units, so nothing passes from one cascade to the next (the state is
    ``None``).

Choice (preset ``"paper"``, the default)
    Replacing each CRNN-TI unit of CRUNet-MR's layout by a 3x3x3 Conv3D keeps the count at
    4,534,730 (a 3x3x3 Conv3D has about the weights of the three 3x3 convolutions of a CRNN-TI
    cell), 0.53 M above the paper. Making it a 3D U-Net in which **only the Conv3D blocks mix
    frames** removes that surplus: the dilated and fusion layers (``convs1``, ``convs2``,
    ``conv1``, ``conv2``) keep their per-frame 2D convolution and ReLU but lose the temporal
    kernel-3 convolution of CRUNet-MR's Conv(2+1)D, and the resolution changes without
    weights, as in a plain U-Net (2x2 average pooling down, bilinear x2 up-sampling). With
    C = 64 and 5 cascades this counts 3,999,690 = 4.00 M. Among the variants of CRUNet-MR's
    parts we enumerated, it is the one that reaches 4.00 M at the paper's width and cascades;
    other ways of losing ~0.53 M land nearby (60 channels: 3.99 M; four Conv3D blocks:
    3.98 M), so the count alone does not prove the authors' layout.

The preset ``"crunet_layout"`` is CRUNet-MR's layout with only the units swapped (Conv(2+1)D
layers and strided / transposed-conv resampling kept): 4,534,730 parameters at C = 64, the
model this project used before. Both presets take any field of :class:`UNet3DConfig` as an
override, e.g. ``build_model("unet3d", preset="paper", chans=8, cascades=3)``.

Per cascade (features real (B, T, C, H', W'), H' and W' padded to a multiple of 8):
conv0 (2D 3x3) -> [Conv3D + 1x1 side] -> down -> [Conv3D + side] -> convs1 -> bottleneck
[Conv3D + side] -> convs2 -> [Conv3D + side] -> concat -> conv1 -> up -> [Conv3D + side] ->
concat -> conv2 -> 5x5 conv -> residual; dilations (1, 2, 4) as in CRUNet-MR.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from . import register
from .blocks import (
    Conv2p1d,
    Conv3dBlock,
    TemporalPadding,
    add_side,
    check_unet_config,
    conv_frames,
    fold,
    side_conv,
    unfold,
)
from .complex_io import from_channels, to_channels
from .unrolled import ConfiguredUnrolled, config_from_kwargs

Resampling = Literal["pool", "conv"]
RESAMPLINGS = ("pool", "conv")


@dataclass(frozen=True)
class UNet3DConfig:
    """Hyper-parameters of the 3D UNet-MR baseline; the defaults are the ``"paper"`` preset.

    Attributes:
        chans: feature channels C (paper: 64).
        cascades: number of unrolled cascades (paper: 5).
        dilations: spatial dilation of (level 1, level 2, bottleneck).
        side_branches: the 1x1 side branches around each Conv3D block.
        temporal_padding: "circular" or "zero" padding along time.
        conv2p1d: the dilated and fusion layers (and ``"conv"`` resampling) are CRUNet-MR's
            Conv(2+1)D (per-frame conv, ReLU, temporal kernel-3 conv); ``False`` drops the
            temporal conv, so only the Conv3D blocks mix frames.
        resampling: ``"pool"`` (2x2 average pooling down, bilinear x2 up, no weights) or
            ``"conv"`` (CRUNet-MR's 2x2 stride-2 conv down and 2x2 transposed conv up).
        checkpoint_cascades: activation checkpointing per cascade.
        initial_image: first cascade's input, "zero_filled" (paper), "view_sharing" or "cg_sense" (ours)
            (for time-varying masks without ACS; see :class:`~cinerecon.models.unrolled.Unrolled`).
    """

    chans: int = 64
    cascades: int = 5
    dilations: tuple[int, int, int] = (1, 2, 4)
    side_branches: bool = True
    temporal_padding: TemporalPadding = "circular"
    conv2p1d: bool = False
    resampling: Resampling = "pool"
    checkpoint_cascades: bool = False
    initial_image: str = "zero_filled"

    def __post_init__(self) -> None:
        check_unet_config(self)
        if self.resampling not in RESAMPLINGS:
            raise ConfigError(f"unet3d: resampling must be one of {RESAMPLINGS}, got {self.resampling!r}")


#: Named configurations (see the module docstring): the paper's 4.00 M model (default) and
#: CRUNet-MR's layout with Conv3D units (4.53 M).
PRESETS: dict[str, UNet3DConfig] = {
    "paper": UNet3DConfig(),
    "crunet_layout": UNet3DConfig(conv2p1d=True, resampling="conv"),
}


class FrameConv(nn.Module):
    """Per-frame 2D (transposed) convolution followed by ReLU: Conv(2+1)D without its temporal conv.

    Takes the arguments of :class:`~cinerecon.models.blocks.Conv2p1d` except the temporal padding.
    """

    def __init__(self, in_chans: int, out_chans: int, kernel: int = 3, stride: int = 1, padding: int = 1,
                 dilation: int = 1, transpose: bool = False) -> None:
        super().__init__()
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        self.spatial = conv(in_chans, out_chans, kernel, stride=stride, padding=padding, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C_in, H, W) -> (B, T, C_out, H', W')."""
        return torch.relu(conv_frames(self.spatial, x))


class Pool2(nn.Module):
    """2x2 average pooling of every frame, (B, T, C, H, W) -> (B, T, C, H/2, W/2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unfold(F.avg_pool2d(fold(x), 2), x.shape[0])


class Upsample2(nn.Module):
    """Bilinear x2 up-sampling of every frame, (B, T, C, H, W) -> (B, T, C, 2H, 2W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(fold(x), scale_factor=2, mode="bilinear", align_corners=False)
        return unfold(y, x.shape[0])


class UNet3DCascade(nn.Module):
    """One cascade: ``(x (B, T, H', W') complex, None) -> (x + residual, None)``."""

    def __init__(self, cfg: UNet3DConfig) -> None:
        super().__init__()
        c, (d1, d2, d3), tp = cfg.chans, cfg.dilations, cfg.temporal_padding
        side = cfg.side_branches
        if cfg.conv2p1d:
            layer = lambda *a, **k: Conv2p1d(*a, **k, temporal_padding=tp)  # noqa: E731
        else:
            layer = FrameConv
        self.conv0 = nn.Conv2d(2, c, 3, padding=1)
        self.d_block1, self.conv11 = Conv3dBlock(c, c, d1, tp), side_conv(c, side)
        self.d_conv = layer(c, c, 2, stride=2, padding=0) if cfg.resampling == "conv" else Pool2()
        self.d_block2, self.conv21 = Conv3dBlock(c, c, d2, tp), side_conv(c, side)
        self.convs1 = layer(c, c, 3, padding=d2, dilation=d2)
        self.b_block, self.conv31 = Conv3dBlock(c, c, d3, tp), side_conv(c, side)
        self.convs2 = layer(c, c, 3, padding=d3, dilation=d3)
        self.u_block1, self.conv41 = Conv3dBlock(c, c, d2, tp), side_conv(c, side)
        self.conv1 = layer(2 * c, c, 3, padding=d2, dilation=d2)
        self.u_conv = layer(c, c, 2, stride=2, padding=0, transpose=True) if cfg.resampling == "conv" \
            else Upsample2()
        self.u_block2, self.conv51 = Conv3dBlock(c, c, d1, tp), side_conv(c, side)
        self.conv2 = layer(2 * c, c, 3, padding=1)
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
    """3D UNet-MR, called as ``model(kspace (B, C, T, H, W), mask, maps (B, C, 1, H, W)) -> (B, T, H, W)``."""

    def __init__(self, cfg: UNet3DConfig) -> None:
        super().__init__(cfg, UNet3DCascade, pad_multiple=8)


def unet3d_config(preset: str = "paper", **overrides) -> UNet3DConfig:
    """A preset of :data:`PRESETS` with field overrides, e.g. ``unet3d_config("paper", chans=8)``."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown unet3d preset {preset!r}; available: {sorted(PRESETS)}")
    return config_from_kwargs(UNet3DConfig, "unet3d", {**asdict(PRESETS[preset]), **overrides})


@register("unet3d")
def build_unet3d(preset: str = "paper", **overrides) -> UNet3D:
    """Build 3D UNet-MR: ``preset`` (a name in :data:`PRESETS`) and :class:`UNet3DConfig` overrides."""
    return UNet3D(unet3d_config(preset, **overrides))
