"""Unit-free classical reconstructions: a power-of-two scale of the sampled k-space.

Scanner k-space comes in arbitrary units, and the methods' sums of squares (CG's residual
norms, GRAPPA's calibration normal equations, L+S's change test) overflow or underflow
float32 / float64 far from unit scale: CG-SENSE returned zeros at x1e-20 and x1e20, L+S the
zero-filled image from x1e18, GRAPPA an MKL error from x1e20. Every classical method therefore
divides the k-space (and any start or prior image on its scale) by :func:`data_scale` on entry
and multiplies its result back, so that ``method(s * k) == s * method(k)`` up to float
rounding for any s that keeps ``s * k`` finite.

The scale is a power of two, so dividing and multiplying by it is exact in floating point:
results at ordinary scales are bit-identical to the methods without it (every step of the
methods is homogeneous in the data, apart from guards against exact zeros).
"""

from __future__ import annotations

import torch


def data_scale(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Power-of-two scale of each batch item's sampled k-space, (B, 1, 1, 1, 1) real.

    The scale is 2^e with the largest sampled ``max(|Re k|, |Im k|)`` of the item in
    [2^(e-1), 2^e), so the divided k-space peaks in [0.5, 1). Items whose sampled k-space is all
    zero or not finite get 1 (their result is what the method gives unscaled). Computed on
    the k-space's device without reading a value to the host and outside autograd (a
    constant of the data, as a unit would be).

    Args:
        kspace: (B, C, T, H, W) complex.
        mask: real or boolean, broadcastable to ``kspace`` (nonzero = sampled).

    Returns:
        (B, 1, 1, 1, 1) tensor of the k-space's real dtype.
    """
    with torch.no_grad():
        parts = torch.view_as_real(kspace.detach().resolve_conj())  # (B, C, T, H, W, 2)
        sampled = (mask.detach() != 0).unsqueeze(-1)
        peak = torch.where(sampled, parts.abs(), torch.zeros((), dtype=parts.dtype, device=parts.device))
        peak = peak.reshape(kspace.shape[0], -1).amax(dim=1)  # (B,)
        ok = torch.isfinite(peak) & (peak > 0)
        one = torch.ones_like(peak)
        _, exponent = torch.frexp(torch.where(ok, peak, one))
        scale = torch.where(ok, torch.ldexp(one, exponent), one)
    return scale.reshape(-1, 1, 1, 1, 1)
