"""Dynamic-region analysis: metrics inside and outside the moving part of the image.

The dynamic region of a series is where the temporal standard deviation of the
ground-truth magnitude reaches its ``percentile``-th percentile (90 by default): the
beating heart and its surroundings. PSNR (from the mean squared error inside the
region, over all frames) and SSIM (the local SSIM map averaged inside the region)
are reported for the dynamic region and for the rest of the image ("static").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DataError
from .metrics import EPS, Protocol, get_protocol, magnitude, prepare, psnr_from_mse, ssim_map

DEFAULT_PERCENTILE = 90.0


@dataclass(frozen=True)
class RegionMetrics:
    """PSNR / SSIM inside the dynamic region and outside it; tensors of shape (...) per series.

    Attributes:
        psnr_dynamic, psnr_static: dB.
        ssim_dynamic, ssim_static: mean local SSIM.
        fraction: share of pixels in the dynamic region.
    """

    psnr_dynamic: torch.Tensor
    psnr_static: torch.Tensor
    ssim_dynamic: torch.Tensor
    ssim_static: torch.Tensor
    fraction: torch.Tensor


def temporal_std(target: torch.Tensor) -> torch.Tensor:
    """Standard deviation over time of |target|: (..., T, H, W) -> (..., H, W)."""
    if target.ndim < 3:
        raise DataError(f"target must be (..., T, H, W), got shape {tuple(target.shape)}")
    return magnitude(target).std(dim=-3, correction=0)


def dynamic_mask(target: torch.Tensor, percentile: float = DEFAULT_PERCENTILE) -> torch.Tensor:
    """Boolean (..., H, W): temporal std of |target| >= its ``percentile``-th percentile per series."""
    if not 0.0 <= percentile <= 100.0:
        raise DataError(f"percentile must be in [0, 100], got {percentile}")
    s = temporal_std(target)
    flat = s.flatten(-2)
    thr = torch.quantile(flat.double(), percentile / 100.0, dim=-1).to(s.dtype)
    return s >= thr[..., None, None]


def _masked_mean(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean of v (..., T, h, w) over T and pixels where m (..., h, w) is True -> (...)."""
    mf = m.unsqueeze(-3).to(v.dtype)
    num = (v * mf).sum(dim=(-3, -2, -1))
    den = mf.sum(dim=(-3, -2, -1)) * v.shape[-3]
    return num / den.clamp_min(1)


def region_metrics(recon: torch.Tensor, target: torch.Tensor, protocol: str | Protocol = "global",
                   percentile: float = DEFAULT_PERCENTILE, mask: torch.Tensor | None = None) -> RegionMetrics:
    """PSNR and SSIM inside and outside the dynamic region.

    Images are normalised as the protocol says (:func:`~.metrics.prepare`: divided by the
    target series maximum, or each frame by its own maximum), so PSNR and SSIM do not depend
    on the intensity units. The region's mean squared error, in units of the squared data
    range, is floored at ``EPS**2`` (an error-free region scores 240 dB, not ``inf``). The
    SSIM map, which is defined on the 'valid' region, is compared with the mask cropped
    accordingly.

    Args:
        recon: (..., T, H, W) complex or real.
        target: (..., T, H, W) complex or real.
        protocol: ``"global"`` or ``"paper"``.
        percentile: threshold percentile of the temporal standard deviation.
        mask: optional precomputed dynamic mask (..., H, W) bool.

    Returns:
        :class:`RegionMetrics` of shape (...).
    """
    p = get_protocol(protocol)
    d = prepare(recon, target, p)
    m = dynamic_mask(target, percentile) if mask is None else mask.bool()
    if m.shape != d.target.shape[:-3] + d.target.shape[-2:]:
        raise DataError(f"dynamic mask shape {tuple(m.shape)} does not match (..., H, W) of {tuple(d.target.shape)}")
    err = (d.recon - d.target) ** 2
    r = d.series_range  # 1 (0 for an all-zero target): d holds images in units of their data range
    mse_dyn = _masked_mean(err, m).clamp_min(EPS**2)
    mse_sta = _masked_mean(err, ~m).clamp_min(EPS**2)
    smap = ssim_map(d.recon, d.target, d.frame_range, p.ssim)
    pad = (p.ssim.size - 1) // 2
    h, w = m.shape[-2:]
    mc = m[..., pad:h - pad, pad:w - pad]
    return RegionMetrics(psnr_from_mse(mse_dyn, r), psnr_from_mse(mse_sta, r),
                         _masked_mean(smap, mc), _masked_mean(smap, ~mc), m.float().mean(dim=(-2, -1)))
