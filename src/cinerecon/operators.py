"""Linear MRI operators on native complex tensors, and data consistency.

Shapes follow the project convention:
    image   x: (B, T, H, W) complex
    k-space k: (B, C, T, H, W) complex
    maps    S: (B, C, 1, H, W) complex (any size-1 axis broadcasts)
    mask    M: real {0, 1}, broadcastable to k-space; phase encoding along W.

Every operator is a pure function of the tensors it was built from, and has
``forward``, ``adjoint`` (also ``.H``) and ``gram`` (A^H A).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .fft import centring_ramps


@dataclass(frozen=True)
class CoilSensitivity:
    """Coil expand S: (B, T, H, W) -> (B, C, T, H, W); adjoint sums conj(S_c) over coils."""

    maps: torch.Tensor  # (B, C, 1, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps * x.unsqueeze(1)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (self.maps.conj() * y).sum(dim=1)

    H = adjoint


@dataclass(frozen=True)
class Mask:
    """Sampling mask M (self-adjoint projection)."""

    mask: torch.Tensor  # broadcastable to (B, C, T, H, W)

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        return k * self.mask

    adjoint = forward
    H = forward


@dataclass(frozen=True)
class SenseOp:
    """SENSE forward model A = M F S and its adjoint A^H = S^H F^-1 M.

    The centred FFTs' phase ramps (:func:`~cinerecon.fft.centring_ramps`) are folded into the
    operator's own products: the forward ramp into the maps and, with the mask, into one
    product after the FFT; the inverse ones into the mask and the conjugated maps. Each
    application then makes two element-wise passes over the multi-coil k-space fewer than
    ``M fft2c(S x)`` and ``S^H ifft2c(M k)`` (the same values to float round-off).

    Args:
        maps: coil sensitivities (B, C, 1, H, W) complex.
        mask: sampling mask broadcastable to (B, C, T, H, W); ``None`` means fully sampled.
    """

    maps: torch.Tensor
    mask: torch.Tensor | None = None

    @cached_property
    def _forward_factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(maps x input ramp, output ramp, output ramp x mask) of F S and M F S."""
        before, after = centring_ramps(self.maps.shape, False, self.maps.dtype, self.maps.device)
        masked = after if self.mask is None else (after * self.mask).to(after.dtype)
        return self.maps * before, after, masked

    @cached_property
    def _adjoint_factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input ramp, input ramp x mask, conj(maps x conj(output ramp))) of S^H F^-1 and S^H F^-1 M."""
        before, after = centring_ramps(self.maps.shape, True, self.maps.dtype, self.maps.device)
        masked = before if self.mask is None else (before * self.mask).to(before.dtype)
        return before, masked, (self.maps * after.conj()).conj()

    def _m(self, k: torch.Tensor) -> torch.Tensor:
        return k if self.mask is None else k * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W) image -> (B, C, T, H, W) masked k-space."""
        maps, _, after_masked = self._forward_factors
        return torch.fft.fftn(maps * x.unsqueeze(1), dim=(-2, -1), norm="ortho").mul_(after_masked)

    def adjoint(self, k: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) k-space -> (B, T, H, W) coil-combined image."""
        _, before_masked, maps_conj = self._adjoint_factors
        return (maps_conj * torch.fft.ifftn(k * before_masked, dim=(-2, -1), norm="ortho")).sum(dim=1)

    H = adjoint

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        """A^H A x for x (B, T, H, W)."""
        return self.adjoint(self.forward(x))

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Unmasked coil k-space F S x, (B, T, H, W) -> (B, C, T, H, W)."""
        maps, after, _ = self._forward_factors
        return torch.fft.fftn(maps * x.unsqueeze(1), dim=(-2, -1), norm="ortho").mul_(after)

    def reduce(self, k: torch.Tensor) -> torch.Tensor:
        """Unmasked coil combination S^H F^-1 k, (B, C, T, H, W) -> (B, T, H, W)."""
        before, _, maps_conj = self._adjoint_factors
        return (maps_conj * torch.fft.ifftn(k * before, dim=(-2, -1), norm="ortho")).sum(dim=1)


def hard_dc(x: torch.Tensor, k0: torch.Tensor, op: SenseOp) -> torch.Tensor:
    """Hard (noiseless) data consistency, paper eq. 6 with lambda -> infinity.

    k = F S x; k <- (1 - M) k + M k0; x <- S^H F^-1 k.

    Args:
        x: current image estimate (B, T, H, W) complex.
        k0: measured k-space (B, C, T, H, W) complex (zero where not sampled).
        op: SenseOp holding maps and mask.

    Returns:
        Image (B, T, H, W) complex.
    """
    m = op.mask
    if m is None:
        return op.reduce(k0)
    k = op.expand(x)
    k = k - m * k + m * k0
    return op.reduce(k)


def soft_dc(x: torch.Tensor, k0: torch.Tensor, op: SenseOp, lam: torch.Tensor | float) -> torch.Tensor:
    """Soft data consistency with regularisation weight lambda_0 (paper eq. 5-6).

    On sampled locations k <- (k + lam * k0) / (1 + lam); elsewhere k is kept.
    ``lam = inf`` reduces to :func:`hard_dc`; ``lam = 0`` leaves k unchanged.

    Args:
        x: (B, T, H, W) complex.
        k0: (B, C, T, H, W) complex measured k-space.
        op: SenseOp with maps and mask.
        lam: non-negative scalar (float or tensor, may be learnable).

    Returns:
        Image (B, T, H, W) complex.
    """
    if isinstance(lam, float) and lam == float("inf"):
        return hard_dc(x, k0, op)
    k = op.expand(x)
    m = op.mask if op.mask is not None else torch.ones((), device=k.device)
    lam = torch.as_tensor(lam, device=k.device, dtype=k.real.dtype)
    k_dc = (k + lam * k0) / (1 + lam)
    k = (1 - m) * k + m * k_dc
    return op.reduce(k)


def sampled_mean(kspace: torch.Tensor, mask: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
    """Mean of k-space over ``dim`` (the frames) taken only where ``mask`` samples it.

    Locations sampled in no frame are 0. Used for view sharing, for calibration from the
    time-averaged k-space and for the ACS filter of PromptMR's map estimation.

    Args:
        kspace: complex k-space, e.g. (B, C, T, H, W) or (C, T, H, W).
        mask: real or boolean, broadcastable to ``kspace``.
        dim: the axis averaged over.
        keepdim: keep ``dim`` with size 1.

    Returns:
        Complex tensor with ``dim`` reduced.
    """
    m = torch.broadcast_to(mask.to(kspace.real.dtype), kspace.shape)
    return (kspace * m).sum(dim, keepdim=keepdim) / m.sum(dim, keepdim=keepdim).clamp_min(1.0)
