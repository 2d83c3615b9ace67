"""CineNet: spatio-temporal U-Nets on x-f / y-f planes with conjugate-gradient DC.

Kuestner T., Fuin N., Hammernik K., Bustin A., Qi H., Hajhosseiny R., Masci P. G.,
Neji R., Rueckert D., Botnar R. M., Prieto C., "CINENet: deep learning-based 3D cardiac
CINE MRI reconstruction with multi-coil complex-valued 4D spatio-temporal convolutions",
Scientific Reports 10:13710, 2020.

This is the 2D+t variant the CRUNet-MR paper compares with. Per cascade the (normalised)
image x (B, T, H, W) is Fourier transformed along time (x-f space); one U-Net runs on every
x-f plane (F, W) (one per row), another on every y-f plane (F, H) (one per column); their
outputs are fused by a 1x1 convolution, added to the input (residual), transformed back
along time, and followed by a conjugate-gradient data consistency
``(A^H A + mu I) x = A^H y + mu z`` with learnable mu (one mu shared by all cascades).

Known (the CINENet paper): complex-valued convolutions on complex images, spatio-temporal
processing and CG data consistency. The CRUNet-MR paper describes the baseline as U-Nets on
the temporal-Fourier x-t / y-t planes with CG data consistency.

Choices (ours):

* ``complex_conv=False`` (default): real 2D convolutions on (real, imaginary) channels,
  LeakyReLU(0.2). ``complex_conv=True``: every convolution is complex-valued, a complex
  weight W = A + iB on complex features z (``W * z = (A*x - B*y) + i(A*y + B*x)`` for
  z = x + iy), with complex biases, as in the original CINENet; the features stay native
  complex tensors from the x-f planes to the residual. ``chans`` then counts complex
  channels, so a complex layer has twice the real weights of the real layer of the same
  width. The complex activation is ``"crelu"`` (LeakyReLU(0.2) on the real and imaginary
  parts separately) or ``"cardioid"`` (``0.5 (1 + cos(arg z)) z``, which keeps the phase);
  which one CINENet uses is not stated here, so it is an option.
* The spatio-temporal (3+1)D convolutions of CINENet become two 2D plane networks (x-f and
  y-f), and U-Net pooling acts on the spatial axis only, so any number of frames works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..fft import fft1c, ifft1c
from . import register
from .layers import CGDataConsistency, PlaneUNet
from .unrolled import Unrolled, config_from_kwargs

COMPLEX_ACTIVATIONS = ("crelu", "cardioid")


class ComplexConv2d(nn.Module):
    """Complex-valued 2D (transposed) convolution of complex features, complex bias.

    The weight A + iB is stored as two real tensors (``weight_re`` = A, ``weight_im`` = B, the
    layout of ``nn.Conv2d`` / ``nn.ConvTranspose2d``) and each part is initialised like the real
    layer's weight divided by sqrt(2), so the complex weight has the real layer's variance.

    Args:
        cin: input complex channels.
        cout: output complex channels.
        kernel: kernel size (int or pair).
        stride: stride.
        padding: zero padding.
        transpose: a transposed convolution (up-sampling) instead.
    """

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int] = 3, stride: int | tuple[int, int] = 1,
                 padding: int = 0, transpose: bool = False) -> None:
        super().__init__()
        make = nn.ConvTranspose2d if transpose else nn.Conv2d
        re, im = make(cin, cout, kernel), make(cin, cout, kernel)  # PyTorch's default initialisation
        s = 1 / math.sqrt(2)
        self.weight_re = nn.Parameter(re.weight.detach() * s)
        self.weight_im = nn.Parameter(im.weight.detach() * s)
        self.bias_re = nn.Parameter(re.bias.detach() * s)
        self.bias_im = nn.Parameter(im.bias.detach() * s)
        self.stride, self.padding, self.transpose = stride, padding, transpose

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, cin, A, B) complex -> (N, cout, A', B') complex."""
        w = torch.complex(self.weight_re, self.weight_im).to(z.dtype)
        b = torch.complex(self.bias_re, self.bias_im).to(z.dtype)
        if self.transpose:
            return F.conv_transpose2d(z, w, b, stride=self.stride, padding=self.padding)
        return F.conv2d(z, w, b, stride=self.stride, padding=self.padding)


def complex_activation(z: torch.Tensor, kind: str) -> torch.Tensor:
    """``"crelu"``: LeakyReLU(0.2) of the real and imaginary parts; ``"cardioid"``: 0.5 (1 + cos(arg z)) z."""
    if kind == "crelu":
        return torch.complex(F.leaky_relu(z.real, 0.2), F.leaky_relu(z.imag, 0.2))
    if kind == "cardioid":
        return 0.5 * (1 + torch.cos(torch.angle(z))) * z
    raise ConfigError(f"complex activation must be one of {COMPLEX_ACTIVATIONS}, got {kind!r}")


class _ComplexConvStack(nn.Module):
    """Two complex 3x3 convolutions, each followed by the complex activation."""

    def __init__(self, cin: int, cout: int, activation: str) -> None:
        super().__init__()
        self.conv1 = ComplexConv2d(cin, cout, 3, padding=1)
        self.conv2 = ComplexConv2d(cout, cout, 3, padding=1)
        self.activation = activation

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return complex_activation(self.conv2(complex_activation(self.conv1(z), self.activation)), self.activation)


def _complex_avg_pool(z: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
    """Average pooling of complex (N, C, A, B): pools the real and imaginary parts (a linear map)."""
    return torch.complex(F.avg_pool2d(z.real, pool), F.avg_pool2d(z.imag, pool))


class ComplexPlaneUNet(nn.Module):
    """:class:`~cinerecon.models.layers.PlaneUNet` with complex convolutions: (N, cin, A, B) complex in and out.

    Args:
        cin, cout: input / output complex channels.
        chans: complex channels of the first level (doubled per level).
        depth: number of poolings.
        pool: pooling factors (first axis, second axis).
        activation: ``"crelu"`` or ``"cardioid"``.
    """

    def __init__(self, cin: int = 1, cout: int = 1, chans: int = 16, depth: int = 2,
                 pool: tuple[int, int] = (1, 2), activation: str = "crelu") -> None:
        super().__init__()
        if activation not in COMPLEX_ACTIVATIONS:
            raise ConfigError(f"complex activation must be one of {COMPLEX_ACTIVATIONS}, got {activation!r}")
        self.pool = pool
        self.down = nn.ModuleList()
        c = cin
        for level in range(depth):
            self.down.append(_ComplexConvStack(c, chans * 2 ** level, activation))
            c = chans * 2 ** level
        self.bottom = _ComplexConvStack(c, c * 2, activation)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        c = c * 2
        for level in reversed(range(depth)):
            co = chans * 2 ** level
            self.up.append(ComplexConv2d(c, co, pool, stride=pool, transpose=True))
            self.dec.append(_ComplexConvStack(2 * co, co, activation))
            c = co
        self.out = ComplexConv2d(c, cout, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, cin, A, B) complex -> (N, cout, A, B) complex."""
        skips = []
        for block in self.down:
            z = block(z)
            skips.append(z)
            z = _complex_avg_pool(z, self.pool)
        z = self.bottom(z)
        for up, dec in zip(self.up, self.dec):
            z = dec(torch.cat([up(z), skips.pop()], dim=1))
        return self.out(z)


class XFDenoiser(nn.Module):
    """One CineNet cascade's network: x-f and y-f plane U-Nets, fused, residual.

    Args:
        chans: channels of the first U-Net level (complex channels when ``complex_conv``).
        depth: poolings per U-Net (H and W are padded to a multiple of ``2 ** depth``).
        complex_conv: complex-valued convolutions (see the module docstring).
        activation: complex activation, ``"crelu"`` or ``"cardioid"`` (complex only).
    """

    def __init__(self, chans: int = 16, depth: int = 2, complex_conv: bool = False,
                 activation: str = "crelu") -> None:
        super().__init__()
        self.complex_conv = complex_conv
        if complex_conv:
            self.xf: nn.Module = ComplexPlaneUNet(1, 1, chans, depth, pool=(1, 2), activation=activation)
            self.yf: nn.Module = ComplexPlaneUNet(1, 1, chans, depth, pool=(1, 2), activation=activation)
            self.fuse: nn.Module = ComplexConv2d(2, 1, 1)
        else:
            self.xf = PlaneUNet(2, 2, chans, depth, pool=(1, 2))
            self.yf = PlaneUNet(2, 2, chans, depth, pool=(1, 2))
            self.fuse = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
        """x (B, T, H, W) complex -> (B, T, H, W) complex, no state."""
        if self.complex_conv:
            return self._forward_complex(x), None
        b, t, h, w = x.shape
        xf = torch.view_as_real(fft1c(x, dim=1))  # (B, F, H, W, 2)
        # x-f planes: one per row y, image (F, W)
        p1 = xf.permute(0, 2, 4, 1, 3).reshape(b * h, 2, t, w)
        u1 = self.xf(p1).view(b, h, 2, t, w).permute(0, 2, 3, 1, 4)  # (B, 2, F, H, W)
        # y-f planes: one per column x, image (F, H)
        p2 = xf.permute(0, 3, 4, 1, 2).reshape(b * w, 2, t, h)
        u2 = self.yf(p2).view(b, w, 2, t, h).permute(0, 2, 3, 4, 1)  # (B, 2, F, H, W)
        fused = self.fuse(torch.cat([u1, u2], dim=1).reshape(b, 4, t * h, w)).view(b, 2, t, h, w)
        out = xf + fused.permute(0, 2, 3, 4, 1)
        return ifft1c(torch.view_as_complex(out.contiguous()), dim=1), None

    def _forward_complex(self, x: torch.Tensor) -> torch.Tensor:
        """The complex-convolution path on native complex planes, (B, T, H, W) -> (B, T, H, W)."""
        b, t, h, w = x.shape
        xf = fft1c(x, dim=1)  # (B, F, H, W) complex
        p1 = xf.permute(0, 2, 1, 3).reshape(b * h, 1, t, w)  # x-f planes (F, W), one per row
        u1 = self.xf(p1).view(b, h, t, w).permute(0, 2, 1, 3)  # (B, F, H, W)
        p2 = xf.permute(0, 3, 1, 2).reshape(b * w, 1, t, h)  # y-f planes (F, H), one per column
        u2 = self.yf(p2).view(b, w, t, h).permute(0, 2, 3, 1)  # (B, F, H, W)
        fused = self.fuse(torch.stack([u1, u2], dim=1).reshape(b, 2, t * h, w)).view(b, t, h, w)
        return ifft1c(xf + fused, dim=1)


@dataclass(frozen=True)
class CineNetConfig:
    """CineNet hyper-parameters.

    Attributes:
        chans: first-level channels of each plane U-Net (complex channels with ``complex_conv``).
        depth: U-Net poolings.
        cascades: unrolled cascades (own weights each).
        cg_iters: CG iterations of the data consistency.
        mu: initial weight of the denoiser output in the CG data consistency.
        complex_conv: complex-valued convolutions (the original CINENet's); real 2D
            convolutions on (real, imaginary) channels otherwise.
        activation: complex activation, ``"crelu"`` or ``"cardioid"`` (used with ``complex_conv``).
        checkpoint_cascades: activation checkpointing per cascade.
    """

    chans: int = 16
    depth: int = 2
    cascades: int = 5
    cg_iters: int = 5
    mu: float = 0.5
    complex_conv: bool = False
    activation: str = "crelu"
    checkpoint_cascades: bool = False


@register("cinenet")
class CineNet(Unrolled):
    """CineNet (Kuestner et al. 2020), 2D+t x-f / y-f variant, on the shared unrolled wrapper.

    Called as ``model(kspace (B, C, T, H, W), mask, sens_maps (B, C, 1, H, W)) -> (B, T, H, W)``;
    keyword arguments are the fields of :class:`CineNetConfig`. One CG data-consistency
    module (one learnable mu) is shared by all cascades.
    """

    def __init__(self, **kwargs) -> None:
        cfg = config_from_kwargs(CineNetConfig, "cinenet", kwargs)
        if cfg.cascades < 1 or cfg.depth < 0 or cfg.chans < 1:
            raise ConfigError(f"invalid CineNet config {cfg}")
        if cfg.activation not in COMPLEX_ACTIVATIONS:
            raise ConfigError(f"cinenet: activation must be one of {COMPLEX_ACTIVATIONS}, got {cfg.activation!r}")
        denoisers = [XFDenoiser(cfg.chans, cfg.depth, cfg.complex_conv, cfg.activation) for _ in range(cfg.cascades)]
        super().__init__(denoisers, pad_multiple=2 ** cfg.depth,
                         dc=CGDataConsistency(cfg.mu, cfg.cg_iters),
                         checkpoint_cascades=cfg.checkpoint_cascades)
        self.config = cfg
