"""PromptMR for cine: prompt-learning unrolled reconstruction on adjacent frames.

Xin B., Ye M., Axel L., Metaxas D. N., "Fill the K-Space and Refine the Image: Prompting
for Dynamic and Multi-Contrast MRI Reconstruction", STACOM / MICCAI CMRxRecon 2023
(arXiv:2309.13839); winner of the CMRxRecon 2023 cine task.

Structure (cine variant):

* a sensitivity-map estimation (SME) network: a PromptUNet applied to every coil image of
  the ACS-filtered (low-pass), time-averaged k-space, the outputs divided by their
  root-sum-of-squares over coils; ``estimate_maps=False`` uses the given maps instead;
* unrolled cascades, each a PromptUNet denoiser followed by a gradient-descent data-
  consistency step ``x - eta * A^H (A x - y)`` with learnable eta (initialised to 1);
* the PromptUNet: a 3-level encoder-decoder of channel attention blocks (CABs); every
  decoder level concatenates a prompt (a softmax-weighted sum of prompt components,
  weights from the pooled features, bilinearly resized to the feature size) to its
  features. Its input is 5 adjacent frames (circular in time) stacked on the channel axis
  (real and imaginary parts), its output the centre frame; running it for every frame
  yields the whole (B, T, H, W) series.

Simplifications / differences to the authors' model: the cascades work in the image
domain on the shared :class:`~cinerecon.models.unrolled.Unrolled` wrapper (denoise, then
a gradient DC step; the authors update k-space with both terms at once, VarNet-style);
every cascade re-windows the whole current series instead of refining 5-frame k-space
windows independently; one map set per slice from time-averaged ACS data (the authors
estimate maps per adjacent frame); the output is the complex coil-combined image rather
than the root-sum-of-squares magnitude. The ``"published"`` preset uses the authors'
CMRxRecon widths with 12 cascades (their README lists 82 M parameters for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from ..fft import ifft2c
from ..operators import sampled_mean
from . import register
from .layers import CAB, GradientStepDC, PromptBlock
from .unrolled import Unrolled, denormalise, normalise, pad_to_multiple, unpad

LEVELS = 3


@dataclass(frozen=True)
class PromptUNetConfig:
    """PromptUNet widths (three levels; tuples have one entry per level, top first).

    Attributes:
        n_feat0: channels after the first convolution.
        feature_dim: encoder channels entering levels 2, 3 and the bottleneck.
        prompt_dim: prompt channels per decoder level.
        len_prompt: prompt components per decoder level.
        prompt_size: spatial size of the stored prompt components per level.
        n_enc_cab, n_dec_cab, n_skip_cab: CABs per encoder / decoder / skip level.
        n_bottleneck_cab: CABs in the bottleneck.
        use_ca: channel attention inside the CABs.
        reduction: channel reduction of the attention.
        learnable_prompt: train the prompt components themselves.
    """

    n_feat0: int = 8
    feature_dim: tuple[int, int, int] = (12, 16, 20)
    prompt_dim: tuple[int, int, int] = (4, 8, 8)
    len_prompt: tuple[int, int, int] = (3, 3, 3)
    prompt_size: tuple[int, int, int] = (8, 4, 2)
    n_enc_cab: tuple[int, int, int] = (1, 1, 1)
    n_dec_cab: tuple[int, int, int] = (1, 1, 1)
    n_skip_cab: tuple[int, int, int] = (1, 1, 1)
    n_bottleneck_cab: int = 1
    use_ca: bool = True
    reduction: int = 4
    learnable_prompt: bool = False

    def __post_init__(self) -> None:
        for f in ("feature_dim", "prompt_dim", "len_prompt", "prompt_size", "n_enc_cab", "n_dec_cab", "n_skip_cab"):
            v = getattr(self, f)
            if len(v) != LEVELS:
                raise ConfigError(f"PromptUNetConfig.{f} needs {LEVELS} entries, got {v!r}")
            object.__setattr__(self, f, tuple(int(a) for a in v))


def _cabs(chans: int, n: int, cfg: PromptUNetConfig) -> nn.Module:
    if n == 0:
        return nn.Identity()
    return nn.Sequential(*[CAB(chans, cfg.reduction, cfg.use_ca) for _ in range(n)])


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int, n_cab: int, cfg: PromptUNetConfig) -> None:
        super().__init__()
        self.cabs = _cabs(cin, n_cab, cfg)
        self.down = nn.Conv2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.cabs(x)
        return self.down(skip), skip


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, prompt_dim: int, n_cab: int, cfg: PromptUNetConfig) -> None:
        super().__init__()
        self.fuse = _cabs(cin + prompt_dim, n_cab, cfg)
        self.reduce = nn.Conv2d(cin + prompt_dim, cin, 1, bias=False)
        self.up = nn.Conv2d(cin, cout, 1, bias=False)
        self.cab = CAB(cout, cfg.reduction, cfg.use_ca)

    def forward(self, x: torch.Tensor, prompt: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.reduce(self.fuse(torch.cat([x, prompt], dim=1)))
        x = self.up(F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False))
        return self.cab(x + skip)


class PromptUNet(nn.Module):
    """PromptMR's U-Net of channel attention blocks with prompt blocks in the decoder.

    Input (N, cin, H, W) with H and W divisible by 8; output (N, cout, H, W).
    """

    def __init__(self, cin: int, cout: int, cfg: PromptUNetConfig) -> None:
        super().__init__()
        dims = (cfg.n_feat0, *cfg.feature_dim)  # channels at levels 1, 2, 3, bottleneck
        self.head = nn.Conv2d(cin, cfg.n_feat0, 3, padding=1, bias=False)
        self.down = nn.ModuleList([_Down(dims[i], dims[i + 1], cfg.n_enc_cab[i], cfg) for i in range(LEVELS)])
        self.skip = nn.ModuleList([_cabs(dims[i], cfg.n_skip_cab[i], cfg) for i in range(LEVELS)])
        self.bottleneck = _cabs(dims[LEVELS], cfg.n_bottleneck_cab, cfg)
        # decoder, deepest level first
        self.prompts = nn.ModuleList([
            PromptBlock(dims[i + 1], cfg.prompt_dim[i], cfg.len_prompt[i], cfg.prompt_size[i], cfg.learnable_prompt)
            for i in reversed(range(LEVELS))])
        self.up = nn.ModuleList([_Up(dims[i + 1], dims[i], cfg.prompt_dim[i], cfg.n_dec_cab[i], cfg)
                                 for i in reversed(range(LEVELS))])
        self.tail = nn.Conv2d(cfg.n_feat0, cout, 5, padding=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        skips = []
        for down, skip in zip(self.down, self.skip):
            x, s = down(x)
            skips.append(skip(s))
        x = self.bottleneck(x)
        for prompt, up in zip(self.prompts, self.up):
            x = up(x, prompt(x), skips.pop())
        return self.tail(x)


def adjacent_frames(x: torch.Tensor, adjacent: int) -> torch.Tensor:
    """Circular windows of ``adjacent`` frames centred on every frame.

    Args:
        x: (B, T, H, W).
        adjacent: odd window length.

    Returns:
        (B, T, adjacent, H, W) with ``out[:, t, j] = x[:, (t + j - adjacent // 2) % T]``.
    """
    t = x.shape[1]
    idx = (torch.arange(t, device=x.device)[:, None] + torch.arange(adjacent, device=x.device) - adjacent // 2) % t
    return x[:, idx]


class PromptDenoiser(nn.Module):
    """One cascade's denoiser: every frame's 5-frame window through a PromptUNet, centre frame out.

    ``denoiser(x, state) -> (x - PromptUNet(windows(x)), None)`` on x (B, T, H, W) complex.
    """

    def __init__(self, cfg: PromptUNetConfig, adjacent: int) -> None:
        super().__init__()
        self.adjacent = adjacent
        self.unet = PromptUNet(2 * adjacent, 2, cfg)

    def forward(self, x: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
        b, t, h, w = x.shape
        win = torch.view_as_real(adjacent_frames(x, self.adjacent))  # (B, T, A, H, W, 2)
        win = win.permute(0, 1, 5, 2, 3, 4).reshape(b * t, 2 * self.adjacent, h, w)
        out = self.unet(win).view(b, t, 2, h, w).permute(0, 1, 3, 4, 2)
        return x - torch.view_as_complex(out.contiguous()), None


def _central_run(line: torch.Tensor) -> torch.Tensor:
    """Symmetric number of fully sampled lines around W // 2, per batch item.

    Args:
        line: (B, W) in {0, 1}.

    Returns:
        (B,) long: 2 * min(run to the left of W // 2, run from W // 2 rightwards).
    """
    c = line.shape[1] // 2
    right = torch.cumprod(line[:, c:], dim=1).sum(dim=1)
    left = torch.cumprod(line[:, :c].flip(1), dim=1).sum(dim=1)
    return (2 * torch.minimum(left, right)).long()


class SensitivityNet(nn.Module):
    """PromptMR's sensitivity-map estimation network.

    The k-space is averaged over the frames where each location was sampled, low-pass
    filtered to the ACS lines (the symmetric central run of lines sampled in every frame;
    without such a run of at least 2 lines the whole time-averaged k-space is used),
    transformed to coil images, each coil image normalised and refined by a PromptUNet,
    and the result divided by the root-sum-of-squares over coils.

    Args:
        cfg: widths of the PromptUNet.
    """

    def __init__(self, cfg: PromptUNetConfig) -> None:
        super().__init__()
        self.unet = PromptUNet(2, 2, cfg)

    def acs_filter(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) k-space and broadcastable mask -> low-pass coil images (B, C, H, W)."""
        b, c, t, h, w = kspace.shape
        m = torch.broadcast_to(mask.to(kspace.real.dtype), kspace.shape)[:, :1]  # (B, 1, T, H, W)
        kavg = sampled_mean(kspace, m, dim=2)  # (B, C, H, W)
        line = m.amin(dim=(1, 2, 3))  # (B, W): lines sampled in every frame
        n_low = _central_run(line)
        n_low = torch.where(n_low < 2, torch.full_like(n_low, w), n_low)
        lo = w // 2 - n_low // 2
        col = torch.arange(w, device=kspace.device)
        window = ((col >= lo[:, None]) & (col < (lo + n_low)[:, None])).to(kspace.real.dtype)
        return ifft2c(kavg * window[:, None, None, :])

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W), mask -> maps (B, C, 1, H, W) with sum_c |S_c|^2 = 1."""
        b, c, t, h, w = kspace.shape
        imgs = self.acs_filter(kspace, mask).reshape(b * c, 1, h, w)
        xn, stats = normalise(imgs, eps=torch.finfo(torch.float32).tiny)  # all-zero coil images stay finite
        xp, pad = pad_to_multiple(xn, 2 ** LEVELS)
        y = torch.view_as_real(xp[:, 0]).permute(0, 3, 1, 2)
        y = self.unet(y).permute(0, 2, 3, 1).contiguous()
        maps = denormalise(unpad(torch.view_as_complex(y)[:, None], pad), stats).view(b, c, 1, h, w)
        rss = (maps.abs() ** 2).sum(dim=1, keepdim=True).sqrt()
        return maps / rss.clamp_min(torch.finfo(rss.dtype).eps)


@dataclass(frozen=True)
class PromptMRConfig:
    """PromptMR hyper-parameters; the defaults are a tiny test size (see :data:`PRESETS`).

    Attributes:
        cascades: unrolled cascades.
        adjacent: frames per input window (odd).
        unet: widths of the cascade PromptUNets.
        sens_unet: widths of the sensitivity PromptUNet.
        estimate_maps: estimate maps with the SME network (True) or use the given ones.
        dc_step: initial gradient DC step size eta.
        checkpoint_cascades: activation checkpointing per cascade.
    """

    cascades: int = 2
    adjacent: int = 5
    unet: PromptUNetConfig = field(default_factory=PromptUNetConfig)
    sens_unet: PromptUNetConfig = field(default_factory=lambda: PromptUNetConfig(
        n_feat0=4, feature_dim=(6, 8, 10), prompt_dim=(2, 4, 4)))
    estimate_maps: bool = True
    dc_step: float = 1.0
    checkpoint_cascades: bool = False

    def __post_init__(self) -> None:
        for f in ("unet", "sens_unet"):
            v = getattr(self, f)
            if isinstance(v, dict):
                object.__setattr__(self, f, PromptUNetConfig(**v))
        if self.adjacent < 1 or self.adjacent % 2 == 0:
            raise ConfigError(f"PromptMR adjacent frames must be odd and >= 1, got {self.adjacent}")
        if self.cascades < 1:
            raise ConfigError(f"PromptMR needs cascades >= 1, got {self.cascades}")


_PUBLISHED_COMMON = dict(len_prompt=(5, 5, 5), prompt_size=(64, 32, 16), n_enc_cab=(2, 3, 3),
                         n_dec_cab=(2, 2, 3), n_skip_cab=(1, 1, 1), n_bottleneck_cab=3)

PRESETS: dict[str, PromptMRConfig] = {
    "tiny": PromptMRConfig(),
    # Authors' CMRxRecon 2023 configuration (PromptMR-12cascades).
    "published": PromptMRConfig(
        cascades=12,
        unet=PromptUNetConfig(n_feat0=48, feature_dim=(72, 96, 120), prompt_dim=(24, 48, 72), **_PUBLISHED_COMMON),
        sens_unet=PromptUNetConfig(n_feat0=24, feature_dim=(36, 48, 60), prompt_dim=(12, 24, 36), **_PUBLISHED_COMMON),
    ),
}


def promptmr_config(preset: str = "tiny", **overrides) -> PromptMRConfig:
    """A preset of :data:`PRESETS` with field overrides, e.g. ``promptmr_config("published", cascades=5)``."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown PromptMR preset {preset!r}; available: {sorted(PRESETS)}")
    names = {f.name for f in fields(PromptMRConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ConfigError(f"unknown PromptMR option(s) {bad}; available: {sorted(names)}")
    return replace(PRESETS[preset], **overrides)


@register("promptmr")
class PromptMR(Unrolled):
    """PromptMR (Xin et al. 2023), cine variant, on the shared unrolled wrapper.

    Called as ``model(kspace (B, C, T, H, W), mask, sens_maps (B, C, 1, H, W) or None)
    -> (B, T, H, W)``; any T >= 1 (windows wrap around in time). Keyword arguments: ``preset``
    (``"tiny"`` or ``"published"``) and any field of :class:`PromptMRConfig`.
    """

    def __init__(self, preset: str = "tiny", **overrides) -> None:
        cfg = promptmr_config(preset, **overrides)
        denoisers = [PromptDenoiser(cfg.unet, cfg.adjacent) for _ in range(cfg.cascades)]
        super().__init__(denoisers, pad_multiple=2 ** LEVELS, dc=GradientStepDC(cfg.dc_step),
                         checkpoint_cascades=cfg.checkpoint_cascades)
        self.sens_net = SensitivityNet(cfg.sens_unet) if cfg.estimate_maps else None
        self.config = cfg

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor,
                sens_maps: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruct; with ``estimate_maps`` the given ``sens_maps`` are ignored."""
        if kspace.dim() != 5:
            raise DataError(f"PromptMR expects k-space (B, C, T, H, W), got shape {tuple(kspace.shape)}")
        if self.sens_net is not None:
            sens_maps = self.sens_net(kspace * mask, mask)
        elif sens_maps is None:
            raise DataError("PromptMR with estimate_maps=False needs sens_maps (B, C, 1, H, W), got None")
        return super().forward(kspace, mask, sens_maps)
