"""Building blocks of CRUNet-MR and its relatives: Conv(2+1)D, the CRNN-TI unit, a Conv3D block.

All blocks work on real feature tensors in the layout (B, T, C, H, W): frames are folded
into the batch for every 2D convolution. The temporal mixing (kernel 3 along T) is, on
features stored channels fastest (as CRUNet-MR keeps them), three matrix products of the
(pixels, C) rows accumulated in place into the shifted frames (:func:`temporal_conv`, a
Python loop over the batch items only), and otherwise one 1x1 convolution to 3 x C channels
followed by a shifted sum over frames (:func:`tap_conv`). No block loops over frames or
pixels except the hidden-to-hidden recurrence of :class:`CRNNUnit`, which is sequential.

Temporal padding is either ``"circular"`` (frame T-1 precedes frame 0, frame 0 follows
frame T-1, natural for a cardiac cycle) or ``"zero"``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError

TemporalPadding = Literal["circular", "zero"]
Direction = Literal["forward", "backward", "bidirectional"]
PADDINGS = ("circular", "zero")
DIRECTIONS = ("forward", "backward", "bidirectional")


def check_padding(padding: str) -> str:
    """Validate a temporal padding name."""
    if padding not in PADDINGS:
        raise ConfigError(f"temporal_padding must be one of {PADDINGS}, got {padding!r}")
    return padding


def check_unet_config(cfg: Any) -> None:
    """Validate the fields the two-level U-Net configs (CRUNet-MR, 3D UNet-MR) share.

    Makes ``cfg.dilations`` (level 1, level 2, bottleneck) a tuple of ints (frozen dataclasses
    too) and checks it, ``cfg.chans``, ``cfg.cascades`` and ``cfg.temporal_padding``.
    """
    object.__setattr__(cfg, "dilations", tuple(int(d) for d in cfg.dilations))
    if len(cfg.dilations) != 3 or min(cfg.dilations) < 1:
        raise ConfigError(f"dilations must be three positive integers, got {cfg.dilations}")
    if cfg.chans < 1 or cfg.cascades < 1:
        raise ConfigError(f"chans and cascades must be positive, got {cfg.chans}, {cfg.cascades}")
    check_padding(cfg.temporal_padding)


def fold(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) -> (B*T, C, H, W) (a view when contiguous)."""
    return x.reshape(-1, *x.shape[2:])


def unfold(y: torch.Tensor, batch: int) -> torch.Tensor:
    """(B*T, C, H, W) -> (B, T, C, H, W)."""
    return y.reshape(batch, -1, *y.shape[1:])


def channels_last_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) with the channels stored fastest (each frame channels-last), same values.

    Features in this layout stay in it through :func:`fold` / :func:`unfold` (views), the
    convolutions (oneDNN keeps channels-last), element-wise operations and the helpers below;
    oneDNN's channels-last convolutions are faster, by 1.5x for a 64 -> 64 3 x 3 layer in bf16.
    """
    return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


def _channels_fastest(x: torch.Tensor) -> bool:
    return x.dim() == 5 and x.stride(2) == 1 and x.shape[2] > 1


def cat_features(tensors: list[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.cat`` of (B, T, C, H, W) features that keeps the first one's layout (torch.cat
    returns the standard layout for channels-fastest 5-D tensors).

    Channels-fastest features are concatenated as their (B, T, H, W, C) views, which are
    contiguous: one ``torch.cat`` that keeps the layout, whose backward is plain slicing (a
    copy into slices of a preallocated output would clone the whole gradient once per piece in
    the backward pass), and 5x faster along the channels than copying into channel slices.
    """
    first = tensors[0]
    same = all(x.dim() == 5 and x.dtype == first.dtype and x.device == first.device
               and all(x.shape[i] == first.shape[i] for i in range(5) if i != dim % 5) for x in tensors)
    if not (_channels_fastest(first) and same and -5 <= dim < 5):  # torch.cat's layout, or its error
        return torch.cat(tensors, dim)
    axis = (0, 1, 4, 2, 3)[dim % 5]  # where dim sits in the (B, T, H, W, C) view
    return torch.cat([x.permute(0, 1, 3, 4, 2) for x in tensors], dim=axis).permute(0, 1, 4, 2, 3)


def roll_frames(x: torch.Tensor, shift: int) -> torch.Tensor:
    """``x.roll(shift, dims=1)``, keeping the layout for shift = +-1 (``torch.roll`` otherwise)."""
    if shift == 1:
        return cat_features([x[:, -1:], x[:, :-1]], 1)
    if shift == -1:
        return cat_features([x[:, 1:], x[:, :1]], 1)
    return x.roll(shift, dims=1)


def stack_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(frames, dim=1)`` of (N, C, H, W) frames, in the layout of a channels-last first frame."""
    return cat_features([f.unsqueeze(1) for f in frames], 1)


def conv_frames(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2D (transposed) convolution to every frame: (B, T, C, H, W) -> (B, T, C', H', W')."""
    return unfold(conv(fold(x)), x.shape[0])


def pixel_rows(x: torch.Tensor) -> torch.Tensor | None:
    """Channels-fastest (B, T, C, H, W) features as a (B*T*H*W, C) matrix view, or None for other layouts."""
    if x.dim() != 5:
        return None
    p = x.permute(0, 1, 3, 4, 2)
    return p.view(-1, x.shape[2]) if p.is_contiguous() else None


def _from_rows(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B*T*H*W, C') rows -> (B, T, C', H, W) channels-fastest, for features shaped like ``like``."""
    b, t, _, h, w = like.shape
    return y.view(b, t, h, w, y.shape[-1]).permute(0, 1, 4, 2, 3)


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 convolution of every frame, (B, T, C_in, H, W) -> (B, T, C_out, H, W).

    On channels-fastest features it is one matrix product of the (pixels, C_in) view, with no
    layout copies (PyTorch otherwise sends small-batch 1x1 convolutions on one thread to its
    slow im2col path); other layouts use ``F.conv2d``.

    Args:
        x: (B, T, C_in, H, W).
        weight: (C_out, C_in, 1, 1) or (C_out, C_in).
        bias: (C_out,) or None.
    """
    rows = pixel_rows(x)
    w = weight.reshape(weight.shape[0], -1)
    if rows is None:
        return unfold(F.conv2d(fold(x), w[..., None, None], bias), x.shape[0])
    y = rows @ w.t() if bias is None else torch.addmm(bias, rows, w.t())
    return _from_rows(y, x)


def side_conv(chans: int, enabled: bool) -> nn.Conv2d | None:
    """A 1x1 side-branch Conv2d (C -> C) around a U-Net unit, or None when disabled."""
    return nn.Conv2d(chans, chans, 1) if enabled else None


def add_side(y: torch.Tensor, side: nn.Conv2d | None, x: torch.Tensor) -> torch.Tensor:
    """A unit's output y plus its side branch applied to the unit's input x (B, T, C, H, W).

    On channels-fastest features of one dtype the 1x1 convolution is accumulated into a copy
    of y by one matrix product (no separate convolution output and sum).
    """
    if side is None:
        return y
    rows_x = pixel_rows(x)
    if rows_x is None or pixel_rows(y) is None or y.shape[:2] + y.shape[3:] != x.shape[:2] + x.shape[3:]:
        return y + pointwise_conv(x, side.weight, side.bias)
    w = side.weight.reshape(side.weight.shape[0], -1)
    out = torch.addmm(pixel_rows(y), rows_x, w.t())
    if side.bias is not None:
        out = out + side.bias.to(out.dtype) if torch.is_grad_enabled() else out.add_(side.bias.to(out.dtype))
    return _from_rows(out, x)


def shift_sum(z: torch.Tensor, padding: TemporalPadding) -> torch.Tensor:
    """Combine per-tap contributions of a kernel-3 temporal convolution.

    With ``z[:, t, k] = W_k x_t`` (tap k of the kernel applied to frame t), returns
    ``y_t = z[:, t-1, 0] + z[:, t, 1] + z[:, t+1, 2]`` where frames outside [0, T) are
    wrapped (circular) or zero.

    Args:
        z: (B, T, 3, C, H, W).
        padding: "circular" or "zero".

    Returns:
        (B, T, C, H, W).
    """
    prev, mid, nxt = z.unbind(2)
    if padding == "circular":
        return mid + roll_frames(prev, 1) + roll_frames(nxt, -1)
    zero = torch.zeros_like(mid[:, :1])
    return mid + cat_features([zero, prev[:, :-1]], 1) + cat_features([nxt[:, 1:], zero], 1)


def tap_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: TemporalPadding,
             dilation: int = 1) -> torch.Tensor:
    """A 3D convolution with temporal kernel 3 (padding 1, dilation 1) on the (B, T, C, H, W) layout.

    The three temporal taps are stacked along the output channels of one per-frame Conv2d
    (zero spatial padding dilation * (k // 2), "same" for odd square kernels k) and combined
    by :func:`shift_sum`.

    Args:
        x: (B, T, C_in, H, W).
        weight: (C_out, C_in, 3, k, k), Conv3d layout, k odd.
        bias: (C_out,) or None.
        padding: temporal padding, "circular" or "zero".
        dilation: spatial dilation.

    Returns:
        (B, T, C_out, H, W).
    """
    c_out, k = weight.shape[0], weight.shape[2]
    w = weight.permute(2, 0, 1, 3, 4).reshape(k * c_out, weight.shape[1], *weight.shape[3:])  # tap-major
    pad = dilation * (weight.shape[-1] // 2)
    z = F.conv2d(fold(x), w, padding=pad, dilation=dilation)
    z = z.reshape(x.shape[0], x.shape[1], k, c_out, *z.shape[-2:])
    y = shift_sum(z, padding)
    if bias is not None:
        y = y + bias.to(y.dtype).view(1, 1, -1, 1, 1)
    return y


def temporal_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  padding: TemporalPadding) -> torch.Tensor:
    """Kernel-3 Conv1d along T applied at every pixel, without moving T off the batch axes.

    Equivalent to ``F.conv1d`` on (B*H*W, C, T) with padding 1 (circular or zero).

    Args:
        x: (B, T, C_in, H, W).
        weight: (C_out, C_in, 3), Conv1d layout.
        bias: (C_out,) or None.
        padding: "circular" or "zero".

    Returns:
        (B, T, C_out, H, W).

    On channels-fastest features it is three matrix products of the (pixels, C) view: the
    centre tap (with the bias) makes the output, and the two outer taps are accumulated into
    its frame ranges in place (frames t >= 1 get W_0 x_{t-1}, frames t <= T-2 get W_2 x_{t+1},
    and with circular padding frame 0 gets W_0 x_{T-1} and frame T-1 gets W_2 x_0), so no
    per-tap output is written and shifted. Other layouts use :func:`tap_conv`.
    """
    rows = pixel_rows(x)
    if rows is None:
        return tap_conv(x, weight[..., None, None], bias, padding)
    b, t, c_in, h, w = x.shape
    taps = weight.permute(2, 1, 0)  # (3, C_in, C_out): taps[k] = W_k^T
    y = rows @ taps[1] if bias is None else torch.addmm(bias, rows, taps[1])
    w0, w2 = taps[0].to(y.dtype), taps[2].to(y.dtype)
    ys, xs = y.view(b, t, h * w, -1), rows.view(b, t, h * w, c_in).to(y.dtype)
    for i in range(b):
        yi, xi = ys[i], xs[i]
        if t > 1:
            yi[1:].view(-1, yi.shape[-1]).addmm_(xi[:-1].reshape(-1, c_in), w0)
            yi[:-1].view(-1, yi.shape[-1]).addmm_(xi[1:].reshape(-1, c_in), w2)
        if padding == "circular":
            yi[0].addmm_(xi[t - 1], w0)
            yi[t - 1].addmm_(xi[0], w2)
    return _from_rows(y, x)


class Conv2p1d(nn.Module):
    """Conv(2+1)D: per-frame 2D (transposed) conv -> ReLU -> temporal Conv1d (kernel 3), no final activation.

    Args:
        in_chans: input channels.
        out_chans: output channels.
        kernel: 2D kernel size.
        stride: 2D stride.
        padding: 2D zero padding.
        dilation: 2D dilation.
        transpose: use ConvTranspose2d (the up-sampling block) instead of Conv2d.
        temporal_padding: "circular" or "zero" padding of the temporal Conv1d.

    Submodules ``spatial`` (Conv2d / ConvTranspose2d) and ``temporal`` (Conv1d C_out -> C_out,
    kernel 3) hold the weights in standard PyTorch layouts. Without autograd the ReLU acts in
    place on ``spatial``'s output (a forward hook that keeps that output sees it activated).
    """

    def __init__(self, in_chans: int, out_chans: int, kernel: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1, transpose: bool = False,
                 temporal_padding: TemporalPadding = "circular") -> None:
        super().__init__()
        if transpose:
            self.spatial: nn.Module = nn.ConvTranspose2d(in_chans, out_chans, kernel, stride=stride,
                                                         padding=padding, dilation=dilation)
        else:
            self.spatial = nn.Conv2d(in_chans, out_chans, kernel, stride=stride, padding=padding,
                                     dilation=dilation)
        self.temporal = nn.Conv1d(out_chans, out_chans, 3, padding=1)
        self.temporal_padding = check_padding(temporal_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C_in, H, W) -> (B, T, C_out, H', W')."""
        y = conv_frames(self.spatial, x)
        y = torch.relu(y) if torch.is_grad_enabled() and y.requires_grad else y.relu_()  # a fresh output
        return temporal_conv(y, self.temporal.weight, self.temporal.bias, self.temporal_padding)


class IterationBias(nn.Module):
    """What ``ih2ih`` is in a cell whose iteration state is always zero (the first cascade).

    ``ih2ih(0)`` is its bias alone, so only the bias is a parameter: a weight that can never
    receive a gradient would make DistributedDataParallel fail at its second step. The
    state-dict key stays ``...ih2ih.bias``; a stored ``...ih2ih.weight`` (checkpoints written
    before this change, the authors' files) is accepted and dropped on loading.

    Args:
        conv: the Conv2d built for ``ih2ih``; its bias is kept (same values, same random
            stream at construction, so seeded initialisation is unchanged).
    """

    weight = None

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.bias = conv.bias

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "weight", None)  # multiplies a zero state: never acts
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class CRNNCell(nn.Module):
    """The CRNN-TI cell: h_t = ReLU(i2h(x_t) + h2h(h_{t-1}) + ih2ih(hiter_t)).

    Each term is a Conv2d(C -> C, 3x3, dilation d, padding d) with bias.

    Args:
        chans: channels C.
        dilation: dilation d of all three convolutions.
        iteration_recurrence: keep ``ih2ih`` (the recurrence across cascades); without it the
            cell sees no iteration state (the paper's "CRNN-TI" ablation).

    :meth:`zero_iteration_state` turns ``ih2ih`` into its bias alone (:class:`IterationBias`)
    for a cell that never receives an iteration state.
    """

    def __init__(self, chans: int, dilation: int = 1, iteration_recurrence: bool = True) -> None:
        super().__init__()
        conv = lambda: nn.Conv2d(chans, chans, 3, padding=dilation, dilation=dilation)  # noqa: E731
        self.i2h = conv()
        self.h2h = conv()
        self.ih2ih = conv() if iteration_recurrence else None
        self.dilation = dilation

    def zero_iteration_state(self) -> None:
        """Keep only ``ih2ih``'s bias: this cell's iteration state is always zero (first cascade)."""
        if isinstance(self.ih2ih, nn.Conv2d):
            self.ih2ih = IterationBias(self.ih2ih)

    def input_terms(self, x: torch.Tensor, hiter: torch.Tensor | None) -> torch.Tensor:
        """Everything that does not depend on h_{t-1}, for all frames in one convolution.

        Returns i2h(x_t) + ih2ih(hiter_t) + all three biases, (B, T, C, H, W). With both
        x and hiter present, i2h and ih2ih run as one convolution on the concatenated
        channels. ``hiter=None`` means a zero iteration state (only ih2ih's bias acts).
        """
        d = self.dilation
        bias = self.i2h.bias + self.h2h.bias
        if self.ih2ih is not None:
            bias = bias + self.ih2ih.bias
        if hiter is not None and isinstance(self.ih2ih, IterationBias):
            raise ConfigError("this CRNN-TI cell has no ih2ih weight (a first-cascade cell, whose "
                              "iteration state is zero); it cannot take an iteration state")
        if self.ih2ih is not None and hiter is not None:
            w = torch.cat([self.i2h.weight, self.ih2ih.weight], dim=1)
            y = F.conv2d(fold(cat_features([x, hiter], 2)), w, bias, padding=d, dilation=d)
        else:
            y = F.conv2d(fold(x), self.i2h.weight, bias, padding=d, dilation=d)
        return unfold(y, x.shape[0])

    def recur(self, h: torch.Tensor) -> torch.Tensor:
        """h2h without its bias (the bias is part of :meth:`input_terms`), (N, C, H, W)."""
        d = self.dilation
        return F.conv2d(h, self.h2h.weight, None, padding=d, dilation=d)


class CRNNUnit(nn.Module):
    """A CRNN-TI unit: the cell run over frames in one direction, or both directions summed.

    Args:
        chans: channels C.
        dilation: dilation of the cell's convolutions.
        direction: "forward" (t = 0..T-1), "backward" (t = T-1..0) or "bidirectional" (both
            with one shared cell, outputs summed per frame).
        iteration_recurrence: see :class:`CRNNCell`.
    """

    def __init__(self, chans: int, dilation: int = 1, direction: Direction = "forward",
                 iteration_recurrence: bool = True) -> None:
        super().__init__()
        if direction not in DIRECTIONS:
            raise ConfigError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.cell = CRNNCell(chans, dilation, iteration_recurrence)
        self.direction = direction

    def forward(self, x: torch.Tensor, hiter: torch.Tensor | None = None) -> torch.Tensor:
        """Run the unit.

        Args:
            x: input features (B, T, C, H, W).
            hiter: iteration state from the previous cascade, (B, T, C, H, W), or None (zeros).

        Returns:
            Hidden states h_t for every frame, (B, T, C, H, W) (summed over both
            directions when bidirectional).
        """
        pre = self.cell.input_terms(x, hiter)
        b, t = pre.shape[:2]
        if not (torch.is_grad_enabled() and (pre.requires_grad or self.cell.h2h.weight.requires_grad)):
            # no autograd through the recurrence (inference): the scan in place
            if self.direction == "forward":
                return self._scan_in_place(pre, reverse=False)
            if self.direction == "backward":
                return self._scan_in_place(pre, reverse=True)
            both = self._scan_in_place(cat_features([pre, pre.flip(1)], 0), reverse=False)
            return both[:b].add_(both[b:].flip(1))
        if self.direction == "bidirectional":
            # both directions advance together: forward step s and backward step s share one conv
            both = cat_features([pre, pre.flip(1)], 0)
            hs = self._scan(both)
            return hs[:b] + hs[b:].flip(1)
        if self.direction == "backward":
            return self._scan(pre.flip(1)).flip(1)
        return self._scan(pre)

    def _scan_in_place(self, pre: torch.Tensor, reverse: bool) -> torch.Tensor:
        """:meth:`_scan` (``reverse``: from frame T-1 down to 0) writing h_t over ``pre``, which it returns.

        Without autograd only: each frame's sum and ReLU are done in place, and the frames of
        ``pre`` become the output, so no per-frame tensors are allocated and stacked.
        """
        order = range(pre.shape[1] - 1, -1, -1) if reverse else range(pre.shape[1])
        h = None
        for s in order:
            h = pre[:, s] if h is None else pre[:, s].add_(self.cell.recur(h))
            h.relu_()
        return pre

    def _scan(self, pre: torch.Tensor) -> torch.Tensor:
        """h_t = ReLU(pre_t + h2h(h_{t-1})) for t = 0..T-1 with h_{-1} = 0, (N, T, C, H, W)."""
        h = torch.relu(pre[:, 0])
        out = [h]
        for s in range(1, pre.shape[1]):
            h = torch.relu(pre[:, s] + self.cell.recur(h))
            out.append(h)
        return stack_frames(out)


class Conv3dBlock(nn.Module):
    """Conv3d (3x3x3, spatial dilation d) -> ReLU, the non-recurrent stand-in for a CRNN-TI unit.

    The temporal axis is padded by one frame (circular or zero), the spatial axes by d
    (zero). Computed as one per-frame Conv2d to 3 x C channels and a shifted sum over frames.

    Args:
        in_chans: input channels.
        out_chans: output channels.
        dilation: spatial dilation d (temporal dilation is 1).
        temporal_padding: "circular" or "zero".
    """

    def __init__(self, in_chans: int, out_chans: int, dilation: int = 1,
                 temporal_padding: TemporalPadding = "circular") -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_chans, out_chans, 3, padding=(1, dilation, dilation),
                              dilation=(1, dilation, dilation))
        self.dilation = dilation
        self.temporal_padding = check_padding(temporal_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C_in, H, W) -> (B, T, C_out, H, W)."""
        return torch.relu(tap_conv(x, self.conv.weight, self.conv.bias, self.temporal_padding, self.dilation))
