"""Figures (matplotlib, Agg backend): reconstructions with error maps, x-t profiles,
and dynamic-region bar charts.

All images are magnitudes; every panel of a figure shares the grey scale of the
target so that brightness differences are visible. Paper-style figures (the default,
``FigureConfig.paper_style``) show the rows between the top and bottom quarters, as the
paper's figures do (cine k-space is oversampled along the readout, H), and print each
reconstruction's SSIM over that cropped sequence (all frames, ``FigureConfig.ssim_protocol``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..errors import DataError  # noqa: E402
from ..files import atomic_output  # noqa: E402
from .metrics import series_metrics  # noqa: E402
from .report import DynamicSummaryRow  # noqa: E402


@dataclass(frozen=True)
class FigureConfig:
    """Attributes:
        error_gain: multiplier of |recon - target| in the error maps.
        dpi: resolution of saved PNGs.
        panel_inches: size of one image panel.
        paper_style: crop the top and bottom quarters of the rows (:func:`paper_crop`) and
            print each reconstruction's SSIM over the cropped sequence.
        ssim_protocol: metric protocol of the printed SSIM (:mod:`.metrics`).
    """

    error_gain: float = 5.0
    dpi: int = 120
    panel_inches: float = 2.2
    paper_style: bool = True
    ssim_protocol: str = "paper"


def _mag(x: torch.Tensor | np.ndarray) -> np.ndarray:
    a = x.detach().cpu().abs().numpy() if isinstance(x, torch.Tensor) else np.abs(np.asarray(x))
    if a.ndim != 3:
        raise DataError(f"expected a (T, H, W) series, got shape {a.shape}")
    return a.astype(np.float64)


def _save(fig: plt.Figure, path: str | Path, dpi: int) -> Path:
    """Save and close ``fig`` atomically (:func:`cinerecon.files.atomic_output`; replaces ``path``);
    the format follows ``path``'s suffix (PNG without one)."""
    path = Path(path)
    try:
        with atomic_output(path, overwrite=True) as tmp, tmp.open("wb") as fh:
            fig.savefig(fh, format=path.suffix[1:].lower() or "png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def paper_crop(series: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Rows ``H // 4`` to ``H - H // 4`` of a (..., H, W) series: the top and bottom quarters removed."""
    h = series.shape[-2]
    return series[..., h // 4:h - h // 4, :]


def ssim_labels(target: torch.Tensor | np.ndarray, recons: Mapping[str, torch.Tensor | np.ndarray],
                cfg: FigureConfig = FigureConfig()) -> dict[str, str]:
    """``"SSIM 0.9512"`` per reconstruction over the (paper-cropped) sequence, all frames.

    Args:
        target: (T, H, W) series (complex or magnitude).
        recons: method -> (T, H, W) series.
        cfg: ``paper_style`` (crop first) and ``ssim_protocol``.

    Returns:
        method -> label; empty when the images are smaller than the SSIM window.
    """
    crop = paper_crop if cfg.paper_style else (lambda x: x)
    tgt = torch.as_tensor(crop(target))
    if min(tgt.shape[-2:]) < 7:
        return {}
    return {name: f"SSIM {float(series_metrics(torch.as_tensor(crop(rec)), tgt, cfg.ssim_protocol, False).ssim):.4f}"
            for name, rec in recons.items()}


def error_map(recon: np.ndarray, target: np.ndarray, gain: float) -> np.ndarray:
    """gain * |recon - target| (same shape)."""
    return gain * np.abs(recon - target)


def plot_reconstructions(target: torch.Tensor | np.ndarray, recons: Mapping[str, torch.Tensor | np.ndarray],
                         path: str | Path, frame: int | None = None, title: str = "",
                         cfg: FigureConfig = FigureConfig()) -> Path:
    """Target and reconstructions of one frame (top row) and magnified error maps (bottom row).

    Paper style (``cfg.paper_style``): the top and bottom quarters of the rows are cropped and
    each reconstruction's title gives its SSIM over the cropped sequence (:func:`ssim_labels`).

    Args:
        target: (T, H, W) series.
        recons: method -> (T, H, W) series.
        path: output PNG.
        frame: frame index (default: the middle frame).
        title: figure title.
        cfg: error gain, sizes and style.
    """
    gt = _mag(target)
    for name, rec in recons.items():
        if tuple(rec.shape) != gt.shape:
            raise DataError(f"reconstruction {name!r} has shape {tuple(rec.shape)}, target {gt.shape}")
    labels = ssim_labels(target, recons, cfg)
    if cfg.paper_style:
        gt = paper_crop(gt)
    t = gt.shape[0] // 2 if frame is None else frame
    vmax = float(gt[t].max()) or 1.0
    n = 1 + len(recons)
    fig, ax = plt.subplots(2, n, figsize=(cfg.panel_inches * n, cfg.panel_inches * 2), squeeze=False,
                           layout="constrained")
    ax[0, 0].imshow(gt[t], cmap="gray", vmin=0, vmax=vmax)
    ax[0, 0].set_title("target")
    ax[1, 0].axis("off")
    for j, (name, rec) in enumerate(recons.items(), start=1):
        r = paper_crop(_mag(rec)) if cfg.paper_style else _mag(rec)
        ax[0, j].imshow(r[t], cmap="gray", vmin=0, vmax=vmax)
        ax[0, j].set_title(f"{name}\n{labels[name]}" if name in labels else name)
        ax[1, j].imshow(error_map(r[t], gt[t], cfg.error_gain), cmap="inferno", vmin=0, vmax=vmax)
        ax[1, j].set_title(f"|error| x{cfg.error_gain:g}")
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    if title:
        fig.suptitle(title)
    return _save(fig, path, cfg.dpi)


def xt_profile(series: np.ndarray, point: tuple[int, int] | None = None, axis: str = "vertical") -> np.ndarray:
    """Intensity along a line through ``point`` over time.

    Args:
        series: (T, H, W) magnitudes.
        point: (row, col) the line passes through (default: the image centre).
        axis: ``"vertical"`` (the column through ``point``: (H, T)) or ``"horizontal"``
            (the row: (W, T)).

    Returns:
        (H or W, T) array: position down, time to the right.
    """
    _, h, w = series.shape
    r, c = (h // 2, w // 2) if point is None else point
    if not (0 <= r < h and 0 <= c < w):
        raise DataError(f"profile point {(r, c)} outside the image ({h}, {w})")
    if axis == "vertical":
        return series[:, :, c].T
    if axis == "horizontal":
        return series[:, r, :].T
    raise DataError(f"profile axis must be 'vertical' or 'horizontal', got {axis!r}")


def plot_xt_profiles(target: torch.Tensor | np.ndarray, recons: Mapping[str, torch.Tensor | np.ndarray],
                     path: str | Path, point: tuple[int, int] | None = None, axis: str = "vertical",
                     title: str = "", cfg: FigureConfig = FigureConfig()) -> Path:
    """x-t (or y-t) profiles of target and reconstructions along a line through ``point``.

    Top row: profiles; bottom row: magnified |error| of each profile. Paper style crops a
    vertical profile to the rows between the top and bottom quarters.
    """
    gt = _mag(target)
    crop = paper_crop if cfg.paper_style and axis == "vertical" else (lambda a: a)
    ref = crop(xt_profile(gt, point, axis))  # (H, T): rows cropped
    vmax = float(ref.max()) or 1.0
    n = 1 + len(recons)
    fig, ax = plt.subplots(2, n, figsize=(cfg.panel_inches * n, cfg.panel_inches * 2), squeeze=False,
                           layout="constrained")
    ax[0, 0].imshow(ref, cmap="gray", vmin=0, vmax=vmax, aspect="auto")
    ax[0, 0].set_title("target")
    ax[0, 0].set_xlabel("frame")
    ax[1, 0].axis("off")
    for j, (name, rec) in enumerate(recons.items(), start=1):
        prof = crop(xt_profile(_mag(rec), point, axis))
        ax[0, j].imshow(prof, cmap="gray", vmin=0, vmax=vmax, aspect="auto")
        ax[0, j].set_title(name)
        ax[1, j].imshow(error_map(prof, ref, cfg.error_gain), cmap="inferno", vmin=0, vmax=vmax, aspect="auto")
        ax[1, j].set_title(f"|error| x{cfg.error_gain:g}")
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    ax[0, 0].set_ylabel("position along the line")
    for a in ax[1, 1:]:
        a.set_xlabel("frame")
    if title:
        fig.suptitle(title)
    return _save(fig, path, cfg.dpi)


def plot_dynamic_bars(rows: Sequence[DynamicSummaryRow], path: str | Path, title: str = "",
                      cfg: FigureConfig = FigureConfig()) -> Path:
    """Grouped bars of PSNR and SSIM in the dynamic and static regions per method (± std)."""
    if not rows:
        raise DataError("no dynamic-region rows to plot")
    methods = [r.method for r in rows]
    x = np.arange(len(methods))
    fig, ax = plt.subplots(1, 2, figsize=(max(6.0, 1.2 * len(methods) * 2), 3.2), layout="constrained")
    for a, metric in zip(ax, ("psnr", "ssim")):
        dyn = [getattr(r, f"{metric}_dynamic") for r in rows]
        dyn_sd = [getattr(r, f"{metric}_dynamic_std") for r in rows]
        sta = [getattr(r, f"{metric}_static") for r in rows]
        sta_sd = [getattr(r, f"{metric}_static_std") for r in rows]
        a.bar(x - 0.2, dyn, 0.4, yerr=dyn_sd, label="dynamic", color="tab:red", capsize=2)
        a.bar(x + 0.2, sta, 0.4, yerr=sta_sd, label="static", color="tab:blue", capsize=2)
        a.set_xticks(x, methods, rotation=30, ha="right")
        a.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        if metric == "ssim":
            lo = min(min(dyn), min(sta))
            a.set_ylim(max(0.0, lo - 0.1), 1.0)
        a.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path, cfg.dpi)
