"""DISTS: Deep Image Structure and Texture Similarity (Ding, Ma, Wang & Simoncelli, TPAMI 2020).

A VGG16 feature extractor in plain torch with the layer layout of torchvision's
``vgg16().features`` (so an ImageNet ``vgg16`` state dict loads), its max-pooling
replaced by L2 pooling with a 3x3 Hann window, and per-channel weights alpha / beta
(the official ``DISTS_pytorch`` ``weights.pt`` file, keys ``alpha`` and ``beta`` of
shape (1, 1475, 1, 1)).

Images whose shorter side exceeds :data:`MAX_SIDE` (256) are first downsized as piq 0.8.0's
``DISTS.forward`` does (:func:`downsize`: bilinear, scale factor 256 / shorter side), so
scores match piq's on large images too.

Nothing is downloaded: the weights are read only from local files given as
arguments or through the environment variables ``CINERECON_VGG16_WEIGHTS`` (the
torchvision ImageNet VGG16 state dict, e.g. ``vgg16-397923af.pth``) and
``CINERECON_DISTS_WEIGHTS`` (the DISTS ``weights.pt`` with ``alpha`` / ``beta``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import DataError, WeightsNotFoundError

ENV_DISTS = "CINERECON_DISTS_WEIGHTS"
ENV_VGG16 = "CINERECON_VGG16_WEIGHTS"
CHANNELS = (3, 64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision vgg16 "features": channels per conv, "M" = pooling (indices follow torchvision).
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# Indices (in the Sequential) of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
STAGE_ENDS = (3, 8, 15, 22, 29)
#: Images whose shorter side exceeds this are downsized before scoring (piq's rule).
MAX_SIDE = 256

HOW_TO_GET = (
    "DISTS needs two local files (nothing is downloaded): (1) the torchvision ImageNet VGG16 state dict "
    "'vgg16-397923af.pth' (torchvision.models.VGG16_Weights.IMAGENET1K_V1) and (2) the DISTS weights "
    "'weights.pt' with tensors 'alpha' and 'beta' from the DISTS_pytorch package (github.com/dingkeyan93/DISTS). "
    f"Pass them as arguments, put both in one folder and pass the folder, or set {ENV_VGG16} and {ENV_DISTS}."
)


def downsize(x: torch.Tensor, max_side: int = MAX_SIDE) -> torch.Tensor:
    """piq's DISTS input resizing: (N, C, H, W) unchanged when min(H, W) <= ``max_side``, else
    ``F.interpolate(x, scale_factor=max_side / min(H, W), mode="bilinear")`` (align_corners False,
    ``recompute_scale_factor=False``, no antialiasing), which makes the shorter side ``max_side``."""
    h, w = x.shape[-2:]
    if min(h, w) <= max_side:
        return x
    return F.interpolate(x, scale_factor=max_side / min(h, w), mode="bilinear", recompute_scale_factor=False)


class L2Pool(nn.Module):
    """L2 pooling: sqrt(hann3x3 * x^2 + 1e-12) with stride 2 and padding 1, per channel."""

    def __init__(self) -> None:
        super().__init__()
        a = torch.tensor([0.5, 1.0, 0.5])
        k = a[:, None] * a[None, :]
        self.register_buffer("kernel", (k / k.sum()).view(1, 1, 3, 3), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        out = F.conv2d(x * x, self.kernel.to(x.dtype).expand(c, 1, 3, 3), stride=2, padding=1, groups=c)
        return (out + 1e-12).sqrt()


class VGG16Features(nn.Sequential):
    """torchvision ``vgg16().features`` layout up to relu5_3, L2 pooling instead of max pooling.

    Module names are the torchvision indices ("0", "2", ...), so the ``features.*``
    part of an ImageNet VGG16 state dict loads with :meth:`load_vgg16_state_dict`.
    """

    def __init__(self) -> None:
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG16_LAYOUT:
            if v == "M":
                layers.append(L2Pool())
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
                cin = int(v)
        super().__init__(*layers[:STAGE_ENDS[-1] + 1])

    def load_vgg16_state_dict(self, sd: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load torchvision VGG16 weights (keys ``features.<i>.weight`` or ``<i>.weight``)."""
        feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")} or dict(sd)
        mine = self.state_dict()
        missing = [k for k in mine if k not in feats]
        if missing:
            raise DataError(f"{source}: not a torchvision VGG16 state dict; missing keys {missing[:4]}...")
        for k, v in mine.items():
            if tuple(feats[k].shape) != tuple(v.shape):
                raise DataError(f"{source}: key features.{k} has shape {tuple(feats[k].shape)}, "
                                f"expected {tuple(v.shape)} (VGG16)")
        self.load_state_dict({k: feats[k] for k in mine})

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features [relu1_2, relu2_2, relu3_3, relu4_3, relu5_3] of a normalised (N, 3, H, W) input."""
        out = []
        for i, m in enumerate(self):
            x = m(x)
            if i in STAGE_ENDS:
                out.append(x)
        return out


class DISTS(nn.Module):
    """DISTS distance between images in [0, 1] (0 for identical images).

    Args:
        features: VGG16 feature extractor (random weights when None; only for tests).
        alpha: (1, 1475, 1, 1) structure weights (random positive when None).
        beta: (1, 1475, 1, 1) texture weights.

    Call: ``dists(x, y)`` with x, y (N, 1 or 3, H, W) in [0, 1] -> (N,). Grayscale
    inputs are repeated to 3 channels; images with a shorter side above 256 are downsized
    first (:func:`downsize`, as piq does). The score is
    1 - sum_k sum_c (alpha_kc S1_kc + beta_kc S2_kc) with alpha, beta normalised to sum 1.
    """

    def __init__(self, features: VGG16Features | None = None, alpha: torch.Tensor | None = None,
                 beta: torch.Tensor | None = None) -> None:
        super().__init__()
        self.features = features if features is not None else VGG16Features()
        n = sum(CHANNELS)
        g = torch.Generator().manual_seed(0)
        alpha = alpha if alpha is not None else 0.1 + 0.01 * torch.randn(1, n, 1, 1, generator=g)
        beta = beta if beta is not None else 0.1 + 0.01 * torch.randn(1, n, 1, 1, generator=g)
        for name, w in (("alpha", alpha), ("beta", beta)):
            if w.numel() != n:
                raise DataError(f"DISTS {name} must have {n} entries (1, {n}, 1, 1), got shape {tuple(w.shape)}")
        self.register_buffer("alpha", alpha.reshape(1, n, 1, 1).float())
        self.register_buffer("beta", beta.reshape(1, n, 1, 1).float())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def feature_list(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[input, relu1_2, relu2_2, relu3_3, relu4_3, relu5_3] for (N, 3, H, W) in [0, 1]."""
        return [x] + self.features.stages((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] not in (1, 3):
            raise DataError(f"DISTS expects two (N, 1 or 3, H, W) tensors of equal shape, got "
                            f"{tuple(x.shape)} and {tuple(y.shape)}")
        x, y = downsize(x), downsize(y)
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        n = x.shape[0]
        feats = self.feature_list(torch.cat([x, y]))  # one pass for both images
        fx, fy = [f[:n] for f in feats], [f[n:] for f in feats]
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, CHANNELS, dim=1)
        betas = torch.split(self.beta / total, CHANNELS, dim=1)
        c = 1e-6
        score = torch.zeros(n, dtype=x.dtype, device=x.device)
        for a, b, u, v in zip(alphas, betas, fx, fy):
            mu, mv = u.mean((2, 3), keepdim=True), v.mean((2, 3), keepdim=True)
            s1 = (2 * mu * mv + c) / (mu * mu + mv * mv + c)
            vu = ((u - mu) ** 2).mean((2, 3), keepdim=True)
            vv = ((v - mv) ** 2).mean((2, 3), keepdim=True)
            cov = (u * v).mean((2, 3), keepdim=True) - mu * mv
            s2 = (2 * cov + c) / (vu + vv + c)
            score = score + (a.to(x.dtype) * s1 + b.to(x.dtype) * s2).sum(dim=(1, 2, 3))
        return 1 - score


@dataclass(frozen=True)
class DistsWeightFiles:
    """Resolved local weight files.

    Attributes:
        dists: file with ``alpha`` and ``beta``.
        vgg16: torchvision VGG16 state dict (may be the same file when it holds both).
    """

    dists: Path
    vgg16: Path


def _pick(folder: Path, patterns: tuple[str, ...]) -> Path | None:
    for pat in patterns:
        hits = sorted(folder.glob(pat))
        if hits:
            return hits[0]
    return None


def resolve_weight_files(weights: str | Path | None = None, vgg16: str | Path | None = None) -> DistsWeightFiles:
    """Find the DISTS and VGG16 weight files from arguments, then environment variables.

    Args:
        weights: DISTS ``weights.pt`` file, or a folder holding ``weights.pt`` /
            ``dists*.pt`` and ``vgg16*.pth``; defaults to ``$CINERECON_DISTS_WEIGHTS``.
        vgg16: VGG16 state dict file; defaults to ``$CINERECON_VGG16_WEIGHTS``, then the
            folder of ``weights``.

    Raises:
        WeightsNotFoundError: when a file is missing, with instructions.
    """
    w = weights if weights is not None else os.environ.get(ENV_DISTS)
    v = vgg16 if vgg16 is not None else os.environ.get(ENV_VGG16)
    if w is None:
        raise WeightsNotFoundError(f"no DISTS weights given (argument or ${ENV_DISTS}). {HOW_TO_GET}")
    w = Path(w).expanduser()
    if not w.exists():
        raise WeightsNotFoundError(f"DISTS weights {w} not found. {HOW_TO_GET}")
    folder = w if w.is_dir() else w.parent
    if w.is_dir():
        found = _pick(w, ("weights.pt", "dists*.pt", "DISTS*.pt", "*dists*.pt*"))
        if found is None:
            raise WeightsNotFoundError(f"no DISTS weights file (weights.pt / dists*.pt) in folder {w}. {HOW_TO_GET}")
        w = found
    if v is None:
        v = _pick(folder, ("vgg16*.pth", "vgg16*.pt"))
        if v is None:
            raise WeightsNotFoundError(f"no VGG16 weights given (argument, ${ENV_VGG16}, or a vgg16*.pth beside {w}). "
                                       f"{HOW_TO_GET}")
    v = Path(v).expanduser()
    if not v.is_file():
        raise WeightsNotFoundError(f"VGG16 weights {v} not found. {HOW_TO_GET}")
    return DistsWeightFiles(w, v)


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any unreadable file the same way
        raise DataError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj


def load_dists(weights: str | Path | None = None, vgg16: str | Path | None = None,
               device: str | torch.device = "cpu") -> DISTS:
    """Build :class:`DISTS` from local files (see :func:`resolve_weight_files`).

    Raises:
        WeightsNotFoundError: files missing.
        DataError: files present but not the expected state dicts.
    """
    files = resolve_weight_files(weights, vgg16)
    ab = _load(files.dists)
    for key in ("alpha", "beta"):
        if key not in ab:
            raise DataError(f"{files.dists}: DISTS weights need keys 'alpha' and 'beta', found {sorted(ab)[:6]}")
    feats = VGG16Features()
    feats.load_vgg16_state_dict(_load(files.vgg16), str(files.vgg16))
    return DISTS(feats, ab["alpha"], ab["beta"]).to(device)


def try_load_dists(weights: str | Path | None = None, device: str | torch.device = "cpu") -> DISTS | None:
    """:func:`load_dists` when weights were given or configured, None when nothing was configured.

    Weights that were asked for (argument or environment variable) but are missing still raise.
    """
    if weights is None and os.environ.get(ENV_DISTS) is None:
        return None
    return load_dists(weights, device=device)
