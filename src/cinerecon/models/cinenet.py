"""CineNet: spatio-temporal U-Nets on x-f / y-f planes with conjugate-gradient DC.

Kuestner T., Fuin N., Hammernik K., Bustin A., Qi H., Hajhosseiny R., Masci P. G.,
Neji R., Rueckert D., Botnar R. M., Prieto C., "CINENet: deep learning-based 3D cardiac
CINE MRI reconstruction with multi-coil complex-valued 4D spatio-temporal convolutions",
Scientific Reports 10:13710, 2020.

This is the 2D+t variant used as a baseline here. Per cascade the (normalised) image
x (B, T, H, W) is Fourier transformed along time (x-f space); one U-Net runs on every
x-f plane (F, W) (one per row), another on every y-f plane (F, H) (one per column); their
outputs are fused by a 1x1 convolution, added to the input (residual), transformed back
along time, and followed by a conjugate-gradient data consistency
``(A^H A + mu I) x = A^H y + mu z`` with learnable mu.

Simplifications: real-valued 2D convolutions on (real, imaginary) channels instead of
complex-valued 4D convolutions; the spatio-temporal (3+1)D decomposition is replaced by
the two 2D plane networks; U-Net pooling acts on the spatial axis only, so any number of
frames works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..fft import fft1c, ifft1c
from . import register
from .layers import CGDataConsistency, PlaneUNet
from .unrolled import Unrolled, config_from_kwargs


class XFDenoiser(nn.Module):
    """One CineNet cascade's network: x-f and y-f plane U-Nets, fused, residual.

    Args:
        chans: channels of the first U-Net level.
        depth: poolings per U-Net (H and W are padded to a multiple of ``2 ** depth``).
    """

    def __init__(self, chans: int = 16, depth: int = 2) -> None:
        super().__init__()
        self.xf = PlaneUNet(2, 2, chans, depth, pool=(1, 2))
        self.yf = PlaneUNet(2, 2, chans, depth, pool=(1, 2))
        self.fuse = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
        """x (B, T, H, W) complex -> (B, T, H, W) complex, no state."""
        b, t, h, w = x.shape
        xf = torch.view_as_real(fft1c(x, dim=1))  # (B, F, H, W, 2)
        # x-f planes: one per row y, image (F, W)
        p1 = xf.permute(0, 2, 4, 1, 3).reshape(b * h, 2, t, w)
        u1 = self.xf(p1).view(b, h, 2, t, w).permute(0, 2, 3, 1, 4)  # (B, 2, F, H, W)
        # y-f planes: one per column x, image (F, H)
        p2 = xf.permute(0, 3, 4, 1, 2).reshape(b * w, 2, t, h)
        u2 = self.yf(p2).view(b, w, 2, t, h).permute(0, 2, 3, 4, 1)  # (B, 2, F, H, W)
        fused = self.fuse(torch.cat([u1, u2], dim=1).reshape(b, 4, t * h, w)).view(b, 2, t, h, w)
        out = xf + fused.permute(0, 2, 3, 4, 1)
        return ifft1c(torch.view_as_complex(out.contiguous()), dim=1), None


@dataclass(frozen=True)
class CineNetConfig:
    """CineNet hyper-parameters.

    Attributes:
        chans: first-level channels of each plane U-Net.
        depth: U-Net poolings.
        cascades: unrolled cascades (own weights each).
        cg_iters: CG iterations of the data consistency.
        mu: initial weight of the denoiser output in the CG data consistency.
        checkpoint_cascades: activation checkpointing per cascade.
    """

    chans: int = 16
    depth: int = 2
    cascades: int = 5
    cg_iters: int = 5
    mu: float = 0.5
    checkpoint_cascades: bool = False


@register("cinenet")
class CineNet(Unrolled):
    """CineNet (Kuestner et al. 2020), 2D+t x-f / y-f variant, on the shared unrolled wrapper.

    Called as ``model(kspace (B, C, T, H, W), mask, sens_maps (B, C, 1, H, W)) -> (B, T, H, W)``;
    keyword arguments are the fields of :class:`CineNetConfig`. One CG data-consistency
    module (one learnable mu) is shared by all cascades.
    """

    def __init__(self, **kwargs) -> None:
        cfg = config_from_kwargs(CineNetConfig, "cinenet", kwargs)
        if cfg.cascades < 1 or cfg.depth < 0 or cfg.chans < 1:
            raise ConfigError(f"invalid CineNet config {cfg}")
        denoisers = [XFDenoiser(cfg.chans, cfg.depth) for _ in range(cfg.cascades)]
        super().__init__(denoisers, pad_multiple=2 ** cfg.depth,
                         dc=CGDataConsistency(cfg.mu, cfg.cg_iters),
                         checkpoint_cascades=cfg.checkpoint_cascades)
        self.config = cfg
