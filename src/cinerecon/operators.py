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

import torch

from .fft import centring_ramps, complex_dtype


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
    operator's own products: the forward input ramp into the maps and the output ramp, with
    the mask, into one product after the FFT; the inverse ones into the mask and the
    conjugated maps. Each application then makes two element-wise passes over the multi-coil
    k-space fewer than ``M fft2c(S x)`` and ``S^H ifft2c(M k)`` (the same values to float
    round-off). The factors are rebuilt on every call (products over (B, C, 1, H, W) and the
    mask's shape, small against the k-space), so the operator stays a pure function of its
    tensors under autograd, checkpointing and in-place updates.

    Args:
        maps: coil sensitivities (B, C, 1, H, W) complex.
        mask: sampling mask broadcastable to (B, C, T, H, W); ``None`` means fully sampled.
    """

    maps: torch.Tensor
    mask: torch.Tensor | None = None

    def _ramps(self, like: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Centring ramps (H, W) for ``like``'s last two axes, in the complex dtype of maps x ``like``."""
        dtype = complex_dtype(torch.promote_types(self.maps.dtype, like.dtype))
        return centring_ramps(like.shape[-2:], inverse, dtype, like.device)

    def _masked(self, ramp: torch.Tensor) -> torch.Tensor:
        return ramp if self.mask is None else (ramp * self.mask).to(ramp.dtype)

    def _fft(self, x: torch.Tensor, masked: bool) -> torch.Tensor:
        before, after = self._ramps(x, inverse=False)
        y = torch.fft.fftn((self.maps * before) * x.unsqueeze(1), dim=(-2, -1), norm="ortho")
        return _times(y, self._masked(after) if masked else after)

    def _ifft(self, k: torch.Tensor, masked: bool) -> torch.Tensor:
        before, after = self._ramps(k, inverse=True)
        y = torch.fft.ifftn(k * (self._masked(before) if masked else before), dim=(-2, -1), norm="ortho")
        return ((self.maps * after.conj()).conj() * y).sum(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W) image -> (B, C, T, H, W) masked k-space."""
        return self._fft(x, masked=True)

    def adjoint(self, k: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) k-space -> (B, T, H, W) coil-combined image."""
        return self._ifft(k, masked=True)

    H = adjoint

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        """A^H A x for x (B, T, H, W)."""
        return self.adjoint(self.forward(x))

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Unmasked coil k-space F S x, (B, T, H, W) -> (B, C, T, H, W)."""
        return self._fft(x, masked=False)

    def reduce(self, k: torch.Tensor) -> torch.Tensor:
        """Unmasked coil combination S^H F^-1 k, (B, C, T, H, W) -> (B, T, H, W)."""
        return self._ifft(k, masked=False)


def _times(y: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``y * factor``, in place on ``y`` (a fresh FFT output) when the product keeps its shape and dtype."""
    if torch.broadcast_shapes(y.shape, factor.shape) == y.shape and torch.promote_types(y.dtype, factor.dtype) == y.dtype:
        return y.mul_(factor)
    return y * factor


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
