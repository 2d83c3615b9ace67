"""Image-quality metrics on magnitude cine series: PSNR, SSIM, NMSE, HaarPSI (and DISTS).

All functions are torch-native and batched. Images are magnitude series of shape
(..., T, H, W); complex inputs are turned into magnitudes first. Per-frame values
have shape (..., T), per-series values shape (...).

Three protocols are available by name (:data:`PROTOCOLS`):

``"global"``
    The data range is the maximum magnitude of the *target series* (one number per
    series, the natural minimum of a magnitude image being 0). SSIM uses the
    11x11 Gaussian window (sigma 1.5) of Wang et al. 2004. Series PSNR and NMSE pool
    the squared error over all frames; the other metrics average the frames.

``"paper"``
    For comparability with Lyu et al. (CRUNet-MR) and the CMRxRecon evaluation code:
    each frame of the reconstruction and of the target is scaled by its *own*
    maximum, the data range is 1, SSIM uses a 7x7 uniform window with the sample
    covariance correction (scikit-image's default), k1 = 0.01, k2 = 0.03, and every
    series value is the mean of its per-frame values.

``"cmrxrecon"``
    The CMRxRecon2023 ranking protocol: the ``"paper"`` formulas (those of the challenge's
    ``Evaluation.py``: each image divided by its own maximum, scikit-image PSNR / SSIM with
    data range 1, NMSE) on what the challenge's ``run4Ranking.m`` keeps of a reconstruction:
    the magnitude of the first 3 frames (:data:`CMRXRECON_RANKING`), centre-cropped to
    round(H/3) x round(W/2) with MATLAB's rounding (half away from zero) and ``crop.m``'s
    window (0-based start ``n // 2 - m // 2``), in single precision (float32); a series
    value is the mean over the kept frames. Which slices are scored (the central two of
    each volume, :func:`ranking_slices`) and the per-volume ("per-subject") averaging are
    applied by :func:`cinerecon.evaluate.runner.evaluate_dir`, which sees whole volumes.

Every protocol divides reconstruction and target by the data range (one positive number per
series, or per frame under ``"paper"``) before anything is squared or multiplied, so the
metrics do not depend on the units of the data: multiplying k-space, reconstruction and target
by a common positive factor (1e-20 ... 1e20, float32 or float64) leaves every value unchanged
up to rounding. The low-level functions (:func:`psnr`, :func:`nmse`, :func:`ssim_map`,
:func:`haarpsi`) do the same with the data range they are given (:func:`nmse`: the target's
maximum). Where a metric is undefined it is left non-finite rather than made up: an all-zero
target (data range 0) gives NaN or -inf and a zero target frame an infinite NMSE;
:func:`cinerecon.evaluate.runner.evaluate_dir` refuses to write such values. Equal images (a
fully sampled R01 "reconstruction") score 240 dB: the PSNR's error is floored at ``EPS**2`` of
the squared data range, as in the dynamic regions.

DISTS (:mod:`.dists`) is computed and stored as a distance (0 for identical images), as
defined by Ding et al.; tables (:mod:`.report`) show 1 - DISTS like the paper. DISTS inputs
are the protocol-normalised magnitudes divided by the frame's data range, clipped to [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError

#: Smallest mean squared error, in units of the squared data range, that the dynamic-region PSNR
#: (:mod:`.dynamic`) uses (EPS**2): a relative guard, the same at every intensity scale.
EPS = 1e-12
DISTS_CHUNK = 4  # frames per DISTS forward pass


@dataclass(frozen=True)
class SSIMConfig:
    """SSIM window and constants.

    Attributes:
        window: ``"uniform"`` (box) or ``"gaussian"``.
        win_size: side of the window for ``"uniform"`` (odd).
        sigma: standard deviation of the Gaussian window; its radius is
            ``int(3.5 * sigma + 0.5)`` (scikit-image's truncation).
        k1, k2: stabilising constants, C1 = (k1 R)^2, C2 = (k2 R)^2.
        sample_covariance: scale (co)variances by N / (N - 1), N the window's pixel count.
    """

    window: str = "uniform"
    win_size: int = 7
    sigma: float = 1.5
    k1: float = 0.01
    k2: float = 0.03
    sample_covariance: bool = True

    @property
    def size(self) -> int:
        """Side length of the window actually used."""
        if self.window == "gaussian":
            return 2 * int(3.5 * self.sigma + 0.5) + 1
        return self.win_size


GAUSSIAN_SSIM = SSIMConfig(window="gaussian", sample_covariance=False)
UNIFORM7_SSIM = SSIMConfig()


@dataclass(frozen=True)
class RankingSelection:
    """What the CMRxRecon2023 ranking scores of a volume (``run4Ranking.m``).

    Attributes:
        frames: the first ``frames`` frames of each slice (all when there are fewer).
        crop_divisors: (a, b): the centre crop is round(H / a) x round(W / b), MATLAB rounding.
        slices: the central ``slices`` slices of each volume (see :func:`ranking_slices`).
    """

    frames: int = 3
    crop_divisors: tuple[int, int] = (3, 2)
    slices: int = 2


CMRXRECON_RANKING = RankingSelection()


@dataclass(frozen=True)
class Protocol:
    """How images are normalised and metrics reduced.

    Attributes:
        name: protocol name.
        per_frame_max: scale each frame of reconstruction and target by its own maximum
            (data range 1); otherwise the data range is the target series maximum.
        ssim: SSIM window and constants.
        pooled_series: series PSNR / NMSE from the error pooled over all frames
            (otherwise the mean of per-frame values).
        ranking: frames, centre crop and slices to score (the CMRxRecon ranking), or None
            for whole series.
        dtype: compute in this precision (the ranking's single precision), or None to keep
            the input's.
    """

    name: str
    per_frame_max: bool
    ssim: SSIMConfig
    pooled_series: bool
    ranking: RankingSelection | None = None
    dtype: torch.dtype | None = None


PROTOCOLS: dict[str, Protocol] = {
    "global": Protocol("global", per_frame_max=False, ssim=GAUSSIAN_SSIM, pooled_series=True),
    "paper": Protocol("paper", per_frame_max=True, ssim=UNIFORM7_SSIM, pooled_series=False),
    "cmrxrecon": Protocol("cmrxrecon", per_frame_max=True, ssim=UNIFORM7_SSIM, pooled_series=False,
                          ranking=CMRXRECON_RANKING, dtype=torch.float32),
}

METRIC_NAMES = ("psnr", "ssim", "nmse", "haarpsi", "dists")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "nmse": False, "haarpsi": True, "dists": False}


def get_protocol(protocol: str | Protocol) -> Protocol:
    """Look up a protocol by name (``"global"``, ``"paper"`` or ``"cmrxrecon"``)."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown metric protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def matlab_round(x: float) -> int:
    """MATLAB's ``round``: to the nearest integer, halves away from zero (Python rounds them to even)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def centre_window(n: int, m: int) -> slice:
    """The ``m`` central indices of an axis of length ``n`` as MATLAB ``crop.m`` picks them.

    ``crop.m`` keeps 1-based ``floor(n/2)+1+ceil(-m/2) : floor(n/2)+ceil(m/2)``, i.e. 0-based
    ``n // 2 - m // 2`` onwards (the DC index of a centred FFT stays at the crop's ``m // 2``).
    """
    if not 1 <= m <= n:
        raise DataError(f"centre crop of {m} from an axis of length {n}")
    start = n // 2 - m // 2
    return slice(start, start + m)


def ranking_crop_size(h: int, w: int, sel: RankingSelection = CMRXRECON_RANKING) -> tuple[int, int]:
    """(round(H / a), round(W / b)) with MATLAB rounding, (a, b) = ``sel.crop_divisors``."""
    a, b = sel.crop_divisors
    return max(1, matlab_round(h / a)), max(1, matlab_round(w / b))


def ranking_slices(n: int, sel: RankingSelection = CMRXRECON_RANKING) -> tuple[int, ...]:
    """0-based slices of a volume of ``n`` slices that the ranking scores.

    ``run4Ranking.m`` keeps 1-based ``round(n/2)-1 : round(n/2)`` (MATLAB rounding), i.e.
    0-based ``round(n/2) - 2`` and ``round(n/2) - 1``, and every slice when ``n < 3``. (The
    2023 script reads n from ``[sx,sy,~,sz,t] = size(img)``, which for a 4-D (sx, sy, sz, t)
    array is the frame count; the 2024 script, and this function, use the slice count.)
    """
    if n < 1:
        raise DataError(f"a volume needs at least one slice, got {n}")
    if n < sel.slices + 1:
        return tuple(range(n))
    centre = matlab_round(n / 2)
    return tuple(range(centre - sel.slices, centre))


def select_for_ranking(x: torch.Tensor, sel: RankingSelection = CMRXRECON_RANKING) -> torch.Tensor:
    """The first ``sel.frames`` frames of (..., T, H, W), centre-cropped to :func:`ranking_crop_size`."""
    if x.ndim < 3:
        raise DataError(f"expected a series (..., T, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    ch, cw = ranking_crop_size(h, w, sel)
    return x[..., :sel.frames, centre_window(h, ch), centre_window(w, cw)]


def magnitude(x: torch.Tensor) -> torch.Tensor:
    """|x| as a real floating tensor (complex or real input)."""
    x = x.abs()
    return x if x.is_floating_point() else x.float()


def _positive(r: torch.Tensor) -> torch.Tensor:
    """``r`` where it is positive, else 1: a divisor that leaves all-zero images as they are."""
    return torch.where(r > 0, r, torch.ones_like(r))


def _image_range(data_range: torch.Tensor | float, x: torch.Tensor, dims: int) -> torch.Tensor:
    """The data range as a tensor of ``x``'s dtype that broadcasts against (..., *dims axes).

    A scalar stays a scalar; a tensor of shape ``x.shape[:-dims]`` gets ``dims`` trailing axes.
    """
    r = torch.as_tensor(data_range, dtype=x.dtype, device=x.device)
    return r.reshape(r.shape + (1,) * dims) if r.ndim else r


def _check_pair(x: torch.Tensor, y: torch.Tensor, min_dims: int = 2) -> None:
    if x.shape != y.shape:
        raise DataError(f"reconstruction shape {tuple(x.shape)} differs from target shape {tuple(y.shape)}")
    if x.ndim < min_dims:
        raise DataError(f"expected at least {min_dims} dims (..., H, W), got shape {tuple(x.shape)}")


def mse(x: torch.Tensor, y: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """Mean squared error over the last ``dims`` axes."""
    _check_pair(x, y, dims)
    return ((x - y) ** 2).mean(dim=tuple(range(-dims, 0)))


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float, dims: int = 2) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, 10 log10(R^2 / MSE), over the last ``dims`` axes.

    Computed as -10 log10(MSE(x / R, y / R)), which no intensity scale over- or underflows.

    Args:
        x: reconstruction (..., H, W) real.
        y: target, same shape.
        data_range: R, a scalar or a tensor of shape ``x.shape[:-dims]``.
        dims: number of trailing axes the error is averaged over.

    Returns:
        Tensor of shape ``x.shape[:-dims]`` (240 dB where the images are equal: the error is
        floored at ``EPS**2`` of the squared range; NaN or -inf where R is 0).
    """
    _check_pair(x, y, dims)
    r = _image_range(data_range, x, dims)
    # the error floor EPS**2 of the squared range: equal images score 240 dB (as the dynamic regions do)
    return psnr_from_mse(mse(x / r, y / r, dims).clamp_min(EPS**2), 1.0)


def nmse(x: torch.Tensor, y: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """Normalised MSE ||x - y||^2 / ||y||^2 over the last ``dims`` axes.

    Both images are divided by the target's maximum magnitude first, so no intensity scale
    over- or underflows. An all-zero target gives ``inf`` (NaN when x is zero too): NMSE is
    undefined there.
    """
    _check_pair(x, y, dims)
    d = tuple(range(-dims, 0))
    s = _positive(y.abs().amax(dim=d, keepdim=True))
    x, y = x / s, y / s
    return ((x - y) ** 2).sum(dim=d) / (y**2).sum(dim=d)


def _window(cfg: SSIMConfig, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1-D window of length ``cfg.size``."""
    n = cfg.size
    if cfg.window == "uniform":
        if n < 1 or n % 2 == 0:
            raise ConfigError(f"SSIM win_size must be a positive odd integer, got {n}")
        return torch.full((n,), 1.0 / n, dtype=dtype, device=device)
    if cfg.window == "gaussian":
        r = torch.arange(n, dtype=dtype, device=device) - (n - 1) / 2
        g = torch.exp(-0.5 * (r / cfg.sigma) ** 2)
        return g / g.sum()
    raise ConfigError(f"SSIM window must be 'uniform' or 'gaussian', got {cfg.window!r}")


def _filter_valid(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' filtering of (N, 1, H, W) with the 1-D window ``w``."""
    n = w.numel()
    x = F.conv2d(x, w.view(1, 1, n, 1))
    return F.conv2d(x, w.view(1, 1, 1, n))


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float,
             cfg: SSIMConfig = UNIFORM7_SSIM) -> torch.Tensor:
    """Local SSIM map on the 'valid' region (Wang et al. 2004).

    Both images are divided by the data range R first (then C1 = k1^2, C2 = k2^2), which
    leaves SSIM unchanged and keeps the local moments in range at any intensity scale.
    Equals scikit-image's ``structural_similarity(..., full=True)`` map cropped by
    ``(size - 1) // 2`` pixels on each side, where it does not depend on padding.

    Args:
        x: reconstruction (..., H, W) real.
        y: target (..., H, W) real.
        data_range: scalar or tensor of shape ``x.shape[:-2]``.
        cfg: window and constants.

    Returns:
        (..., H - s + 1, W - s + 1) with s = ``cfg.size``.
    """
    _check_pair(x, y)
    s = cfg.size
    h, w = x.shape[-2:]
    if h < s or w < s:
        raise DataError(f"image size ({h}, {w}) is smaller than the SSIM window {s}x{s}")
    lead = x.shape[:-2]
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    xs = x.reshape(-1, 1, h, w).to(dtype)
    ys = y.reshape(-1, 1, h, w).to(dtype)
    r = torch.as_tensor(data_range, dtype=dtype, device=x.device).reshape(-1, 1, 1, 1)
    xs, ys = xs / r, ys / r
    win = _window(cfg, dtype, x.device)
    stack = torch.cat([xs, ys, xs * xs, ys * ys, xs * ys], dim=0)
    mx, my, mxx, myy, mxy = _filter_valid(stack, win).chunk(5, dim=0)
    cov_norm = s * s / (s * s - 1) if cfg.sample_covariance else 1.0
    vx = cov_norm * (mxx - mx * mx)
    vy = cov_norm * (myy - my * my)
    vxy = cov_norm * (mxy - mx * my)
    c1 = cfg.k1**2
    c2 = cfg.k2**2
    smap = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return smap.reshape(lead + smap.shape[-2:])


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float,
         cfg: SSIMConfig = UNIFORM7_SSIM) -> torch.Tensor:
    """Mean SSIM per image, shape ``x.shape[:-2]`` (see :func:`ssim_map`)."""
    return ssim_map(x, y, data_range, cfg).mean(dim=(-2, -1))


@dataclass(frozen=True)
class HaarPSIConfig:
    """HaarPSI parameters (Reisenhofer et al. 2018; constants for images in [0, 255]).

    Attributes:
        scales: number of Haar scales (the coarsest gives the weights).
        subsample: 2x2 mean-pool before the decomposition (viewing distance).
        c: similarity constant C.
        alpha: logistic slope.
    """

    scales: int = 3
    subsample: bool = True
    c: float = 30.0
    alpha: float = 4.2


#: Smallest image side (H and W) that :func:`haarpsi` accepts with the default :class:`HaarPSIConfig`.
HAARPSI_MIN_SIZE = 2 ** (HaarPSIConfig().scales + 1)


def _haar_coefficients(x: torch.Tensor, scales: int) -> torch.Tensor:
    """Haar responses of (N, 1, H, W): (N, 2 * scales, H, W), [s1 rows, s1 cols, s2 rows, ...].

    The filter at scale j is a 2^j x 2^j block with entries +-2^-j (top half minus
    bottom half, and its transpose), applied with the zero padding of MATLAB's
    ``conv2(..., 'same')``.
    """
    out = []
    for j in range(1, scales + 1):
        n = 2**j
        k = torch.full((n, n), 1.0 / n, dtype=x.dtype, device=x.device)
        k[n // 2:] *= -1
        kernels = torch.stack([k, k.t()]).unsqueeze(1)
        pad = (n // 2 - 1, n // 2, n // 2 - 1, n // 2)
        out.append(F.conv2d(F.pad(x, pad), kernels))
    return torch.cat(out, dim=1)


def haarpsi(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float,
            cfg: HaarPSIConfig = HaarPSIConfig()) -> torch.Tensor:
    """Haar wavelet-based perceptual similarity index of grayscale images, in (0, 1].

    Implements Reisenhofer, Bosse, Kutyniok & Wiegand, "A Haar wavelet-based perceptual
    similarity index for image quality assessment", Signal Process. Image Commun. 2018:
    images are scaled to [0, 255], optionally 2x2 mean-pooled, decomposed with Haar
    filters at ``scales`` scales; the local similarity of the two finest scales per
    orientation, passed through a logistic function, is averaged with weights given by
    the coarsest-scale magnitudes, and the result is mapped back by the logit and squared.

    Args:
        x: reconstruction (..., H, W) real, values in [0, data_range].
        y: target, same shape.
        data_range: scalar or tensor of shape ``x.shape[:-2]``.
        cfg: parameters.

    Returns:
        Tensor of shape ``x.shape[:-2]``; 1 for identical images. The index is symmetric.
    """
    _check_pair(x, y)
    h, w = x.shape[-2:]
    k = 2 ** (cfg.scales + 1)
    if h < k or w < k:
        raise DataError(f"HaarPSI with {cfg.scales} scales needs images of at least {k}x{k}, got ({h}, {w})")
    lead = x.shape[:-2]
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    r = torch.as_tensor(data_range, dtype=dtype, device=x.device).reshape(-1, 1, 1, 1)
    xs = x.reshape(-1, 1, h, w).to(dtype) / r * 255.0
    ys = y.reshape(-1, 1, h, w).to(dtype) / r * 255.0
    both = torch.cat([xs, ys], dim=0)
    if cfg.subsample:
        both = F.avg_pool2d(F.pad(both, (0, w % 2, 0, h % 2)), kernel_size=2, stride=2)
    cx, cy = _haar_coefficients(both, cfg.scales).abs().chunk(2, dim=0)
    weights = torch.maximum(cx[:, -2:], cy[:, -2:])  # coarsest scale, two orientations
    sims = []
    for o in range(2):
        idx = [o, o + 2]  # two finest scales of orientation o
        a, b = cx[:, idx], cy[:, idx]
        sims.append(((2 * a * b + cfg.c) / (a * a + b * b + cfg.c)).mean(dim=1))
    sim = torch.stack(sims, dim=1)
    eps = torch.finfo(dtype).eps
    score = ((torch.sigmoid(cfg.alpha * sim) * weights).sum(dim=(1, 2, 3)) + eps) / (weights.sum(dim=(1, 2, 3)) + eps)
    score = (torch.log(score / (1 - score)) / cfg.alpha) ** 2
    return score.reshape(lead)


@dataclass(frozen=True)
class Metrics:
    """Metric values; every field has the same shape ((..., T) per frame or (...) per series).

    ``haarpsi`` and ``dists`` are None when not computed. DISTS is a distance (0 for
    identical images); the others are similarities except NMSE.
    """

    psnr: torch.Tensor
    ssim: torch.Tensor
    nmse: torch.Tensor
    haarpsi: torch.Tensor | None = None
    dists: torch.Tensor | None = None

    def names(self) -> tuple[str, ...]:
        """Names of the metrics that were computed, in :data:`METRIC_NAMES` order."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name) is not None)

    def get(self, name: str) -> torch.Tensor | None:
        """Value of metric ``name`` (one of :data:`METRIC_NAMES`)."""
        if name not in METRIC_NAMES:
            raise ConfigError(f"unknown metric {name!r}; choose one of {METRIC_NAMES}")
        return getattr(self, name)


@dataclass(frozen=True)
class Prepared:
    """Magnitude images normalised for a protocol, in units of their data range.

    Attributes:
        recon: (..., T, H, W) real, divided by the data range (global: the target series
            maximum; per-frame scaling: its own frame maximum).
        target: (..., T, H, W) real, likewise (its maximum is 1).
        frame_range: (..., T) data range per frame in these units: 1, or 0 for an all-zero
            target series under ``"global"`` (the metrics are then undefined: NaN / inf).
        series_range: (...) data range per series, likewise.
    """

    recon: torch.Tensor
    target: torch.Tensor
    frame_range: torch.Tensor
    series_range: torch.Tensor


def prepare(recon: torch.Tensor, target: torch.Tensor, protocol: str | Protocol = "global") -> Prepared:
    """Take magnitudes and apply the protocol's scaling.

    Both images are divided by the data range once, here, so every metric computed from the
    result is independent of the intensity units. Only an exactly zero maximum is left
    undivided (an all-zero frame or series stays zero).

    Args:
        recon: (..., T, H, W) complex or real reconstruction.
        target: (..., T, H, W) complex or real target.
        protocol: ``"global"``, ``"paper"`` or ``"cmrxrecon"`` (see module docstring).

    Returns:
        :class:`Prepared`; under ``"cmrxrecon"`` the images are (..., min(T, 3), round(H/3),
        round(W/2)) float32.
    """
    p = get_protocol(protocol)
    x, y = magnitude(recon), magnitude(target)
    _check_pair(x, y, 3)
    if p.ranking is not None:
        x, y = select_for_ranking(x, p.ranking), select_for_ranking(y, p.ranking)
    if p.dtype is not None:
        x, y = x.to(p.dtype), y.to(p.dtype)
    if p.per_frame_max:
        x = x / _positive(x.amax(dim=(-2, -1), keepdim=True))
        y = y / _positive(y.amax(dim=(-2, -1), keepdim=True))
        fr = torch.ones(x.shape[:-2], dtype=x.dtype, device=x.device)
        return Prepared(x, y, fr, fr[..., 0])
    sr = y.amax(dim=(-3, -2, -1))
    s = _positive(sr)[..., None, None, None]
    x, y = x / s, y / s
    sr = (sr > 0).to(x.dtype)  # the range in its own units: 1, or 0 for an all-zero target
    return Prepared(x, y, sr.unsqueeze(-1).expand(x.shape[:-2]), sr)


def frame_metrics(recon: torch.Tensor, target: torch.Tensor, protocol: str | Protocol = "global",
                  with_haarpsi: bool = True, dists_model: torch.nn.Module | None = None) -> Metrics:
    """Per-frame metrics.

    Args:
        recon: (..., T, H, W) complex or real.
        target: (..., T, H, W) complex or real.
        protocol: ``"global"``, ``"paper"`` or ``"cmrxrecon"``.
        with_haarpsi: compute HaarPSI (needs H, W >= 16 after the protocol's crop).
        dists_model: a :class:`cinerecon.evaluate.dists.DISTS` to compute DISTS, or None.

    Returns:
        :class:`Metrics` with tensors of shape (..., T) (T the frames the protocol keeps).
    """
    p = get_protocol(protocol)
    d = prepare(recon, target, p)
    return _frame_metrics(d, p, with_haarpsi, dists_model)


def _frame_metrics(d: Prepared, p: Protocol, with_haarpsi: bool, dists_model: torch.nn.Module | None) -> Metrics:
    x, y, r = d.recon, d.target, d.frame_range
    hp = haarpsi(x, y, r) if with_haarpsi else None
    ds = None
    if dists_model is not None:
        h, w = x.shape[-2:]
        lead = x.shape[:-2]
        rr = r.reshape(-1, 1, 1, 1)
        xs = (x.reshape(-1, 1, h, w) / rr).clamp(0, 1)
        ys = (y.reshape(-1, 1, h, w) / rr).clamp(0, 1)
        with torch.no_grad():  # a few frames at a time bounds the VGG activations' memory
            ds = torch.cat([dists_model(a, b) for a, b in zip(xs.split(DISTS_CHUNK), ys.split(DISTS_CHUNK))])
        ds = ds.to(x.dtype).reshape(lead)
    return Metrics(psnr(x, y, r), ssim(x, y, r, p.ssim), nmse(x, y), hp, ds)


def series_metrics(recon: torch.Tensor, target: torch.Tensor, protocol: str | Protocol = "global",
                   with_haarpsi: bool = True, dists_model: torch.nn.Module | None = None) -> Metrics:
    """Per-series metrics (reductions over frames as the protocol says).

    Args:
        recon: (..., T, H, W) complex or real.
        target: (..., T, H, W) complex or real.
        protocol: ``"global"`` (pooled PSNR / NMSE), ``"paper"`` or ``"cmrxrecon"`` (mean of frames).
        with_haarpsi: compute HaarPSI.
        dists_model: DISTS module or None.

    Returns:
        :class:`Metrics` with tensors of shape (...).
    """
    p = get_protocol(protocol)
    d = prepare(recon, target, p)
    fm = _frame_metrics(d, p, with_haarpsi, dists_model)
    mean = {n: getattr(fm, n).mean(dim=-1) for n in fm.names()}
    out = Metrics(**mean)
    if p.pooled_series:
        out = replace(out, psnr=psnr(d.recon, d.target, d.series_range, dims=3), nmse=nmse(d.recon, d.target, dims=3))
    return out


def scored_size(h: int, w: int, protocol: str | Protocol) -> tuple[int, int]:
    """(H, W) of the images a protocol scores for a (T, H, W) series (the crop under ``"cmrxrecon"``)."""
    p = get_protocol(protocol)
    return ranking_crop_size(h, w, p.ranking) if p.ranking is not None else (h, w)


def psnr_from_mse(err: torch.Tensor, data_range: torch.Tensor | float) -> torch.Tensor:
    """10 log10(R^2 / err) elementwise, as 20 log10(R) - 10 log10(err) (no R^2 to overflow).

    ``inf`` where err is 0 and R > 0; -inf or NaN where R is 0.
    """
    r = torch.as_tensor(data_range, dtype=err.dtype, device=err.device)
    return 20.0 * torch.log10(r) - 10.0 * torch.log10(err)


__all__ = ["SSIMConfig", "HaarPSIConfig", "HAARPSI_MIN_SIZE", "RankingSelection", "CMRXRECON_RANKING", "Protocol",
           "PROTOCOLS", "METRIC_NAMES", "HIGHER_IS_BETTER", "Metrics", "Prepared", "get_protocol", "matlab_round",
           "centre_window", "ranking_crop_size", "ranking_slices", "select_for_ranking", "magnitude", "mse", "psnr",
           "nmse", "ssim", "ssim_map", "haarpsi", "prepare", "frame_metrics", "series_metrics", "scored_size",
           "psnr_from_mse"]
