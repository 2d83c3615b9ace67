"""The paper's training loss: k-space MSE, image L1 + MSE, and SSIM on real/imag channels.

    total = w_kspace * MSE(F S x, F S y)
          + w_image * (image_l1 * L1(x, y) + image_mse * MSE(x, y))
          + w_ssim * (1 - SSIM(x, y))

x is the predicted and y the target image (B, T, H, W) complex; MSE and L1 average over
all real and imaginary values. F S is the unmasked coil expansion :meth:`SenseOp.expand`
(so the k-space term compares full multi-coil k-space). SSIM is computed frame by frame
with a uniform window (7x7), k1 = 0.01, k2 = 0.03, sample covariances (as skimage's
default) over the window positions lying fully inside the image, on the real and on the
imaginary channel separately, each with the data range max - min of that channel of the
target series; the two mean SSIMs are averaged.

Models whose output is a real magnitude (PromptMR's original function returns the
root-sum-of-squares magnitude) cannot produce the target's phase; for them the loss compares
magnitudes: L1 + MSE between ``x`` and ``|y|``, SSIM on the magnitude (data range of ``|y|``
per series), and no k-space term (a magnitude has no k-space that the coil model could
expand). This is our choice; PromptMR's authors trained with an SSIM loss on the magnitude.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..errors import DataError
from ..operators import SenseOp
from .config import LossConfig


class LossTerms(NamedTuple):
    """The weighted total and the unweighted terms (0 for a term whose weight is 0)."""

    total: torch.Tensor
    kspace: torch.Tensor
    l1: torch.Tensor
    mse: torch.Tensor
    ssim: torch.Tensor


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float, window: int = 7,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM of real images with a uniform window over the valid window positions.

    Args:
        x: (N, H, W) real, the estimate.
        y: (N, H, W) real, the reference.
        data_range: scalar or (N,) dynamic range per image.
        window: side of the square uniform window (H, W >= window).
        k1: luminance constant.
        k2: contrast constant.

    Returns:
        (N,) mean SSIM per image.
    """
    if x.shape != y.shape or x.ndim != 3:
        raise DataError(f"ssim needs two (N, H, W) tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    n, h, w = x.shape
    if h < window or w < window:
        raise DataError(f"ssim window {window} is larger than the image (H, W) = ({h}, {w})")
    dr = torch.as_tensor(data_range, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    c1 = (k1 * dr) ** 2
    c2 = (k2 * dr) ** 2
    stack = torch.stack([x, y, x * x, y * y, x * y], dim=1)  # (N, 5, H, W)
    mu_x, mu_y, m_xx, m_yy, m_xy = F.avg_pool2d(stack, window, stride=1).split(1, dim=1)  # (N, 1, H', W')
    cov_norm = window * window / (window * window - 1.0)
    var_x = cov_norm * (m_xx - mu_x * mu_x)
    var_y = cov_norm * (m_yy - mu_y * mu_y)
    cov_xy = cov_norm * (m_xy - mu_x * mu_y)
    num = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (num / den).mean(dim=(1, 2, 3))


def series_ssim_loss(pred: torch.Tensor, target: torch.Tensor, window: int = 7, k1: float = 0.01,
                     k2: float = 0.03) -> torch.Tensor:
    """1 - SSIM of real image series, averaged over all frames; data range max - min per target series.

    Args:
        pred: (N, T, H, W) real.
        target: (N, T, H, W) real.
        window, k1, k2: SSIM parameters.

    Returns:
        Scalar loss.
    """
    n, t, h, w = target.shape
    flat = target.reshape(n, -1)
    rng = (flat.amax(dim=-1) - flat.amin(dim=-1)).clamp_min(torch.finfo(target.dtype).tiny)  # (N,)
    s = ssim(pred.reshape(-1, h, w), target.reshape(-1, h, w), rng[:, None].expand(n, t).reshape(-1), window, k1, k2)
    return 1.0 - s.mean()


def complex_ssim_loss(pred: torch.Tensor, target: torch.Tensor, window: int = 7, k1: float = 0.01,
                      k2: float = 0.03) -> torch.Tensor:
    """1 - SSIM averaged over the real and imaginary channels and all frames.

    The real and the imaginary channel of each item are two real series for
    :func:`series_ssim_loss` (each with its own data range).

    Args:
        pred: (B, T, H, W) complex.
        target: (B, T, H, W) complex.
        window, k1, k2: SSIM parameters.

    Returns:
        Scalar loss.
    """
    b, t, h, w = target.shape
    pr = torch.view_as_real(pred).permute(0, 4, 1, 2, 3).reshape(2 * b, t, h, w)  # (B*2, T, H, W)
    tr = torch.view_as_real(target).permute(0, 4, 1, 2, 3).reshape(2 * b, t, h, w)
    return series_ssim_loss(pr, tr, window, k1, k2)


def _real_mean(fn, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return fn(torch.view_as_real(a), torch.view_as_real(b))


def _magnitude_loss(pred: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> LossTerms:
    """The loss of a real-valued (magnitude) prediction against ``|target|`` (no k-space term)."""
    pred = pred.float() if pred.dtype != torch.float64 else pred
    mag = target.abs().to(pred.dtype)
    zero = pred.new_zeros(())
    l1 = F.l1_loss(pred, mag) if cfg.w_image and cfg.image_l1 else zero
    mse = F.mse_loss(pred, mag) if cfg.w_image and cfg.image_mse else zero
    s_term = series_ssim_loss(pred, mag, cfg.ssim_window, cfg.ssim_k1, cfg.ssim_k2) if cfg.w_ssim else zero
    total = cfg.w_image * (cfg.image_l1 * l1 + cfg.image_mse * mse) + cfg.w_ssim * s_term
    return LossTerms(total, zero, l1, mse, s_term)


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, maps: torch.Tensor,
                        cfg: LossConfig | None = None) -> LossTerms:
    """The paper's weighted loss.

    Args:
        pred: (B, T, H, W) complex predicted image, or real for a magnitude-output model
            (then the magnitude form of the module docstring).
        target: (B, T, H, W) complex fully sampled target image.
        maps: (B, C, 1, H, W) complex coil maps (for the k-space term).
        cfg: weights; the paper's by default.

    Returns:
        :class:`LossTerms` with the total to back-propagate.
    """
    cfg = cfg if cfg is not None else LossConfig()
    if pred.shape != target.shape:
        raise DataError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if not pred.is_complex():
        return _magnitude_loss(pred, target, cfg)
    pred = pred.to(torch.complex64) if pred.dtype != torch.complex128 else pred
    target = target.to(pred.dtype)
    zero = pred.real.new_zeros(())
    k_term = l1 = mse = s_term = zero
    if cfg.w_kspace:
        # F S is linear: one expansion of the difference instead of one per image
        k_term = torch.view_as_real(SenseOp(maps.to(pred.dtype)).expand(pred - target)).square().mean()
    if cfg.w_image and cfg.image_l1:
        l1 = _real_mean(F.l1_loss, pred, target)
    if cfg.w_image and cfg.image_mse:
        mse = _real_mean(F.mse_loss, pred, target)
    if cfg.w_ssim:
        s_term = complex_ssim_loss(pred, target, cfg.ssim_window, cfg.ssim_k1, cfg.ssim_k2)
    total = (cfg.w_kspace * k_term + cfg.w_image * (cfg.image_l1 * l1 + cfg.image_mse * mse)
             + cfg.w_ssim * s_term)
    return LossTerms(total, k_term, l1, mse, s_term)
