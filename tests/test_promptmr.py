"""PromptMR (Xin et al. 2023): the authors' function (golden file, weights, size) and our cine variant."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from cinerecon.errors import ConfigError, DataError
from cinerecon.fft import fft2c, ifft2c
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.models import build_model
from cinerecon.models.compat import (authors_layout, load_authors_checkpoint, load_authors_state_dict,
                                     promptmr_authors_config, to_authors_state_dict)
from cinerecon.models.promptmr import PRESETS, PromptMROriginal, SensitivityNet, acs_window, adjacent_frames
from cinerecon.models.unrolled import KSpaceSoftDC, Unrolled
from cinerecon.operators import SenseOp
from conftest import SHARED, assert_batch_consistent, assert_reconstructs_size, random_kspace
from phantoms import overfit, undersampled_cine, zero_filled_psnr

GOLDEN = SHARED / "reference" / "promptmr_golden.pt"
# the golden file's widths, in the authors' keyword names
SMALL = dict(num_cascades=2, num_adj_slices=5, n_feat0=8, feature_dim=(12, 16, 20), prompt_dim=(4, 8, 8),
             sens_n_feat0=4, sens_feature_dim=(6, 8, 10), sens_prompt_dim=(2, 4, 4), len_prompt=(3, 3, 3),
             prompt_size=(8, 4, 2), n_enc_cab=(2, 3, 3), n_dec_cab=(2, 2, 3), n_skip_cab=(1, 1, 1),
             n_bottleneck_cab=3)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def pmr_golden():
    """The original PromptMR at small widths with random weights; every frame's window output."""
    if not GOLDEN.exists():
        pytest.skip(f"golden file {GOLDEN} not present")
    return torch.load(GOLDEN, weights_only=False)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _original(seed=0, **kw):
    torch.manual_seed(seed)
    return build_model("promptmr", preset="original", **{**SMALL, **kw}).eval()


# ---------------------------------------------------------------- the authors' function

def test_golden_original_matches_authors(pmr_golden):
    g = pmr_golden
    model = build_model("promptmr", preset="original", **g["model_kwargs"]).eval()
    load_authors_state_dict(model, g["state_dict"])
    with torch.no_grad():
        out = model(g["kspace"][None], g["mask"], None)[0]  # (C, T, H, W) -> one sample
    assert out.shape == g["expected"].shape and not out.is_complex()
    assert _rel(out, g["expected"]) < 1e-4
    # the per-cascade DC weights came from the file
    file_w = torch.cat([g["state_dict"][f"cascades.{i}.dc_weight"] for i in range(3)])
    assert torch.equal(torch.cat([d.weight.detach() for d in model.dc]), file_w)


def test_golden_lightning_checkpoint_loads(pmr_golden, tmp_path):
    sd = {"promptmr." + k: v for k, v in pmr_golden["state_dict"].items()}
    sd["loss.w"] = torch.ones(1, 1, 7, 7)
    path = tmp_path / "promptmr-epoch=11.ckpt"
    torch.save({"epoch": 11, "global_step": 5, "state_dict": sd, "hyper_parameters": {"num_cascades": 3}}, path)
    assert authors_layout(torch.load(path)["state_dict"]) == "promptmr"
    cfg = promptmr_authors_config(pmr_golden["state_dict"])
    assert cfg == {"preset": "original", **pmr_golden["model_kwargs"], "no_use_ca": False}
    model = load_authors_checkpoint(path)
    assert isinstance(model, PromptMROriginal) and model.config_dict()["num_cascades"] == 3
    direct = load_authors_state_dict(build_model("promptmr", preset="original", **pmr_golden["model_kwargs"]),
                                     pmr_golden["state_dict"])
    for (k, v), v2 in zip(direct.state_dict().items(), model.state_dict().values()):
        assert torch.equal(v, v2), k


def test_original_parameter_count_matches_paper():
    # full widths, 5 cascades: the authors' model has 30,496,134 trainable parameters (the seed
    # paper's 30.50 M); their one PReLU shared by almost every block is counted once
    with torch.device("meta"):
        model = build_model("promptmr", preset="original", num_cascades=5)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 30_496_134
    prelus = {id(m) for m in model.modules() if isinstance(m, nn.PReLU)}
    assert len(prelus) == 1 + 6  # the shared one + the first block of each of the 6 PromptUNets


def test_original_keyword_names():
    model = _original(num_cascades=3, no_use_ca=True)
    assert len(model.cascades) == len(model.dc) == 3
    assert model.config.feature_dim == (12, 16, 20)
    assert build_model("promptmr", **model.config_dict()).config == model.config
    with pytest.raises(ConfigError, match="cascades"):
        build_model("promptmr", preset="original", cascades=3)  # ours, not the authors' name


def test_acs_window_counts_like_the_authors():
    line = torch.zeros(16)
    line[5:11] = 1  # W // 2 = 8: 3 sampled columns left of it (5, 6, 7), 3 from it rightwards (8, 9, 10)
    line[2] = 1
    n = 2 * 3
    lo = (16 - n + 1) // 2
    expected = torch.zeros(16)
    expected[lo:lo + n] = 1
    assert torch.equal(acs_window(line), expected)
    assert torch.equal(acs_window(torch.zeros(16)), torch.eye(16)[(16 - 1 + 1) // 2])  # n = max(0, 1)


def test_windows_are_batched_and_circular():
    """Frame t's output is the model on the window (t-2 .. t+2) mod T only: rolling the series rolls it."""
    torch.manual_seed(1)
    k, mask, _ = random_kspace(b=2, c=2, t=6, h=9, w=11)
    mask[..., 4:7] = 1  # an ACS block around W // 2
    k = torch.randn_like(k) * mask
    model = _original()
    with torch.no_grad():
        out = model(k, mask)
        rolled = model(k.roll(2, dims=2), mask)
        # frames beyond the window do not matter: changing frame 5 leaves frame 2 (window 0..4) alone
        k2 = k.clone()
        k2[:, :, 5] *= 3
        changed = model(k2, mask)
    assert out.shape == (2, 6, 9, 11) and torch.isfinite(out).all()
    torch.testing.assert_close(rolled, out.roll(2, dims=1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(changed[:, 2], out[:, 2], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(changed[:, 3], out[:, 3])
    assert_batch_consistent(model, k, mask.expand(2, -1, -1, -1, -1), torch.ones(2, 2, 1, 9, 11))


@pytest.mark.parametrize("t,h,w", [(1, 8, 8), (2, 9, 7), (3, 13, 11)])
def test_original_any_frames_odd_sizes_per_frame_masks(t, h, w):
    torch.manual_seed(0)
    mask = make_mask(MaskSpec("time_varying_acs", 2, 4), t, w, seed=1)[None]  # (1, 1, T, 1, W)
    k = torch.randn(1, 2, t, h, w, dtype=torch.complex64) * mask
    with torch.no_grad():
        out = _original(num_cascades=1)(k, mask, None)
    assert out.shape == (1, t, h, w) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_shared_prelu_must_agree_in_the_file():
    model = _original()
    sd = to_authors_state_dict(model)
    key = "cascades.1.model.unet.bottleneck.0.body.1.weight"
    sd[key] = sd[key] + 0.5
    with pytest.raises(DataError, match="one parameter"):
        load_authors_state_dict(_original(), sd)


def test_kspace_update_closed_form():
    """Unrolled(update="kspace"): k <- k - w M (k - k0) - F S R(S^H F^-1 k), per-cascade w, no normalisation."""

    class Scale(nn.Module):
        def forward(self, x, state):
            return 0.5 * x, None

    torch.manual_seed(2)
    k0, mask, maps = random_kspace(b=1, c=3, t=2, h=6, w=5)
    k0 = k0.to(torch.complex128)
    maps = maps.to(torch.complex128)
    dcs = [KSpaceSoftDC(0.3), KSpaceSoftDC(2.0)]
    model = Unrolled([Scale(), Scale()], pad_multiple=1, dc=dcs, update="kspace", normalise=False).double()
    op = SenseOp(maps, mask.double())
    k = k0
    for w in (0.3, 2.0):
        k = k - w * mask * (k - k0) - fft2c(maps * 0.5 * (maps.conj() * ifft2c(k)).sum(1, keepdim=True))
    with torch.no_grad():
        torch.testing.assert_close(model.unroll(k0, op), k)
        torch.testing.assert_close(model(k0, mask, maps), op.reduce(k))
    with pytest.raises(ConfigError):
        Unrolled([Scale()], dc=dcs, update="kspace")  # two DC modules for one cascade
    with pytest.raises(ConfigError):
        Unrolled([Scale()], update="kspace", initial="view_sharing")


# ---------------------------------------------------------------- our cine variant


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


def test_checkpointed_original_trains_like_the_plain_one():
    """Activation checkpointing recomputes the cascades, whose SENSE operators are built from
    estimated (differentiable) maps: the gradients equal those of the plain model."""
    torch.manual_seed(0)
    b, c, t, h, w = 1, 3, 5, 16, 16
    k = torch.randn(b, c, t, h, w, dtype=torch.complex64)
    mask = torch.zeros(1, 1, 1, 1, w)
    mask[..., ::2] = 1
    mask[..., 6:10] = 1
    grads = []
    for ck in (False, True):
        torch.manual_seed(1)
        model = build_model("promptmr", preset="original", use_checkpoint=ck, **SMALL).train()
        model(k * mask, mask).square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 50
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, rtol=1e-4, atol=1e-6, msg=n)
