"""CineNet (Kuestner et al. 2020), 2D+t x-f / y-f variant: CG DC reference, planes, shapes, learning;
the complex-valued convolutions against real arithmetic."""

import numpy as np
import pytest
import torch

from cinerecon.errors import ConfigError
from cinerecon.models import build_model
from cinerecon.models.cinenet import ComplexConv2d, XFDenoiser, complex_activation
from cinerecon.models.layers import CGDataConsistency
from cinerecon.operators import SenseOp
from conftest import assert_batch_consistent, assert_reconstructs_size, random_kspace, random_problem
from phantoms import overfit, undersampled_cine, zero_filled_psnr


def test_cg_dc_matches_dense_solve():
    b, c, t, h, w = 2, 3, 2, 4, 3
    x, maps, mask = random_problem(b=b, c=c, t=t, h=h, w=w, seed=3, dtype=torch.complex128)
    op = SenseOp(maps, mask.double())
    g = torch.Generator().manual_seed(4)
    k0 = torch.randn(b, c, t, h, w, dtype=torch.complex128, generator=g) * mask
    n = t * h * w
    dc = CGDataConsistency(mu=0.7, iters=3 * n).double()
    got = dc(x, k0, op)
    for i in range(b):
        opi = SenseOp(maps[i:i + 1], mask[i:i + 1].double())
        eye = torch.eye(n, dtype=torch.complex128).reshape(n, t, h, w)
        gram = np.stack([opi.gram(e[None])[0].reshape(-1).numpy() for e in eye], axis=1)
        rhs = opi.adjoint(k0[i:i + 1])[0].reshape(-1).numpy() + 0.7 * x[i].reshape(-1).numpy()
        ref = np.linalg.solve(gram + 0.7 * np.eye(n), rhs)
        np.testing.assert_allclose(got[i].detach().reshape(-1).numpy(), ref, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("axis", ["row", "column"])
def test_plane_networks_act_within_their_planes(axis):
    torch.manual_seed(0)
    net = XFDenoiser(chans=4, depth=1)
    with torch.no_grad():  # keep only one plane network in the fusion
        keep = slice(0, 2) if axis == "row" else slice(2, 4)
        w = torch.zeros_like(net.fuse.weight)
        w[:, keep] = net.fuse.weight[:, keep]
        net.fuse.weight.copy_(w)
    _assert_acts_only_along(net, axis)


@pytest.mark.parametrize("b,t,h,w", [(2, 3, 8, 12), (1, 2, 13, 11)])
def test_shape_and_odd_sizes(b, t, h, w):
    assert_reconstructs_size("cinenet", b, t, h, w, chans=4, cascades=2)


def test_batch_consistency():
    torch.manual_seed(0)
    model = build_model("cinenet", chans=4, cascades=2).eval()
    assert_batch_consistent(model, *random_kspace(b=2, c=3, t=3, h=8, w=7, seed=1))


def test_overfits_one_sample_beyond_zero_filling():
    torch.manual_seed(0)
    sample = undersampled_cine()
    zf = zero_filled_psnr(sample)
    model = build_model("cinenet", chans=8, cascades=2, cg_iters=3)
    before, after = overfit(model, sample, steps=40, lr=3e-3)
    assert after > zf + 6.0 and after > before + 3.0, (zf, before, after)


# ----------------------------------------------------------------------------- complex-valued convolutions


@pytest.mark.parametrize("transpose", [False, True])
def test_complex_conv_matches_real_arithmetic(transpose):
    """(A + iB) * (x + iy) = (A*x - B*y) + i(A*y + B*x), with the complex bias added."""
    torch.manual_seed(0)
    layer = ComplexConv2d(3, 4, 2 if transpose else 3, stride=2 if transpose else 1,
                          padding=0 if transpose else 1, transpose=transpose).double()
    z = torch.randn(2, 3, 5, 6, dtype=torch.complex128)
    conv = torch.nn.functional.conv_transpose2d if transpose else torch.nn.functional.conv2d
    kw = dict(stride=2) if transpose else dict(padding=1)
    a, b = layer.weight_re, layer.weight_im
    re = conv(z.real, a, **kw) - conv(z.imag, b, **kw) + layer.bias_re.view(1, -1, 1, 1)
    im = conv(z.imag, a, **kw) + conv(z.real, b, **kw) + layer.bias_im.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(z), torch.complex(re, im))
    real_twin = (torch.nn.ConvTranspose2d if transpose else torch.nn.Conv2d)(3, 4, 2 if transpose else 3)
    assert sum(p.numel() for p in layer.parameters()) == 2 * sum(p.numel() for p in real_twin.parameters())


def test_complex_activations():
    z = torch.tensor([1 + 1j, -2 + 0.5j, -1 - 3j, 0.5 - 0.25j], dtype=torch.complex128)
    crelu = complex_activation(z, "crelu")
    lrelu = torch.nn.functional.leaky_relu
    torch.testing.assert_close(crelu, torch.complex(lrelu(z.real, 0.2), lrelu(z.imag, 0.2)))
    card = complex_activation(z, "cardioid")
    nz = card.abs() > 0
    torch.testing.assert_close(card.angle()[nz], z.angle()[nz])  # phase kept
    torch.testing.assert_close(card.abs(), 0.5 * (1 + torch.cos(z.angle())) * z.abs())
    with pytest.raises(ConfigError, match="activation"):
        build_model("cinenet", complex_conv=True, activation="relu")


@pytest.mark.parametrize("activation", ["crelu", "cardioid"])
@pytest.mark.parametrize("b,t,h,w", [(2, 3, 8, 12), (1, 2, 13, 11)])
def test_complex_shape_and_odd_sizes(b, t, h, w, activation):
    assert_reconstructs_size("cinenet", b, t, h, w, chans=4, cascades=2, complex_conv=True, activation=activation)


def test_complex_batch_consistency_and_native_complex_features():
    torch.manual_seed(0)
    model = build_model("cinenet", chans=4, cascades=2, complex_conv=True).eval()
    assert_batch_consistent(model, *random_kspace(b=2, c=3, t=3, h=8, w=7, seed=1))
    den = model.cascades[0]
    seen = []
    hook = den.xf.down[0].conv1.register_forward_hook(lambda m, i, o: seen.append((i[0].dtype, o.dtype)))
    with torch.no_grad():
        den(torch.randn(1, 3, 8, 8, dtype=torch.complex64), None)
    hook.remove()
    assert seen == [(torch.complex64, torch.complex64)]


@pytest.mark.parametrize("axis", ["row", "column"])
def test_complex_plane_networks_act_within_their_planes(axis):
    torch.manual_seed(0)
    net = XFDenoiser(chans=4, depth=1, complex_conv=True)
    other = 1 if axis == "row" else 0  # fusion input channels: 0 = x-f network, 1 = y-f network
    with torch.no_grad():  # keep only one plane network in the fusion
        net.fuse.weight_re[:, other].zero_()
        net.fuse.weight_im[:, other].zero_()
    _assert_acts_only_along(net, axis)


def test_complex_overfits_one_sample_beyond_zero_filling():
    torch.manual_seed(0)
    sample = undersampled_cine()
    zf = zero_filled_psnr(sample)
    model = build_model("cinenet", chans=4, cascades=1, cg_iters=3, complex_conv=True)  # one cascade: fast
    before, after = overfit(model, sample, steps=40, lr=3e-3)
    assert after > zf + 6.0 and after > before + 3.0, (zf, before, after)


def _assert_acts_only_along(net, axis: str) -> None:
    """Changing one row (or column) of the input changes the output in that row (column) only."""
    x = torch.randn(1, 3, 6, 8, dtype=torch.complex64)
    x2 = x.clone()
    if axis == "row":
        x2[:, :, 2] += 1.0
    else:
        x2[:, :, :, 5] += 1.0
    with torch.no_grad():
        d = (net(x2, None)[0] - net(x, None)[0]).abs().amax(dim=1)[0]  # (H, W)
    changed = d > 1e-6
    if axis == "row":
        assert changed[2].any() and not changed[[0, 1, 3, 4, 5]].any()
    else:
        assert changed[:, 5].any() and not changed[:, [0, 1, 2, 3, 4, 6, 7]].any()
