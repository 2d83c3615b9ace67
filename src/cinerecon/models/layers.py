"""Small building blocks of the deep baselines (CRNN-MRI, CineNet, PromptMR).

The CRUNet-MR units live in :mod:`cinerecon.models.blocks`; this module holds the pieces
the baselines need besides those:

* :class:`GradientStepDC` and :class:`CGDataConsistency`: data-consistency modules with
  the ``dc(x, k0, op, adjoint_k0=None)`` signature that :class:`~cinerecon.models.unrolled.Unrolled`
  takes (it passes ``op.adjoint(k0)``, computed once per forward pass);
* :class:`PlaneUNet`: a plain 2D U-Net whose pooling can skip an axis (CineNet's x-t / y-t
  planes pool only the spatial axis, so any frame count works);
* :class:`ChannelAttention`, :class:`CAB` and :class:`PromptBlock`: the channel-attention and
  prompt units of PromptMR's PromptUNet.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..operators import SenseOp
from ..solvers import conjugate_gradient


class GradientStepDC(nn.Module):
    """One gradient-descent step on the data term: x - eta * A^H (A x - k0), eta learnable.

    The image-domain counterpart of the soft DC term of E2E-VarNet / PromptMR
    (``dc_weight * M (k - k0)``, initialised to 1).

    Args:
        init: initial step size eta.
    """

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.eta = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor, k0: torch.Tensor, op: SenseOp,
                adjoint_k0: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, H, W), k0 (B, C, T, H, W) masked measurements, ``op.adjoint(k0)`` if known -> (B, T, H, W).

        A^H (A x - k0) is computed as ``op.gram(x) - op.adjoint(k0)`` (the same linear map).
        """
        adj = op.adjoint(k0) if adjoint_k0 is None else adjoint_k0
        return x - self.eta * (op.gram(x) - adj)


class CGDataConsistency(nn.Module):
    """Solve (A^H A + mu I) x = A^H k0 + mu z by a few CG iterations, mu > 0 learnable.

    The data-consistency layer of CINENet (Kuestner et al. 2020): the proximal step of the
    data term around the denoiser output z, started from z.

    Args:
        mu: initial weight of the denoiser output (stored as log mu).
        iters: CG iterations (fixed; no early stop, so results are batch independent).
    """

    def __init__(self, mu: float = 0.5, iters: int = 5) -> None:
        super().__init__()
        if mu <= 0 or iters < 1:
            raise ConfigError(f"CG data consistency needs mu > 0 and iters >= 1, got mu={mu}, iters={iters}")
        self.log_mu = nn.Parameter(torch.tensor(math.log(mu)))
        self.iters = iters

    def forward(self, z: torch.Tensor, k0: torch.Tensor, op: SenseOp,
                adjoint_k0: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, T, H, W) denoised image, k0 (B, C, T, H, W), ``op.adjoint(k0)`` if known -> (B, T, H, W)."""
        mu = self.log_mu.exp()
        rhs = (op.adjoint(k0) if adjoint_k0 is None else adjoint_k0) + mu * z
        return conjugate_gradient(lambda v: op.gram(v) + mu * v, rhs, x0=z, iters=self.iters, tol=0.0)


class _ConvStack(nn.Sequential):
    """Two 3x3 convolutions, each followed by LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
        )


class PlaneUNet(nn.Module):
    """Plain 2D U-Net on (N, cin, A, B) planes; pooling/upsampling by ``pool`` per level.

    With ``pool=(1, 2)`` the first axis (time / temporal frequency) keeps its size, so the
    network takes any number of frames; the second axis must be divisible by
    ``2 ** depth``.

    Args:
        cin, cout: input / output channels.
        chans: channels of the first level (doubled per level).
        depth: number of poolings.
        pool: pooling factors (first axis, second axis).
    """

    def __init__(self, cin: int = 2, cout: int = 2, chans: int = 16, depth: int = 2,
                 pool: tuple[int, int] = (1, 2)) -> None:
        super().__init__()
        self.pool = pool
        self.down = nn.ModuleList()
        c = cin
        for level in range(depth):
            self.down.append(_ConvStack(c, chans * 2 ** level))
            c = chans * 2 ** level
        self.bottom = _ConvStack(c, c * 2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        c = c * 2
        for level in reversed(range(depth)):
            co = chans * 2 ** level
            self.up.append(nn.ConvTranspose2d(c, co, kernel_size=pool, stride=pool))
            self.dec.append(_ConvStack(2 * co, co))
            c = co
        self.out = nn.Conv2d(c, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, cin, A, B) -> (N, cout, A, B)."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, self.pool)
        x = self.bottom(x)
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.out(x)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention: x * sigmoid(W2 relu(W1 mean_hw(x)))."""

    def __init__(self, chans: int, reduction: int = 4, bias: bool = False) -> None:
        super().__init__()
        mid = max(chans // reduction, 1)
        self.body = nn.Sequential(nn.Conv2d(chans, mid, 1, bias=bias), nn.ReLU(inplace=True),
                                  nn.Conv2d(mid, chans, 1, bias=bias), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.body(x.mean(dim=(-2, -1), keepdim=True))


class CAB(nn.Module):
    """Channel attention block: x + CA(conv(PReLU(conv(x)))), 3x3 convolutions, no bias.

    Args:
        chans: channels in and out.
        reduction: channel reduction of the attention bottleneck.
        use_ca: apply channel attention (PromptMR's ``no_use_ca=False``).
        act: an activation module to use (and share with other blocks); None = a new PReLU.
    """

    def __init__(self, chans: int, reduction: int = 4, use_ca: bool = True, act: nn.Module | None = None) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(chans, chans, 3, padding=1, bias=False),
                                  nn.PReLU() if act is None else act,
                                  nn.Conv2d(chans, chans, 3, padding=1, bias=False))
        self.ca = ChannelAttention(chans, reduction) if use_ca else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ca(self.body(x))


class PromptBlock(nn.Module):
    """PromptMR's prompt block: a softmax-weighted sum of learnable prompt components.

    The weights come from a linear layer on the spatially averaged input features; the
    weighted prompt (prompt_dim, size, size) is bilinearly resized to the feature size and
    passed through a 3x3 convolution.

    Args:
        feat_dim: channels of the input features (for the weights).
        prompt_dim: channels of the prompt.
        prompt_len: number of prompt components.
        prompt_size: spatial size of the stored components.
        learnable: train the components (the authors keep them fixed at random values by
            default and learn only the weighting and the convolution).
    """

    def __init__(self, feat_dim: int, prompt_dim: int, prompt_len: int, prompt_size: int,
                 learnable: bool = False) -> None:
        super().__init__()
        self.components = nn.Parameter(torch.rand(prompt_len, prompt_dim, prompt_size, prompt_size),
                                       requires_grad=learnable)
        self.weights = nn.Linear(feat_dim, prompt_len)
        self.conv = nn.Conv2d(prompt_dim, prompt_dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, feat_dim, h, w) -> prompt (N, prompt_dim, h, w)."""
        w = F.softmax(self.weights(x.mean(dim=(-2, -1))), dim=1)  # (N, L)
        prompt = torch.einsum("nl,lchw->nchw", w, self.components)
        prompt = F.interpolate(prompt, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(prompt)
