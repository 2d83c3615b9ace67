"""The one real/complex boundary at a network's input and output."""

from __future__ import annotations

import torch


def to_channels(x: torch.Tensor) -> torch.Tensor:
    """Complex (B, T, H, W) -> real (B, T, 2, H, W) with channels (real, imag)."""
    return torch.view_as_real(x).permute(0, 1, 4, 2, 3).contiguous()


def from_channels(y: torch.Tensor) -> torch.Tensor:
    """Real (B, T, 2, H, W) -> complex (B, T, H, W)."""
    return torch.view_as_complex(y.permute(0, 1, 3, 4, 2).contiguous())
