"""PromptMR: prompt-learning unrolled reconstruction on adjacent frames.

Xin B., Ye M., Axel L., Metaxas D. N., "Fill the K-Space and Refine the Image: Prompting
for Dynamic and Multi-Contrast MRI Reconstruction", STACOM / MICCAI CMRxRecon 2023
(arXiv:2309.13839); winner of the CMRxRecon 2023 cine task.

``build_model("promptmr", preset=...)`` gives one of two models:

* ``preset="original"``: :class:`PromptMROriginal`, the authors' function (equal to their
  code on ``shared/reference/promptmr_golden.pt``) with their constructor's keyword names
  (:class:`PromptMROriginalConfig`), loading their state dicts and Lightning checkpoints
  (:mod:`cinerecon.models.compat`). Per frame: maps from that frame's ACS columns; k-space
  cascades on the 5-frame circular window with one DC weight per cascade, every frame of
  the window refined; output the centre frame's root-sum-of-squares magnitude (real). All
  T windows of a series run as one batch. At full widths and 5 cascades it has the seed
  paper's 30,496,134 trainable parameters (30.50 M).
* ``preset="tiny"`` / ``"published"`` (ours): :class:`PromptMR`, an image-domain cine
  re-design on the shared wrapper, described below.

Our re-design:

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

Differences of the re-design to the authors' model: the cascades work in the image
domain (denoise, then a gradient DC step with one shared step size; the authors update
k-space with both terms at once, VarNet-style, with a weight per cascade); every cascade
re-windows the whole current series, so information travels beyond 5 frames; the whole
series is normalised, not each window; one map set per slice from time-averaged ACS data
(the authors estimate maps per frame); the output is the complex coil-combined image
rather than the root-sum-of-squares magnitude; every CAB has its own PReLU. The
``"published"`` preset uses the authors' CMRxRecon widths with 12 cascades.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from ..fft import ifft2c
from ..inputs import check_recon_inputs
from ..operators import SenseOp, sampled_mean
from . import register
from .layers import CAB, GradientStepDC, PromptBlock
from .unrolled import (KSpaceSoftDC, Unrolled, config_from_kwargs, denormalise, in_model_precision, normalise,
                       pad_to_multiple, unpad)

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


def _cabs(chans: int, n: int, cfg: PromptUNetConfig, act: nn.Module | None = None,
          own_first: bool = False) -> nn.Module:
    """n CABs in sequence (Identity for n = 0); ``act`` shared, except the first one's with ``own_first``."""
    if n == 0:
        return nn.Identity()
    return nn.Sequential(*[CAB(chans, cfg.reduction, cfg.use_ca, None if own_first and i == 0 else act)
                           for i in range(n)])


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int, n_cab: int, cfg: PromptUNetConfig, act: nn.Module | None = None,
                 own_first: bool = False) -> None:
        super().__init__()
        self.cabs = _cabs(cin, n_cab, cfg, act, own_first)
        self.down = nn.Conv2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.cabs(x)
        return self.down(skip), skip


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, prompt_dim: int, n_cab: int, cfg: PromptUNetConfig,
                 act: nn.Module | None = None) -> None:
        super().__init__()
        self.fuse = _cabs(cin + prompt_dim, n_cab, cfg, act)
        self.reduce = nn.Conv2d(cin + prompt_dim, cin, 1, bias=False)
        self.up = nn.Conv2d(cin, cout, 1, bias=False)
        self.cab = CAB(cout, cfg.reduction, cfg.use_ca, act)

    def forward(self, x: torch.Tensor, prompt: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.reduce(self.fuse(torch.cat([x, prompt], dim=1)))
        x = self.up(F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False))
        return self.cab(x + skip)


class PromptUNet(nn.Module):
    """PromptMR's U-Net of channel attention blocks with prompt blocks in the decoder.

    Input (N, cin, H, W) with H and W divisible by 8; output (N, cout, H, W).

    Args:
        cin: input channels.
        cout: output channels.
        cfg: widths.
        act: None gives every CAB its own PReLU. A module makes every CAB except the first
            one of the first encoder level use (and share) it, as the authors' code does
            through a default argument: pass one module to all PromptUNets of a model to
            reproduce their parameter sharing (and count).
    """

    def __init__(self, cin: int, cout: int, cfg: PromptUNetConfig, act: nn.Module | None = None) -> None:
        super().__init__()
        dims = (cfg.n_feat0, *cfg.feature_dim)  # channels at levels 1, 2, 3, bottleneck
        self.head = nn.Conv2d(cin, cfg.n_feat0, 3, padding=1, bias=False)
        self.down = nn.ModuleList([_Down(dims[i], dims[i + 1], cfg.n_enc_cab[i], cfg, act, own_first=i == 0)
                                   for i in range(LEVELS)])
        self.skip = nn.ModuleList([_cabs(dims[i], cfg.n_skip_cab[i], cfg, act) for i in range(LEVELS)])
        self.bottleneck = _cabs(dims[LEVELS], cfg.n_bottleneck_cab, cfg, act)
        # decoder, deepest level first
        self.prompts = nn.ModuleList([
            PromptBlock(dims[i + 1], cfg.prompt_dim[i], cfg.len_prompt[i], cfg.prompt_size[i], cfg.learnable_prompt)
            for i in reversed(range(LEVELS))])
        self.up = nn.ModuleList([_Up(dims[i + 1], dims[i], cfg.prompt_dim[i], cfg.n_dec_cab[i], cfg, act)
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
        act: shared activation, see :class:`PromptUNet`.
    """

    def __init__(self, cfg: PromptUNetConfig, act: nn.Module | None = None) -> None:
        super().__init__()
        self.unet = PromptUNet(2, 2, cfg, act)

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

    def refine(self, imgs: torch.Tensor) -> torch.Tensor:
        """Coil images (B, C, ..., H, W) -> maps of the same shape, sum over C of |S|^2 = 1.

        Every coil image is its own batch item: standardised over its real and imaginary
        values, padded to a multiple of 8, refined by the PromptUNet (2 -> 2 channels),
        cropped and un-standardised; then divided by the root-sum-of-squares over coils.
        """
        shape = imgs.shape
        flat = imgs.reshape(-1, 1, *shape[-2:])
        xn, stats = normalise(flat, eps=torch.finfo(torch.float32).tiny)  # all-zero coil images stay finite
        xp, pad = pad_to_multiple(xn, 2 ** LEVELS)
        y = torch.view_as_real(xp[:, 0]).permute(0, 3, 1, 2)
        y = self.unet(y).permute(0, 2, 3, 1).contiguous()
        maps = denormalise(unpad(torch.view_as_complex(y)[:, None], pad), stats).view(shape)
        rss = (maps.abs() ** 2).sum(dim=1, keepdim=True).sqrt()
        return maps / rss.clamp_min(torch.finfo(rss.dtype).tiny)

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W), mask -> maps (B, C, 1, H, W) with sum_c |S_c|^2 = 1."""
        return self.refine(self.acs_filter(kspace, mask)).unsqueeze(2)


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


class PromptMR(Unrolled):
    """PromptMR, our image-domain cine re-design, on the shared unrolled wrapper.

    Called as ``model(kspace (B, C, T, H, W), mask, sens_maps (B, C, 1, H, W) or None)
    -> (B, T, H, W)`` complex; any T >= 1 (windows wrap around in time). Keyword arguments:
    ``preset`` (``"tiny"`` or ``"published"``) and any field of :class:`PromptMRConfig`.
    The authors' own function is :class:`PromptMROriginal` (``preset="original"``).
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
        check_recon_inputs(kspace, mask, None if self.sens_net is not None else sens_maps, "PromptMR",
                           maps_optional=self.sens_net is not None)
        kspace, mask, sens_maps, dtype = in_model_precision(self, kspace, mask, sens_maps)
        if self.sens_net is not None:
            sens_maps = self.sens_net(kspace * mask, mask)
        elif sens_maps is None:
            raise DataError("PromptMR with estimate_maps=False needs sens_maps (B, C, 1, H, W), got None")
        out = super().forward(kspace, mask, sens_maps)
        return out if dtype is None else out.to(dtype)


# ---------------------------------------------------------------- the authors' function


@dataclass(frozen=True)
class PromptMROriginalConfig:
    """The original PromptMR constructor's keyword arguments, names and defaults as the authors'.

    The defaults are their CMRxRecon 2023 model (PromptMR-12cascades); their 16-cascade
    checkpoint is ``num_cascades=16``. ``sens_*`` options left None take the cascade
    network's value.

    Attributes:
        num_cascades: unrolled cascades.
        num_adj_slices: frames per window (odd; the centre frame is reconstructed).
        n_feat0, feature_dim, prompt_dim: widths of the cascade PromptUNets.
        sens_n_feat0, sens_feature_dim, sens_prompt_dim: widths of the map-estimation PromptUNet.
        len_prompt, prompt_size: prompt components and their size per level.
        n_enc_cab, n_dec_cab, n_skip_cab, n_bottleneck_cab: channel attention blocks.
        no_use_ca: drop the channel attention inside the blocks.
        sens_len_prompt, sens_prompt_size, sens_n_enc_cab, sens_n_dec_cab, sens_n_skip_cab,
            sens_n_bottleneck_cab, sens_no_use_ca: the same for the map network.
        learnable_prompt: train the prompt components (the authors keep them fixed).
        mask_center: estimate maps from the ACS columns only (else the whole k-space).
        use_checkpoint: activation checkpointing per cascade.
        low_mem: accepted for compatibility; memory only, the function is the same.
    """

    num_cascades: int = 12
    num_adj_slices: int = 5
    n_feat0: int = 48
    feature_dim: tuple[int, int, int] = (72, 96, 120)
    prompt_dim: tuple[int, int, int] = (24, 48, 72)
    sens_n_feat0: int = 24
    sens_feature_dim: tuple[int, int, int] = (36, 48, 60)
    sens_prompt_dim: tuple[int, int, int] = (12, 24, 36)
    len_prompt: tuple[int, int, int] = (5, 5, 5)
    prompt_size: tuple[int, int, int] = (64, 32, 16)
    n_enc_cab: tuple[int, int, int] = (2, 3, 3)
    n_dec_cab: tuple[int, int, int] = (2, 2, 3)
    n_skip_cab: tuple[int, int, int] = (1, 1, 1)
    n_bottleneck_cab: int = 3
    no_use_ca: bool = False
    sens_len_prompt: tuple[int, int, int] | None = None
    sens_prompt_size: tuple[int, int, int] | None = None
    sens_n_enc_cab: tuple[int, int, int] | None = None
    sens_n_dec_cab: tuple[int, int, int] | None = None
    sens_n_skip_cab: tuple[int, int, int] | None = None
    sens_n_bottleneck_cab: int | None = None
    sens_no_use_ca: bool | None = None
    learnable_prompt: bool = False
    mask_center: bool = True
    use_checkpoint: bool = False
    low_mem: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (list, tuple)):
                object.__setattr__(self, f.name, tuple(int(a) for a in v))
        if self.num_adj_slices < 1 or self.num_adj_slices % 2 == 0:
            raise ConfigError(f"PromptMR num_adj_slices must be odd and >= 1, got {self.num_adj_slices}")
        if self.num_cascades < 1:
            raise ConfigError(f"PromptMR needs num_cascades >= 1, got {self.num_cascades}")
        self.unet_config()
        self.sens_unet_config()  # validates both

    def _unet(self, sens: bool) -> PromptUNetConfig:
        def pick(name: str):
            v = getattr(self, f"sens_{name}", None) if sens else None
            return getattr(self, name) if v is None else v

        return PromptUNetConfig(
            n_feat0=self.sens_n_feat0 if sens else self.n_feat0,
            feature_dim=self.sens_feature_dim if sens else self.feature_dim,
            prompt_dim=self.sens_prompt_dim if sens else self.prompt_dim,
            len_prompt=pick("len_prompt"), prompt_size=pick("prompt_size"), n_enc_cab=pick("n_enc_cab"),
            n_dec_cab=pick("n_dec_cab"), n_skip_cab=pick("n_skip_cab"),
            n_bottleneck_cab=pick("n_bottleneck_cab"), use_ca=not pick("no_use_ca"),
            learnable_prompt=self.learnable_prompt)

    def unet_config(self) -> PromptUNetConfig:
        """Widths of the cascade PromptUNets."""
        return self._unet(sens=False)

    def sens_unet_config(self) -> PromptUNetConfig:
        """Widths of the map-estimation PromptUNet."""
        return self._unet(sens=True)


def acs_window(line: torch.Tensor) -> torch.Tensor:
    """The original's ACS columns of a sampling line, as a 0/1 window.

    left = consecutive sampled columns immediately left of W // 2, right = consecutive
    sampled columns from W // 2 rightwards (both counted as the authors do, with argmin:
    a half sampled throughout counts 0); n = max(2 min(left, right), 1); the window keeps
    columns [(W - n + 1) // 2, (W - n + 1) // 2 + n).

    Args:
        line: (..., W) sampling line in {0, 1}.

    Returns:
        (..., W) float window.
    """
    w = line.shape[-1]
    c = w // 2
    sampled = (line > 0).to(torch.int8)
    left = torch.argmin(sampled[..., :c].flip(-1), dim=-1)
    right = torch.argmin(sampled[..., c:], dim=-1)
    n = torch.clamp_min(2 * torch.minimum(left, right), 1)
    lo = (w - n + 1) // 2
    col = torch.arange(w, device=line.device)
    return ((col >= lo[..., None]) & (col < (lo + n)[..., None])).to(torch.float32)


class WindowDenoiser(nn.Module):
    """One original cascade's regulariser: a PromptUNet from all frames of a window to all frames.

    ``denoiser(x, None) -> (R(x), None)`` on x (N, A, H', W') complex (normalised, padded
    by the wrapper); the channels are (real of frames 0..A-1, imag of frames 0..A-1).

    Args:
        cfg: widths.
        adjacent: frames per window A.
        act: shared activation (see :class:`PromptUNet`).
    """

    def __init__(self, cfg: PromptUNetConfig, adjacent: int, act: nn.Module | None = None) -> None:
        super().__init__()
        self.unet = PromptUNet(2 * adjacent, 2 * adjacent, cfg, act)

    def forward(self, x: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
        n, a, h, w = x.shape
        y = torch.view_as_real(x).permute(0, 4, 1, 2, 3).reshape(n, 2 * a, h, w)
        y = self.unet(y).view(n, 2, a, h, w).permute(0, 2, 3, 4, 1)
        return torch.view_as_complex(y.contiguous()), None


class PromptMROriginal(Unrolled):
    """PromptMR as its authors compute it (CMRxRecon 2023), for every frame of a series at once.

    For each frame t the original reconstructs the window of ``A = num_adj_slices`` frames
    (t - A//2 ... t + A//2) mod T: maps per frame from that frame's ACS columns (the SME
    PromptUNet on each coil image, divided by the root-sum-of-squares over coils); then
    ``num_cascades`` k-space cascades on the whole window,
    ``k <- k - w_i M (k - k0) - F S U_i(S^H F^-1 k)`` with one learnable w_i per cascade
    and U_i a normalised PromptUNet refining all A frames (2A -> 2A channels); the output
    is the centre frame's root-sum-of-squares magnitude. Here the T windows are folded
    into the batch and run together through the shared wrapper's k-space mode (the
    window, not the series, is the wrapper's sample: normalisation is per window), and
    the maps are estimated once per frame (a frame's maps do not depend on its window).

    Called as ``model(kspace (B, C, T, H, W), mask, sens_maps=None) -> (B, T, H, W)``
    **real** magnitudes; ``sens_maps`` is ignored (PromptMR estimates its own). The mask
    broadcasts to the k-space; per-frame masks give per-frame ACS widths (the authors'
    data has one mask per slice), a column counting as sampled when sampled in every row.
    Keyword arguments are the fields of :class:`PromptMROriginalConfig`, the authors' names.
    The authors' weights load with :func:`cinerecon.models.compat.load_authors_state_dict`.

    One PReLU is shared by every channel-attention block of every PromptUNet except the
    first block of each network's first encoder level (a default-argument quirk of the
    authors' code, kept so that training and parameter counts match: 30,496,134
    trainable parameters at full widths and 5 cascades).
    """

    def __init__(self, cfg: PromptMROriginalConfig) -> None:
        act = nn.PReLU()
        a = cfg.num_adj_slices
        super().__init__([WindowDenoiser(cfg.unet_config(), a, act) for _ in range(cfg.num_cascades)],
                         pad_multiple=2 ** LEVELS, dc=[KSpaceSoftDC(1.0) for _ in range(cfg.num_cascades)],
                         checkpoint_cascades=cfg.use_checkpoint, update="kspace")
        self.sens_net = SensitivityNet(cfg.sens_unet_config(), act)
        self.config = cfg

    def config_dict(self) -> dict:
        """Keyword arguments that rebuild this model with ``build_model("promptmr", **kw)``."""
        cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.config).items()}
        return {"preset": "original", **cfg}

    def estimate_maps(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame maps (B, C, T, H, W) from masked k-space (B, C, T, H, W) and a mask (B, 1, T, H|1, W).

        The original's low-pass window keeps the central columns sampled along the whole readout
        (:func:`acs_window`). A frame whose mask varies along the readout H too (pseudo-radial
        spokes around a calibration square, which the original was not written for) has no
        such columns; it gets the rectangle of :func:`acs_window` along its central row times
        :func:`acs_window` along its central column instead (decided per frame on the device).
        """
        if self.config.mask_center:
            m = mask.to(kspace.real.dtype)
            lines = acs_window(m.amin(dim=-2)).unsqueeze(-2)  # (B, 1, T, 1, W)
            h, w = m.shape[-2], m.shape[-1]
            if h > 1:
                block = (acs_window(m[..., h // 2, :]).unsqueeze(-2)
                         * acs_window(m[..., :, w // 2]).unsqueeze(-1))  # (B, 1, T, H, W)
                planar = (m != m[..., :1, :]).flatten(-2).any(dim=-1)[..., None, None]  # (B, 1, T, 1, 1)
                lines = torch.where(planar, block, lines)
            kspace = kspace * lines.to(kspace.real.dtype)
        return self.sens_net.refine(ifft2c(kspace))

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor,
                sens_maps: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruct every frame; see the class docstring. Returns (B, T, H, W) real."""
        check_recon_inputs(kspace, mask, None, "PromptMR (original)", maps_optional=True)
        kspace, mask, _, dtype = in_model_precision(self, kspace, mask, None)
        if dtype is not None:  # the magnitude in the input's real precision
            return self.forward(kspace, mask).to(dtype.to_real())
        b, c, t, h, w = kspace.shape
        m = mask.to(kspace.real.dtype)
        m = m.reshape((1,) * (5 - m.dim()) + m.shape)
        m = torch.broadcast_to(m, (b, 1, t, m.shape[-2], w))
        k0 = kspace * m
        maps = self.estimate_maps(k0, m)
        idx = (torch.arange(t, device=kspace.device)[:, None]
               + torch.arange(self.config.num_adj_slices, device=kspace.device) - self.config.num_adj_slices // 2) % t

        def windows(x: torch.Tensor) -> torch.Tensor:  # (B, X, T, ., W) -> (B*T, X, A, ., W)
            return x[:, :, idx].movedim(2, 1).flatten(0, 1)

        k = self.unroll(windows(k0), SenseOp(windows(maps), windows(m)))
        centre = ifft2c(k[:, :, self.config.num_adj_slices // 2])  # (B*T, C, H, W)
        return centre.abs().square().sum(dim=1).sqrt().view(b, t, h, w)


@register("promptmr")
def build_promptmr(preset: str = "tiny", **kwargs) -> nn.Module:
    """``build_model("promptmr", preset=..., **kwargs)``.

    ``preset="original"``: :class:`PromptMROriginal`, the authors' function, with the
    authors' constructor keywords (:class:`PromptMROriginalConfig`). Other presets
    (``"tiny"``, ``"published"``): :class:`PromptMR`, our re-design, with the fields of
    :class:`PromptMRConfig`.
    """
    if preset == "original":
        return PromptMROriginal(config_from_kwargs(PromptMROriginalConfig, "promptmr (original)", kwargs))
    return PromptMR(preset, **kwargs)
