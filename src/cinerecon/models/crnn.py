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
:class:`CRNNState` handed along by :class:`~cinerecon.models.unrolled.Unrolled`.

Presets (``build_model("crnn", preset=...)``, see :data:`PRESETS`):

* ``"original"``: the authors' function, equal to their code with their published
  weights (``crnn_mri_d5_c5.pth``, loadable with
  :func:`cinerecon.models.compat.load_authors_state_dict`): the raw zero-filled image
  enters the network (no normalisation), and all-zero hidden states (the first frame of
  each direction, every iteration state in the first iteration) still pass through their
  convolutions, so those convolutions' biases act. With one coil and all-ones maps the
  hard DC is the original's single-coil k-space DC; with more coils it is SENSE DC.
* ``"normalised"`` (ours, the default): each cascade's input is standardised by the shared
  wrapper (per-sample mean / std, undone on the output), and convolutions of all-zero
  states are skipped (their biases do not act), so hidden states are features of
  normalised images and the network is equivariant to the intensity scale of the data
  (the original is not: its biases set an absolute scale).

Both have nf = 64, 5 layers, 5 iterations sharing one set of weights: 297,794 parameters
(the published checkpoint). The seed paper's Table 1 row (CRNN-MRI, 1.49 M parameters)
counts five unshared copies of the original: its configuration is
``build_model("crnn", preset="original", share_weights=False)``, 1,488,970 parameters.
Both presets take any field of :class:`CRNNConfig` as an override.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
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


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """A convolution applied to an all-zero input: its bias, shaped (1, C, 1, 1)."""
    return conv.bias.view(1, -1, 1, 1)


class BCRNNLayer(nn.Module):
    """Bidirectional convolutional recurrent layer over time with an iteration input.

    The input-to-hidden and iteration-to-hidden convolutions do not depend on the previous
    frame and run batched over all frames; only the hidden-to-hidden convolution is
    sequential, and both directions advance together in one batched convolution per step.
    One cell serves both directions.

    Args:
        cin: input channels.
        nf: hidden channels.
        zero_state_bias: all-zero states (h_(-1) of each direction, the iteration state
            of the first cascade) pass through their convolutions, so ``w_h`` and ``w_i``
            add their biases there (the original); otherwise those terms are skipped.
    """

    def __init__(self, cin: int, nf: int, zero_state_bias: bool = False) -> None:
        super().__init__()
        self.w_x = _conv(cin, nf)
        self.w_h = _conv(nf, nf)
        self.w_i = _conv(nf, nf)
        self.zero_state_bias = zero_state_bias

    def forward(self, x: torch.Tensor, h_iter: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, cin, H, W), h_iter (B, T, nf, H, W) or None (zeros) -> (B, T, nf, H, W)."""
        b, t, c, h, w = x.shape
        drive = self.w_x(x.reshape(b * t, c, h, w))
        if h_iter is not None:
            drive = drive + self.w_i(h_iter.reshape(b * t, -1, h, w))
        elif self.zero_state_bias:
            drive = drive + _bias(self.w_i)
        drive = drive.view(b, t, -1, h, w)
        both = torch.cat([drive, drive.flip(1)], dim=0)  # forward and backward sequences
        first = both[:, 0] + _bias(self.w_h) if self.zero_state_bias else both[:, 0]
        hid = F.relu(first)
        seq = [hid]
        for k in range(1, t):
            hid = F.relu(both[:, k] + self.w_h(hid))
            seq.append(hid)
        out = torch.stack(seq, dim=1)
        return out[:b] + out[b:].flip(1)


class CRNNiLayer(nn.Module):
    """Convolutional recurrence over iterations only: ReLU(W * x + W_i * h^(i-1)), per frame.

    Args:
        nf: channels.
        zero_state_bias: a missing (all-zero) iteration state still adds ``w_i``'s bias.
    """

    def __init__(self, nf: int, zero_state_bias: bool = False) -> None:
        super().__init__()
        self.w_x = _conv(nf, nf)
        self.w_i = _conv(nf, nf)
        self.zero_state_bias = zero_state_bias

    def forward(self, x: torch.Tensor, h_iter: torch.Tensor | None) -> torch.Tensor:
        """x, h_iter (B*T, nf, H, W) (h_iter None: zeros) -> (B*T, nf, H, W)."""
        pre = self.w_x(x)
        if h_iter is not None:
            pre = pre + self.w_i(h_iter)
        elif self.zero_state_bias:
            pre = pre + _bias(self.w_i)
        return F.relu(pre)


class CRNNDenoiser(nn.Module):
    """One CRNN-MRI iteration without DC: ``denoiser(x, state) -> (x, state)``.

    Args:
        nf: feature channels.
        layers: total layers: 1 BCRNN + (layers - 2) CRNN-i + 1 output convolution.
        zero_state_bias: see :class:`BCRNNLayer`.
    """

    def __init__(self, nf: int = 64, layers: int = 5, zero_state_bias: bool = False) -> None:
        super().__init__()
        if layers < 2 or nf < 1:
            raise ConfigError(f"CRNN needs layers >= 2 and nf >= 1, got layers={layers}, nf={nf}")
        self.bcrnn = BCRNNLayer(2, nf, zero_state_bias)
        self.crnn_i = nn.ModuleList([CRNNiLayer(nf, zero_state_bias) for _ in range(layers - 2)])
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
    """CRNN-MRI hyper-parameters; the defaults are the ``"normalised"`` preset (ours).

    Attributes:
        nf: feature channels (paper: 64).
        layers: layers per iteration, BCRNN + CRNN-i + output conv (paper: 5).
        cascades: iterations (paper: 5).
        share_weights: one set of weights for all iterations (the published checkpoint);
            ``False`` gives each cascade its own (the seed paper's 1.49 M count).
        dc_lambda: soft-DC weight initialisation; None = hard (noiseless) DC as in the paper.
        normalise: standardise each cascade's input (ours); the original does not.
        zero_state_bias: all-zero states pass through their convolutions so their biases
            act (the original); ours skips them.
        checkpoint_cascades: activation checkpointing per cascade.
    """

    nf: int = 64
    layers: int = 5
    cascades: int = 5
    share_weights: bool = True
    dc_lambda: float | None = None
    normalise: bool = True
    zero_state_bias: bool = False
    checkpoint_cascades: bool = False


#: Named configurations: the authors' function and our normalised variant (the default).
PRESETS: dict[str, CRNNConfig] = {
    "normalised": CRNNConfig(),
    "original": CRNNConfig(normalise=False, zero_state_bias=True),
}


@register("crnn")
class CRNN(Unrolled):
    """CRNN-MRI (Qin et al. 2019) on the shared unrolled wrapper.

    Called as ``model(kspace (B, C, T, H, W), mask, sens_maps (B, C, 1, H, W)) -> (B, T, H, W)``
    complex. Keyword arguments: ``preset`` (a name in :data:`PRESETS`, default
    ``"normalised"``) and any field of :class:`CRNNConfig` overriding it.
    """

    def __init__(self, preset: str = "normalised", **overrides) -> None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown CRNN preset {preset!r}; available: {sorted(PRESETS)}")
        cfg = config_from_kwargs(CRNNConfig, "crnn", {**asdict(PRESETS[preset]), **overrides})
        if cfg.cascades < 1:
            raise ConfigError(f"CRNN needs cascades >= 1, got {cfg.cascades}")
        make = lambda: CRNNDenoiser(cfg.nf, cfg.layers, cfg.zero_state_bias)  # noqa: E731
        if cfg.share_weights:
            denoisers = [make()] * cfg.cascades
        else:
            denoisers = [make() for _ in range(cfg.cascades)]
        super().__init__(denoisers, pad_multiple=1, dc=SoftDC(cfg.dc_lambda),
                         checkpoint_cascades=cfg.checkpoint_cascades, normalise=cfg.normalise)
        self.config = cfg

    def config_dict(self) -> dict:
        """Keyword arguments that rebuild this model with ``build_model("crnn", **kw)``."""
        return asdict(self.config)
