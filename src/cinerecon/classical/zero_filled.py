"""Zero-filled reconstruction: the SENSE adjoint A^H y = S^H F^-1 (M y).

Also holds ``check_inputs``, the input check of the classical methods
(:func:`cinerecon.inputs.check_recon_inputs`).
"""

from __future__ import annotations

import torch

from ..inputs import check_recon_inputs
from ..operators import SenseOp
from .scaling import data_scale


#: The input check of the classical methods: the one every model uses too.
check_inputs = check_recon_inputs


def zero_filled(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Coil-combined zero-filled image S^H F^-1 (M y).

    Args:
        kspace: (B, C, T, H, W) complex, zeros where not sampled.
        mask: real {0, 1} broadcastable to ``kspace``.
        maps: (B, C, 1, H, W) complex coil maps.

    Returns:
        (B, T, H, W) complex image, on the scale of ``SenseOp(maps).reduce(full_kspace)``
        (no density compensation); ``zero_filled(s * k) == s * zero_filled(k)`` at any scale s
        (:mod:`~cinerecon.classical.scaling`).
    """
    check_inputs(kspace, mask, maps, "zero_filled")
    scale = data_scale(kspace, mask)
    return SenseOp(maps, mask.to(kspace.real.dtype)).adjoint(kspace / scale) * scale[:, 0]
