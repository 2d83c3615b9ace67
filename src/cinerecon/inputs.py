"""The one check of a reconstruction's inputs, shared by every model and classical method.

``check_recon_inputs(kspace, mask, maps, who)`` refuses, with one :class:`~cinerecon.errors.DataError`
naming the method, the tensor and its shape, what would otherwise fail deep inside torch or
give a silently wrong result: objects that are not tensors, k-space that is not complex
(B, C, T, H, W) (e.g. one series without its batch axis, whose coils would be taken for batch
items), an empty axis, maps that do not match the k-space, a complex mask or one that does
not broadcast. On the CPU it also reads the values: NaN / Inf in k-space or maps are refused,
naming the batch item (one sum per item, a few ms at CMRxRecon size; the exact test runs only
when a sum is not finite). On other devices the values are not read, so a model's forward pass
never waits on the device for a check (the file loaders check NaN and 0/1 masks on the host).
Mask values are not read here: the operators accept weights in [0, 1] (see
:class:`~cinerecon.operators.SenseOp`), and a mask read from a file is 0/1 by then.
"""

from __future__ import annotations

import torch

from .errors import DataError
from .solvers import may_stop_early


def _describe(x: object) -> str:
    if torch.is_tensor(x):
        return f"shape {tuple(x.shape)} {x.dtype}"
    return f"a {type(x).__module__}.{type(x).__name__}" + (f" of shape {x.shape}" if hasattr(x, "shape") else "")


def check_recon_inputs(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None, who: str,
                       maps_optional: bool = False) -> None:
    """Validate the (kspace, mask, maps) of a reconstruction.

    Args:
        kspace: (B, C, T, H, W) complex.
        mask: real or boolean, broadcastable to ``kspace``, values 0 and 1.
        maps: (B or 1, C, 1, H, W) complex, or None where ``maps_optional``.
        who: the method or model named in messages.
        maps_optional: the method estimates maps itself when none are given.

    Raises:
        DataError: one line naming ``who``, the tensor and its shape (and the item for values).
    """
    if not torch.is_tensor(kspace) or kspace.ndim != 5 or not kspace.is_complex():
        raise DataError(f"{who}: k-space must be a complex torch tensor (B, C, T, H, W), got {_describe(kspace)}"
                        + (" (one series needs its batch axis: kspace[None])"
                           if torch.is_tensor(kspace) and kspace.ndim == 4 else ""))
    b, c, t, h, w = kspace.shape
    if kspace.numel() == 0:
        raise DataError(f"{who}: k-space has an empty axis: shape {tuple(kspace.shape)} (B, C, T, H, W)")
    if maps is None:
        if not maps_optional:
            raise DataError(f"{who}: coil maps (B, C, 1, H, W) are needed, got None")
    elif not torch.is_tensor(maps) or maps.ndim != 5 or not maps.is_complex():
        raise DataError(f"{who}: maps must be a complex torch tensor (B, C, 1, H, W), got {_describe(maps)}")
    elif maps.shape[1] != c or maps.shape[2] != 1 or tuple(maps.shape[-2:]) != (h, w) or maps.shape[0] not in (1, b):
        raise DataError(f"{who}: maps shape {tuple(maps.shape)} does not match k-space {tuple(kspace.shape)}; "
                        f"expected ({b}, {c}, 1, {h}, {w})")
    if not torch.is_tensor(mask) or mask.is_complex():
        raise DataError(f"{who}: the mask must be a real or boolean torch tensor broadcastable to k-space "
                        f"{tuple(kspace.shape)}, got {_describe(mask)}")
    try:
        ok = torch.broadcast_shapes(mask.shape, kspace.shape) == kspace.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise DataError(f"{who}: mask shape {tuple(mask.shape)} does not broadcast to k-space {tuple(kspace.shape)}")
    if not may_stop_early(kspace):  # reading values would wait on the device
        return
    for name, x in (("k-space", kspace), ("maps", maps)):
        if x is None:
            continue
        flat = torch.view_as_real(x.detach()).reshape(x.shape[0], -1)
        if bool(torch.isfinite(flat.sum(dim=1)).all()):  # a NaN / Inf makes its item's sum non-finite
            continue
        bad = ~torch.isfinite(flat).all(dim=1)  # exact: a finite item whose sum overflowed is fine
        if bool(bad.any()):
            raise DataError(f"{who}: {name} of shape {tuple(x.shape)} holds NaN or Inf (batch item "
                            f"{int(bad.nonzero()[0])})")
