"""View sharing: fill each frame's missing k-space from the frames that sampled it.

A k-t reference for time-varying masks and the optional initial image of the unrolled
networks (``initial_image="view_sharing"``). With a static mask nothing is shared and the
result equals zero-filling.
"""

from __future__ import annotations

import torch

from ..operators import SenseOp, sampled_mean
from .scaling import data_scale
from .zero_filled import check_inputs


def share_views(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill every unsampled location with its mean over the frames that sample it.

    Args:
        kspace: (B, C, T, H, W) complex, zeros where not sampled.
        mask: real {0, 1}, broadcastable to ``kspace``.

    Returns:
        (B, C, T, H, W) complex k-space; sampled values are kept, locations sampled in no
        frame stay zero.
    """
    mean = sampled_mean(kspace, mask, dim=2, keepdim=True)
    return torch.where(torch.broadcast_to(mask, kspace.shape) > 0, kspace, mean.expand_as(kspace))


def view_sharing(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Coil-combined view-shared image S^H F^-1 share_views(k).

    Args:
        kspace: (B, C, T, H, W) complex, zeros where not sampled.
        mask: broadcastable to ``kspace``.
        maps: (B, C, 1, H, W) complex.

    Returns:
        (B, T, H, W) complex image; ``view_sharing(s * k) == s * view_sharing(k)`` at any
        scale s (:mod:`~cinerecon.classical.scaling`).
    """
    check_inputs(kspace, mask, maps, "view_sharing")
    scale = data_scale(kspace, mask)
    return SenseOp(maps).reduce(share_views(kspace / scale, mask)) * scale[:, 0]
