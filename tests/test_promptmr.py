"""PromptMR (Xin et al. 2023), cine variant: size, windows, maps, shapes, learning."""

import numpy as np
import pytest
import torch

from cinerecon.masks import MaskSpec, make_mask
from cinerecon.models import build_model
from cinerecon.models.promptmr import PRESETS, SensitivityNet, adjacent_frames
from conftest import assert_batch_consistent, assert_reconstructs_size, random_kspace
from phantoms import overfit, undersampled_cine, zero_filled_psnr


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_published_preset_parameter_count():
    # The authors' README lists 82 M parameters for PromptMR-12cascades (CMRxRecon 2023).
    model = build_model("promptmr", preset="published")
    assert model.config == PRESETS["published"] and len(model.cascades) == 12
    assert abs(n_params(model) - 82e6) / 82e6 < 0.15
    # the published widths with the project's default 5 cascades: SME net + 5 PromptUNets
    five = n_params(model) - 7 * n_params(model.cascades[0])
    assert 30e6 < five < 40e6


def test_adjacent_frames_match_rolled_reference():
    x = torch.randn(2, 4, 3, 5)
    got = adjacent_frames(x, 5)
    ref = np.stack([np.roll(x.numpy(), 2 - j, axis=1) for j in range(5)], axis=2)
    np.testing.assert_array_equal(got.numpy(), ref)
    single = adjacent_frames(x[:, :1], 5)  # T = 1: the frame repeated
    assert torch.equal(single, x[:, :1, None].expand(-1, -1, 5, -1, -1))


@pytest.mark.parametrize("acs,kind", [(8, "equispaced_acs"), (6, "time_varying_acs"), (0, "uniform")])
def test_acs_filter_keeps_central_run(acs, kind):
    t, w = 3, 32
    mask = make_mask(MaskSpec(kind, 4, acs), t, w, seed=1)[None]  # (1, 1, T|1, 1, W)
    k = torch.randn(1, 2, t, 6, w, dtype=torch.complex64) * mask
    net = SensitivityNet(PRESETS["tiny"].sens_unet)
    lowpass = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(net.acs_filter(k, mask), dim=(-2, -1)),
                                                norm="ortho"), dim=(-2, -1))
    cols = lowpass.abs().sum(dim=(0, 1, 2)) > 1e-4  # FFT round-off elsewhere
    # reference: symmetric run of lines sampled in every frame around W // 2
    line = mask.reshape(-1, w).amin(dim=0).bool().tolist()
    c, left, right = w // 2, 0, 0
    while right < w - c and line[c + right]:
        right += 1
    while left < c and line[c - 1 - left]:
        left += 1
    n = 2 * min(left, right)
    if n < 2:  # no ACS: the whole time-averaged k-space
        n = w
    expected = torch.zeros(w, dtype=torch.bool)
    expected[c - n // 2:c - n // 2 + n] = True
    expected &= torch.broadcast_to(mask, k.shape).amax(dim=(0, 1, 2, 3)).bool()  # unsampled lines stay 0
    assert torch.equal(cols, expected)
    if acs:
        assert n >= acs


def test_estimated_maps_have_unit_rss_and_replace_given_maps():
    torch.manual_seed(0)
    k, mask, maps = random_kspace(b=2, c=3, t=3, h=8, w=8)
    model = build_model("promptmr").eval()
    with torch.no_grad():
        est = model.sens_net(k, mask)
        assert est.shape == maps.shape
        torch.testing.assert_close((est.abs() ** 2).sum(1), torch.ones(2, 1, 8, 8), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model(k, mask, maps), model(k, mask, maps.flip(1)))
        given = build_model("promptmr", estimate_maps=False).eval()
        assert given.sens_net is None
        assert not torch.allclose(given(k, mask, maps), given(k, mask, maps.flip(1)))


@pytest.mark.parametrize("b,t,h,w", [(2, 3, 8, 16), (1, 1, 13, 11), (1, 2, 9, 7)])
def test_shape_and_odd_sizes(b, t, h, w):
    assert_reconstructs_size("promptmr", b, t, h, w)


def test_batch_consistency():
    torch.manual_seed(0)
    model = build_model("promptmr").eval()
    assert_batch_consistent(model, *random_kspace(b=2, c=3, t=3, h=8, w=7, seed=1))


def test_overfits_one_sample_beyond_zero_filling():
    torch.manual_seed(0)
    sample = undersampled_cine()
    zf = zero_filled_psnr(sample)
    model = build_model("promptmr")
    before, after = overfit(model, sample, steps=30, lr=3e-3,
                            loss=lambda out, ref: (out.abs() - ref.abs()).abs().mean())  # map phase is free
    assert after > zf + 3.0 and after > before + 3.0, (zf, before, after)
