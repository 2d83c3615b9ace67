"""A literal, frame-by-frame re-implementation of CRUNet-MR (shared/reference/README.md).

Written for clarity, not speed, as an independent reference for tests and the speed
benchmark: it reads weights directly under the authors' parameter names, keeps features
as Python lists of frames, runs every 2D convolution once per frame, applies each temporal
Conv1d per pixel (pixels folded into the batch) after explicit padding, evaluates the
recurrence terms exactly as written (including ih2ih of a zero state and h2h of a zero
h_{-1}), and does its own centred FFTs for the data consistency.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F


def _fft2c(x):
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def _ifft2c(k):
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def _temporal(frames, w, b, circular):
    """Conv1d (kernel 3, padding 1) along time at every pixel; frames: list of (B, C, H, W)."""
    x = torch.stack(frames, dim=-1)  # (B, C, H, W, T)
    bsz, c, h, wd, t = x.shape
    x = x.permute(0, 2, 3, 1, 4).reshape(bsz * h * wd, c, t)
    if circular:
        x = torch.cat([x[..., -1:], x, x[..., :1]], dim=-1)
    else:
        x = F.pad(x, (1, 1))
    y = F.conv1d(x, w, b)
    y = y.reshape(bsz, h, wd, -1, t).permute(0, 3, 1, 2, 4)
    return [y[..., i] for i in range(t)]


def naive_crunet(sd, k0, mask, maps, dilations=(1, 2, 4), circular=True):
    """Run CRUNet-MR literally.

    Args:
        sd: weights under the authors' names (``cascades.{i}.d_crnn1.CRNN_model.i2h.weight``...);
            side branches and ih2ih are used when present.
        k0: measured k-space (B, C, T, H, W) complex.
        mask: real, broadcastable to k0.
        maps: (B, C, 1, H, W) complex.
        dilations: (level 1, level 2, bottleneck).
        circular: circular (True) or zero (False) temporal padding.

    Returns:
        (B, T, H, W) complex.
    """
    n_casc = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"cascades\.(\d+)\.", k)))
    side = "cascades.0.conv11.weight" in sd
    rec = "cascades.0.d_crnn1.CRNN_model.ih2ih.weight" in sd
    d1, d2, d3 = dilations
    k0 = k0 * mask
    x = (maps.conj() * _ifft2c(k0)).sum(1)  # zero-filled image
    bsz, t_len, h, w = x.shape
    state = None
    for i in range(n_casc):
        def p(name):
            return sd[f"cascades.{i}.{name}"]

        def conv(frames, name, **kw):
            return [F.conv2d(f, p(name + ".weight"), p(name + ".bias"), **kw) for f in frames]

        def c2p1(frames, name, transpose=False, **kw):
            if transpose:
                ys = [torch.relu(F.conv_transpose2d(f, p(name + ".convTranspose2d.weight"),
                                                    p(name + ".convTranspose2d.bias"), stride=2))
                      for f in frames]
                return _temporal(ys, p(name + ".convTranspose1d.weight"), p(name + ".convTranspose1d.bias"), circular)
            ys = [torch.relu(y) for y in conv(frames, name + ".conv2d", **kw)]
            return _temporal(ys, p(name + ".conv1d.weight"), p(name + ".conv1d.bias"), circular)

        def crnn(frames, hiter, name, d, direction):
            cell = name + ".CRNN_model."
            if hiter is None:
                hiter = [torch.zeros_like(f) for f in frames]

            def run(order):
                out = [None] * len(frames)
                hprev = torch.zeros_like(frames[0])
                for t in order:
                    s = F.conv2d(frames[t], p(cell + "i2h.weight"), p(cell + "i2h.bias"), padding=d, dilation=d)
                    s = s + F.conv2d(hprev, p(cell + "h2h.weight"), p(cell + "h2h.bias"), padding=d, dilation=d)
                    if rec:
                        s = s + F.conv2d(hiter[t], p(cell + "ih2ih.weight"), p(cell + "ih2ih.bias"),
                                         padding=d, dilation=d)
                    hprev = torch.relu(s)
                    out[t] = hprev
                return out

            fwd, bwd = range(len(frames)), range(len(frames) - 1, -1, -1)
            if direction == "forward":
                return run(fwd)
            if direction == "backward":
                return run(bwd)
            return [a + b for a, b in zip(run(fwd), run(bwd))]

        def unit(frames, hiter, name, d, direction, side_name):
            y = crnn(frames, hiter, name, d, direction)
            if side:
                y = [a + b for a, b in zip(y, conv(frames, side_name))]
            return y

        # 1. normalise over all real and imaginary values of each sample
        xr = torch.view_as_real(x)  # (B, T, H, W, 2)
        mean = xr.reshape(bsz, -1).mean(1).view(bsz, 1, 1, 1, 1)
        std = xr.reshape(bsz, -1).std(1).view(bsz, 1, 1, 1, 1)
        xr = (xr - mean) / std
        # 2. pad to multiples of 8 (floor before, ceil after)
        ph, pw = (-h) % 8, (-w) % 8
        top, left = ph // 2, pw // 2
        xin = xr.permute(0, 1, 4, 2, 3)  # (B, T, 2, H, W)
        xin = F.pad(xin, (left, pw - left, top, ph - top))
        frames = [xin[:, t] for t in range(t_len)]
        hs = state if state is not None else {f"h{j}": None for j in range(5)}
        f0 = conv(frames, "conv0", padding=1)
        e1 = unit(f0, hs["h0"], "d_crnn1", d1, "forward", "conv11")
        f1 = c2p1(e1, "d_conv", stride=2)
        e2 = unit(f1, hs["h1"], "d_crnn2", d2, "forward", "conv21")
        e2 = c2p1(e2, "convs1", padding=d2, dilation=d2)
        b = unit(e2, hs["h2"], "bcrnn", d3, "bidirectional", "conv31")
        b = c2p1(b, "convs2", padding=d3, dilation=d3)
        dd2 = unit(b, hs["h3"], "u_crnn1", d2, "backward", "conv41")
        dd2 = c2p1([torch.cat([a, c], 1) for a, c in zip(e2, dd2)], "conv1", padding=d2, dilation=d2)
        u = c2p1(dd2, "u_conv", transpose=True)
        dd1 = unit(u, hs["h4"], "u_crnn2", d1, "backward", "conv51")
        dd1 = c2p1([torch.cat([a, c], 1) for a, c in zip(e1, dd1)], "conv2", padding=1)
        res = conv(dd1, "conv", padding=2)
        y = torch.stack([f + r for f, r in zip(frames, res)], 1)  # (B, T, 2, H', W')
        y = y[..., top:top + h, left:left + w].permute(0, 1, 3, 4, 2)
        y = y * std + mean
        xc = torch.complex(y[..., 0], y[..., 1])
        # data consistency
        k = _fft2c(maps * xc.unsqueeze(1))
        k = (1 - mask) * k + mask * k0
        x = (maps.conj() * _ifft2c(k)).sum(1)
        state = {"h0": dd1, "h1": dd2, "h2": b, "h3": dd2, "h4": dd1}
    return x
