"""The shared unrolled wrapper: normalise, pad, denoise, un-pad, un-normalise, data consistency.

Every unrolled model in cinerecon (CRUNet-MR, CRNN-MRI, 3D UNet-MR, CineNet, ...) is a
list of per-cascade denoisers wrapped by :class:`Unrolled`. A denoiser is an
``nn.Module`` called as ``denoiser(x, state) -> (x, state)`` on the normalised, padded
complex image x (B, T, H', W'); ``state`` is whatever the model hands from one cascade
to the next (``None`` in the first cascade), typically a NamedTuple of feature maps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from ..classical.view_sharing import share_views
from ..operators import SenseOp, hard_dc, soft_dc

Config = TypeVar("Config")
#: Choices of the first cascade's input image (see :class:`Unrolled`).
INITIAL_IMAGES = ("zero_filled", "view_sharing")


@dataclass(frozen=True)
class NormStats:
    """Per-sample mean and std over all real and imaginary values, shapes (B, 1, 1, 1)."""

    mean: torch.Tensor
    std: torch.Tensor


def normalise(x: torch.Tensor, eps: float = 0.0) -> tuple[torch.Tensor, NormStats]:
    """(x - mean) / std per sample over all real/imag values of all frames (unbiased std).

    Args:
        x: (B, T, H, W) complex.
        eps: added to std (0 matches the authors' computation).

    Returns:
        The normalised image and its :class:`NormStats`. The mean is real and is
        subtracted from both the real and imaginary parts.
    """
    b = x.shape[0]
    flat = torch.view_as_real(x).reshape(b, -1)
    mean = flat.mean(dim=1).view(b, 1, 1, 1)
    std = flat.std(dim=1).view(b, 1, 1, 1) + eps
    xr = (torch.view_as_real(x) - mean[..., None]) / std[..., None]
    return torch.view_as_complex(xr.contiguous()), NormStats(mean, std)


def denormalise(x: torch.Tensor, stats: NormStats) -> torch.Tensor:
    """Inverse of :func:`normalise`."""
    xr = torch.view_as_real(x) * stats.std[..., None] + stats.mean[..., None]
    return torch.view_as_complex(xr.contiguous())


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two axes up to a multiple (floor of the difference before, ceil after).

    Returns:
        The padded tensor and the (left, right, top, bottom) padding for :func:`unpad`.
    """
    h, w = x.shape[-2:]
    ph = math.ceil(h / multiple) * multiple - h
    pw = math.ceil(w / multiple) * multiple - w
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if not any(pad):
        return x, pad
    xr = torch.view_as_real(x).movedim(-1, -3) if x.is_complex() else x
    xr = F.pad(xr, pad)
    if x.is_complex():
        xr = torch.view_as_complex(xr.movedim(-3, -1).contiguous())
    return xr, pad


def unpad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Crop the padding added by :func:`pad_to_multiple` from the last two axes."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top:h - bottom, left:w - right]


DataConsistency = Callable[[torch.Tensor, torch.Tensor, SenseOp], torch.Tensor]


class SoftDC(nn.Module):
    """Soft data consistency with a learnable lambda_0 >= 0 (paper eq. 5); ``None`` -> hard DC."""

    def __init__(self, init: float | None = None) -> None:
        super().__init__()
        self.log_lam = None if init is None else nn.Parameter(torch.tensor(math.log(init)))

    def forward(self, x: torch.Tensor, k0: torch.Tensor, op: SenseOp) -> torch.Tensor:
        if self.log_lam is None:
            return hard_dc(x, k0, op)
        return soft_dc(x, k0, op, self.log_lam.exp())


class Unrolled(nn.Module):
    """Unrolled cascades sharing one normalise / pad / data-consistency loop.

    Args:
        denoisers: one module per cascade, ``denoiser(x, state) -> (x, state)`` on
            normalised, padded images (B, T, H', W') complex.
        pad_multiple: H and W are zero-padded up to a multiple of this.
        dc: data-consistency module ``dc(x, k0, op)``; hard DC by default.
        checkpoint_cascades: recompute each cascade's activations in the backward pass
            (activation checkpointing) to save memory in training.
        initial: the first cascade's input: ``"zero_filled"`` (S^H F^-1 M k, the authors'
            choice) or ``"view_sharing"`` (each frame's missing k-space filled with its mean
            over the frames that sampled it; equal to zero-filling for static masks, and a far
            better start for time-varying masks without ACS).
    """

    def __init__(self, denoisers: Sequence[nn.Module], pad_multiple: int = 8,
                 dc: nn.Module | None = None, checkpoint_cascades: bool = False,
                 initial: str = "zero_filled") -> None:
        super().__init__()
        if initial not in INITIAL_IMAGES:
            raise ConfigError(f"initial image must be one of {INITIAL_IMAGES}, got {initial!r}")
        self.cascades = nn.ModuleList(denoisers)
        self.pad_multiple = pad_multiple
        self.dc = dc if dc is not None else SoftDC(None)
        self.checkpoint_cascades = checkpoint_cascades
        self.initial = initial

    def initial_image(self, kspace: torch.Tensor, op: SenseOp) -> torch.Tensor:
        """The first cascade's input (B, T, H, W) from the masked k-space (B, C, T, H, W)."""
        if self.initial == "view_sharing":
            return op.reduce(share_views(kspace, op.mask))
        return op.adjoint(kspace)

    def _cascade(self, i: int, x: torch.Tensor, state: Any, kspace: torch.Tensor,
                 op: SenseOp) -> tuple[torch.Tensor, Any]:
        xn, stats = normalise(x)
        xp, pad = pad_to_multiple(xn, self.pad_multiple)
        y, state = self.cascades[i](xp, state)
        y = denormalise(unpad(y, pad), stats)
        return self.dc(y, kspace, op), state

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
        """Reconstruct.

        Args:
            kspace: (B, C, T, H, W) complex measured k-space.
            mask: real, broadcastable to kspace.
            sens_maps: (B, C, 1, H, W) complex.

        Returns:
            (B, T, H, W) complex image.
        """
        op = SenseOp(sens_maps, mask.to(kspace.real.dtype))
        kspace = kspace * op.mask
        x = self.initial_image(kspace, op)
        state = None
        for i in range(len(self.cascades)):
            if self.checkpoint_cascades and torch.is_grad_enabled():
                x, state = checkpoint(self._cascade, i, x, state, kspace, op, use_reentrant=False)
            else:
                x, state = self._cascade(i, x, state, kspace, op)
        return x


def config_from_kwargs(cls: type[Config], model: str, kwargs: dict[str, Any]) -> Config:
    """``cls(**kwargs)`` for a dataclass config; unknown or mistyped keywords raise ConfigError.

    Args:
        cls: the config dataclass.
        model: the registered model name, for the message.
        kwargs: keyword arguments given to ``build_model(model, ...)``.
    """
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{model}: {e}") from None


class ConfiguredUnrolled(Unrolled):
    """An :class:`Unrolled` model of ``cfg.cascades`` identical cascades built from one config.

    Args:
        cfg: a dataclass config with (at least) ``cascades``, ``checkpoint_cascades`` and
            ``initial_image``; kept as ``self.config``.
        cascade: builds one cascade's denoiser from ``cfg``.
        pad_multiple: H and W are zero-padded up to a multiple of this.
    """

    def __init__(self, cfg: Any, cascade: Callable[[Any], nn.Module], pad_multiple: int = 8) -> None:
        super().__init__([cascade(cfg) for _ in range(cfg.cascades)], pad_multiple=pad_multiple,
                         checkpoint_cascades=cfg.checkpoint_cascades, initial=cfg.initial_image)
        self.config = cfg

    def config_dict(self) -> dict:
        """Keyword arguments that rebuild this model with ``build_model(name, **kw)`` (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.config).items()}
