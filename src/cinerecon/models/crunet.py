"""CRUNet-MR (Lyu et al.): a convolutional recurrent U-Net per cascade, unrolled with hard DC.

Each cascade is a two-level U-Net whose encoder/decoder units are CRNN-TI units
(recurrent over frames, and over cascades through an iteration state), with Conv(2+1)D
down/up-sampling and dilated Conv(2+1)D blocks; the computation follows
``shared/reference/README.md`` step by step, and the module names follow the authors'
parameter names (see :mod:`cinerecon.models.compat` for the few renames).

Feature layout inside a cascade: real (B, T, C, H, W), stored channels fastest (each frame
channels-last, :func:`~cinerecon.models.blocks.channels_last_frames`) so that oneDNN runs
channels-last convolutions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn

from ..errors import ConfigError
from . import register
from .blocks import (Conv2p1d, CRNNUnit, TemporalPadding, add_side, cat_features, channels_last_frames, check_unet_config,
                     conv_frames, side_conv)
from .complex_io import from_channels, to_channels
from .unrolled import ConfiguredUnrolled, config_from_kwargs


#: The CRNN-TI units of a cascade, in the order of :class:`CRUNetState`'s fields.
UNITS = ("d_crnn1", "d_crnn2", "bcrnn", "u_crnn1", "u_crnn2")


class CRUNetState(NamedTuple):
    """Iteration state handed from one cascade to the next, one entry per CRNN-TI unit.

    Level 1 is (B, T, C, H', W'), level 2 and the bottleneck (B, T, C, H'/2, W'/2).

    Attributes:
        h0: for ``d_crnn1`` (level-1 encoder) = previous cascade's level-1 decoder output d1.
        h1: for ``d_crnn2`` (level-2 encoder) = previous cascade's level-2 decoder output d2.
        h2: for ``bcrnn`` (bottleneck) = previous cascade's bottleneck output b.
        h3: for ``u_crnn1`` (level-2 decoder) = d2.
        h4: for ``u_crnn2`` (level-1 decoder) = d1.
    """

    h0: torch.Tensor
    h1: torch.Tensor
    h2: torch.Tensor
    h3: torch.Tensor
    h4: torch.Tensor


@dataclass(frozen=True)
class CRUNetConfig:
    """Hyper-parameters of CRUNet-MR; the defaults are the paper's model.

    Attributes:
        chans: feature channels C.
        cascades: number of unrolled cascades.
        dilations: dilation of (level 1, level 2, bottleneck).
        side_branches: the 1x1 side branches conv11..conv51 ("skip connection" ablation off).
        temporal_padding: "circular" or "zero" padding of the temporal convolutions.
        iteration_recurrence: the ih2ih recurrence across cascades ("CRNN-TI" ablation off).
        checkpoint_cascades: activation checkpointing per cascade (training memory).
        initial_image: first cascade's input, "zero_filled" (paper), "view_sharing", "cg_sense",
            "lplus_s" or "lplus_s_kt" (ours; see :class:`~cinerecon.models.unrolled.Unrolled`).
        uncalibrated_weights: a second set of cascade weights, used for the items whose mask
            has no calibration block (k-t masks without ACS); ours, off in the paper.
    """

    chans: int = 64
    cascades: int = 5
    dilations: tuple[int, int, int] = (1, 2, 4)
    side_branches: bool = True
    temporal_padding: TemporalPadding = "circular"
    iteration_recurrence: bool = True
    checkpoint_cascades: bool = False
    initial_image: str = "zero_filled"
    uncalibrated_weights: bool = False

    def __post_init__(self) -> None:
        check_unet_config(self)


class CRUNetCascade(nn.Module):
    """One CRUNet-MR cascade (denoiser): ``(x, state) -> (x + residual, new_state)``.

    Args:
        cfg: the model configuration.
    """

    def __init__(self, cfg: CRUNetConfig) -> None:
        super().__init__()
        c, (d1, d2, d3), tp = cfg.chans, cfg.dilations, cfg.temporal_padding
        rec, side = cfg.iteration_recurrence, cfg.side_branches
        self.conv0 = nn.Conv2d(2, c, 3, padding=1)
        self.d_crnn1 = CRNNUnit(c, d1, "forward", rec)
        self.conv11 = side_conv(c, side)
        self.d_conv = Conv2p1d(c, c, 2, stride=2, padding=0, temporal_padding=tp)
        self.d_crnn2 = CRNNUnit(c, d2, "forward", rec)
        self.conv21 = side_conv(c, side)
        self.convs1 = Conv2p1d(c, c, 3, padding=d2, dilation=d2, temporal_padding=tp)
        self.bcrnn = CRNNUnit(c, d3, "bidirectional", rec)
        self.conv31 = side_conv(c, side)
        self.convs2 = Conv2p1d(c, c, 3, padding=d3, dilation=d3, temporal_padding=tp)
        self.u_crnn1 = CRNNUnit(c, d2, "backward", rec)
        self.conv41 = side_conv(c, side)
        self.conv1 = Conv2p1d(2 * c, c, 3, padding=d2, dilation=d2, temporal_padding=tp)
        self.u_conv = Conv2p1d(c, c, 2, stride=2, padding=0, transpose=True, temporal_padding=tp)
        self.u_crnn2 = CRNNUnit(c, d1, "backward", rec)
        self.conv51 = side_conv(c, side)
        self.conv2 = Conv2p1d(2 * c, c, 3, padding=1, temporal_padding=tp)
        self.conv = nn.Conv2d(c, 2, 5, padding=2)

    def forward(self, x: torch.Tensor, state: CRUNetState | None) -> tuple[torch.Tensor, CRUNetState]:
        """Denoise.

        Args:
            x: normalised, padded image (B, T, H', W') complex, H' and W' even.
            state: the previous cascade's :class:`CRUNetState`, or None in the first cascade.

        Returns:
            (x + residual (B, T, H', W') complex, the new state).
        """
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ConfigError(f"CRUNet cascade needs even H and W after padding, got {tuple(x.shape)}")
        s = state if state is not None else CRUNetState(None, None, None, None, None)
        f0 = conv_frames(self.conv0, channels_last_frames(to_channels(x)))  # features channels-last from here
        e1 = add_side(self.d_crnn1(f0, s.h0), self.conv11, f0)
        f1 = self.d_conv(e1)
        e2 = self.convs1(add_side(self.d_crnn2(f1, s.h1), self.conv21, f1))
        b = self.convs2(add_side(self.bcrnn(e2, s.h2), self.conv31, e2))
        d2 = add_side(self.u_crnn1(b, s.h3), self.conv41, b)
        d2 = self.conv1(cat_features([e2, d2], 2))
        u = self.u_conv(d2)
        d1 = add_side(self.u_crnn2(u, s.h4), self.conv51, u)
        d1 = self.conv2(cat_features([e1, d1], 2))
        out = x + from_channels(conv_frames(self.conv, d1).to(x.real.dtype))
        return out, CRUNetState(h0=d1, h1=d2, h2=b, h3=d2, h4=d1)


class CRUNet(ConfiguredUnrolled):
    """CRUNet-MR: ``cfg.cascades`` :class:`CRUNetCascade` s in the shared :class:`Unrolled` loop.

    Called as ``model(kspace (B, C, T, H, W), mask, sens_maps (B, C, 1, H, W)) -> (B, T, H, W)``.
    Per cascade: normalise, pad H and W to a multiple of 8, denoise, crop, un-normalise, hard DC.

    The first cascade's iteration state is zero, so its five ``ih2ih`` convolutions reduce to
    their biases and hold no weight (:class:`~cinerecon.models.blocks.IterationBias`): every
    parameter of the model acts, as DistributedDataParallel requires. At the paper's size
    that is 4,353,610 parameters; the authors' files also hold the five idle 64 x 64 x 3 x 3
    weights (4,537,930 without their unused ``pp`` tensors), which loading accepts and drops
    (:mod:`cinerecon.models.compat`).

    Args:
        cfg: a :class:`CRUNetConfig`.
    """

    def __init__(self, cfg: CRUNetConfig) -> None:
        super().__init__(cfg, CRUNetCascade, pad_multiple=8)
        for cascades in [c for c in (self.cascades, self.uncalibrated_cascades) if c is not None]:
            for unit in UNITS:  # built like the others (same random stream), then reduced
                getattr(cascades[0], unit).cell.zero_iteration_state()

    def idle_weights(self) -> dict[str, torch.Size]:
        """Weights of the authors' layout that never act here: {our key: shape}.

        The first cascade's ``ih2ih`` weights (absent from this model; see the class
        docstring). :func:`~cinerecon.models.compat.load_authors_state_dict` drops them from a
        file, :func:`~cinerecon.models.compat.to_authors_state_dict` writes them as zeros.
        """
        out = {}
        for unit in UNITS:
            cell = getattr(self.cascades[0], unit).cell
            if cell.ih2ih is not None and cell.ih2ih.weight is None:
                out[f"cascades.0.{unit}.cell.ih2ih.weight"] = cell.i2h.weight.shape
        return out


@register("crunet")
def build_crunet(**kwargs) -> CRUNet:
    """Build CRUNet-MR from :class:`CRUNetConfig` keyword arguments."""
    return CRUNet(config_from_kwargs(CRUNetConfig, "crunet", kwargs))
