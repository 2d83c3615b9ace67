"""Zero-filled reconstruction: the SENSE adjoint A^H y = S^H F^-1 (M y).

Also holds :func:`check_inputs`, the shape check shared by the classical methods.
"""

from __future__ import annotations

import torch

from ..errors import DataError
from ..operators import SenseOp
from .scaling import data_scale


def check_inputs(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor, method: str) -> None:
    """Validate (kspace, mask, maps) of a classical reconstruction.

    Args:
        kspace: (B, C, T, H, W) complex.
        mask: real, broadcastable to ``kspace``.
        maps: (B, C, 1, H, W) complex.
        method: name used in error messages.

    Raises:
        DataError: naming the offending shape.
    """
    if not torch.is_tensor(kspace) or kspace.ndim != 5 or not kspace.is_complex():
        raise DataError(f"{method}: kspace must be complex (B, C, T, H, W), got shape "
                        f"{tuple(getattr(kspace, 'shape', ()))} {getattr(kspace, 'dtype', type(kspace))}")
    b, c, _, h, w = kspace.shape
    if not torch.is_tensor(maps) or maps.ndim != 5 or not maps.is_complex():
        raise DataError(f"{method}: maps must be complex (B, C, 1, H, W), got shape "
                        f"{tuple(getattr(maps, 'shape', ()))}")
    if maps.shape[1] != c or maps.shape[2] != 1 or tuple(maps.shape[-2:]) != (h, w) or maps.shape[0] not in (1, b):
        raise DataError(f"{method}: maps shape {tuple(maps.shape)} does not match kspace {tuple(kspace.shape)}; "
                        f"expected ({b}, {c}, 1, {h}, {w})")
    if not torch.is_tensor(mask) or mask.is_complex():
        raise DataError(f"{method}: mask must be a real tensor broadcastable to kspace {tuple(kspace.shape)}")
    try:
        if torch.broadcast_shapes(mask.shape, kspace.shape) != kspace.shape:
            raise RuntimeError
    except RuntimeError as e:
        raise DataError(f"{method}: mask shape {tuple(mask.shape)} is not broadcastable to kspace "
                        f"{tuple(kspace.shape)}") from e


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
