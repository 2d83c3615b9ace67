"""Classical reconstructions: zero-filled, view sharing, CG-SENSE, GRAPPA, L+S.

Each method is ``method(kspace, mask, maps, **params) -> image`` with k-space
(B, C, T, H, W) complex, mask broadcastable to it, maps (B, C, 1, H, W), returning the
coil-combined image (B, T, H, W) complex. :data:`CLASSICAL` maps CLI names to them
(built on first access so that importing one method does not import the others).

The k-space may be in any unit: each method divides it by a power-of-two scale of its sampled
values on entry and multiplies the result back (:mod:`.scaling`), so ``method(s * k) ==
s * method(k)`` up to rounding for s from at least 1e-30 to 1e30, and exactly for powers of two.
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch

Method = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_WHERE = {
    "zero_filled": ("zero_filled", "zero_filled"),
    "cg_sense": ("cg_sense", "cg_sense"),
    "grappa": ("grappa", "grappa"),
    "lplus_s": ("lowrank_sparse", "lplus_s"),
    "view_sharing": ("view_sharing", "view_sharing"),
}


def __getattr__(name: str):
    if name == "CLASSICAL":
        table = {key: getattr(importlib.import_module(f"{__name__}.{mod}"), fn) for key, (mod, fn) in _WHERE.items()}
        globals()["CLASSICAL"] = table
        return table
    raise AttributeError(name)
