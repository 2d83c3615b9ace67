"""CRNN-MRI: convolutional recurrent network for dynamic MR reconstruction.

Qin C., Schlemper J., Caballero J., Price A. N., Hajnal J. V., Rueckert D.,
"Convolutional recurrent neural networks for dynamic MR image reconstruction",
IEEE Transactions on Medical Imaging 38(1):280-290, 2019.

Each iteration (cascade) applies

1. a BCRNN layer with recurrence over time *and* over iterations,
   ``h_t^(i) = ReLU(W_x * x_t + W_h * h_(t-1)^(i) + W_i * h_t^(i-1))``, run forward and
   backward in time with the same cell and summed;
2. ``layers - 2`` CRNN-i layers with recurrence over iterations only,
   ``h_l^(i) = ReLU(W_l * h_(l-1)^(i) + W_il * h_l^(i-1))``;
3. a 3x3 convolution to 2 channels (real, imaginary) added to the cascade input;

followed by data consistency. The iteration hidden states travel between cascades as a
:class:`CRNNState` handed along by :class:`~cinerecon.models.unrolled.Unrolled`, and the
weights are shared across iterations as in the paper (``share_weights=False`` gives each
cascade its own weights).

Simplifications / differences to the paper: multi-coil SENSE data consistency (hard, or
soft with a learnable weight) instead of single-coil k-space DC; each cascade's input is
normalised by the shared wrapper (per-sample mean/std), so hidden states are features of
normalised images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from . import register
from .complex_io import from_channels, to_channels
from .unrolled import SoftDC, Unrolled, config_from_kwargs


class CRNNState(NamedTuple):
    """Iteration hidden states of one cascade, each (B, T, nf, H, W).

    Attributes:
        bcrnn: output of the BCRNN layer (forward + backward).
        crnn_i: outputs of the CRNN-i layers, first to last.
    """

    bcrnn: torch.Tensor
    crnn_i: tuple[torch.Tensor, ...]


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class BCRNNLayer(nn.Module):
    """Bidirectional convolutional recurrent layer over time with an iteration input.

    The input-to-hidden and iteration-to-hidden convolutions do not depend on the previous
    frame and run batched over all frames; only the hidden-to-hidden convolution is
    sequential. One cell serves both directions.
    """

    def __init__(self, cin: int, nf: int) -> None:
        super().__init__()
        self.w_x = _conv(cin, nf)
        self.w_h = _conv(nf, nf)
        self.w_i = _conv(nf, nf)

    def forward(self, x: torch.Tensor, h_iter: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, cin, H, W), h_iter (B, T, nf, H, W) or None -> (B, T, nf, H, W)."""
        b, t, c, h, w = x.shape
        drive = self.w_x(x.reshape(b * t, c, h, w))
        if h_iter is not None:
            drive = drive + self.w_i(h_iter.reshape(b * t, -1, h, w))
        drive = drive.view(b, t, -1, h, w)
        outs = []
        for order in (range(t), reversed(range(t))):
            hid = None
            seq: list[torch.Tensor | None] = [None] * t
            for k in order:
                pre = drive[:, k] if hid is None else drive[:, k] + self.w_h(hid)
                hid = F.relu(pre)
                seq[k] = hid
            outs.append(torch.stack(seq, dim=1))
        return outs[0] + outs[1]


class CRNNiLayer(nn.Module):
    """Convolutional recurrence over iterations only: ReLU(W * x + W_i * h^(i-1)), per frame."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.w_x = _conv(nf, nf)
        self.w_i = _conv(nf, nf)

    def forward(self, x: torch.Tensor, h_iter: torch.Tensor | None) -> torch.Tensor:
        """x, h_iter (B*T, nf, H, W) -> (B*T, nf, H, W)."""
        pre = self.w_x(x)
        if h_iter is not None:
            pre = pre + self.w_i(h_iter)
        return F.relu(pre)


class CRNNDenoiser(nn.Module):
    """One CRNN-MRI iteration without DC: ``denoiser(x, state) -> (x, state)``.

    Args:
        nf: feature channels.
        layers: total layers: 1 BCRNN + (layers - 2) CRNN-i + 1 output convolution.
    """

    def __init__(self, nf: int = 64, layers: int = 5) -> None:
        super().__init__()
        if layers < 2 or nf < 1:
            raise ConfigError(f"CRNN needs layers >= 2 and nf >= 1, got layers={layers}, nf={nf}")
        self.bcrnn = BCRNNLayer(2, nf)
        self.crnn_i = nn.ModuleList([CRNNiLayer(nf) for _ in range(layers - 2)])
        self.out = _conv(nf, 2)

    def forward(self, x: torch.Tensor, state: CRNNState | None) -> tuple[torch.Tensor, CRNNState]:
        """x (B, T, H, W) complex -> (x + residual (B, T, H, W), new state)."""
        b, t, h, w = x.shape
        xc = to_channels(x)  # (B, T, 2, H, W)
        hb = self.bcrnn(xc, None if state is None else state.bcrnn)
        feat = hb.reshape(b * t, -1, h, w)
        hidden = []
        for k, layer in enumerate(self.crnn_i):
            prev = None if state is None else state.crnn_i[k].reshape(b * t, -1, h, w)
            feat = layer(feat, prev)
            hidden.append(feat.view(b, t, -1, h, w))
        res = self.out(feat).view(b, t, 2, h, w)
        return x + from_channels(res), CRNNState(hb, tuple(hidden))


@dataclass(frozen=True)
class CRNNConfig:
    """CRNN-MRI hyper-parameters (paper: 5 iterations, 5 layers, 64 channels, shared weights).

    Attributes:
        nf: feature channels.
        layers: layers per iteration (BCRNN + CRNN-i + output conv).
        cascades: iterations.
        share_weights: one set of weights for all iterations (the paper's recurrence).
        dc_lambda: soft-DC weight initialisation; None = hard (noiseless) DC as in the paper.
        checkpoint_cascades: activation checkpointing per cascade.
    """

    nf: int = 64
    layers: int = 5
    cascades: int = 5
    share_weights: bool = True
    dc_lambda: float | None = None
    checkpoint_cascades: bool = False


@register("crnn")
class CRNN(Unrolled):
    """CRNN-MRI (Qin et al. 2019) on the shared unrolled wrapper.

    Called as ``model(kspace (B, C, T, H, W), mask, sens_maps (B, C, 1, H, W)) -> (B, T, H, W)``;
    keyword arguments are the fields of :class:`CRNNConfig`.
    """

    def __init__(self, **kwargs) -> None:
        cfg = config_from_kwargs(CRNNConfig, "crnn", kwargs)
        if cfg.cascades < 1:
            raise ConfigError(f"CRNN needs cascades >= 1, got {cfg.cascades}")
        if cfg.share_weights:
            shared = CRNNDenoiser(cfg.nf, cfg.layers)
            denoisers = [shared] * cfg.cascades
        else:
            denoisers = [CRNNDenoiser(cfg.nf, cfg.layers) for _ in range(cfg.cascades)]
        super().__init__(denoisers, pad_multiple=1, dc=SoftDC(cfg.dc_lambda),
                         checkpoint_cascades=cfg.checkpoint_cascades)
        self.config = cfg
