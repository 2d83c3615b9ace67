"""Classical reconstructions: zero-filled, CG-SENSE, GRAPPA, L+S.

Each method is ``method(kspace, mask, maps, **params) -> image`` with k-space
(B, C, T, H, W) complex, mask broadcastable to it, maps (B, C, 1, H, W), returning the
coil-combined image (B, T, H, W) complex. :data:`CLASSICAL` maps CLI names to them.
"""

from __future__ import annotations

from typing import Callable

import torch

from .cg_sense import cg_sense
from .grappa import grappa
from .lowrank_sparse import lplus_s
from .zero_filled import zero_filled

Method = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

CLASSICAL: dict[str, Method] = {
    "zero_filled": zero_filled,
    "cg_sense": cg_sense,
    "grappa": grappa,
    "lplus_s": lplus_s,
}

__all__ = ["CLASSICAL", "cg_sense", "grappa", "lplus_s", "zero_filled"]
