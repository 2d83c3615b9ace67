"""CRNN-MRI (Qin et al. 2019): golden file, recurrence reference, shapes, batch consistency, learning."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from cinerecon.errors import DataError
from cinerecon.models import build_model
from cinerecon.models.compat import (authors_layout, crnn_authors_config, load_authors_checkpoint,
                                     load_authors_state_dict, to_authors_state_dict)
from cinerecon.models.crnn import PRESETS, BCRNNLayer, CRNNState
from conftest import SHARED, assert_batch_consistent, assert_reconstructs_size, random_kspace, random_problem
from phantoms import overfit, undersampled_cine, zero_filled_psnr

GOLDEN = SHARED / "reference" / "crnn_golden.pt"


@pytest.fixture(scope="module")
def crnn_golden():
    """The original CRNN-MRI code run with the published weights (single coil, per-frame masks)."""
    if not GOLDEN.exists():
        pytest.skip(f"golden file {GOLDEN} not present")
    return torch.load(GOLDEN, weights_only=False)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _run_golden(model, g):
    maps = torch.ones(1, 1, 1, *g["image"].shape[-2:], dtype=torch.complex64)  # one coil
    with torch.no_grad():
        return model.eval()(g["kspace"][None], g["mask"], maps)[0]  # kspace (1, C=1, T, H, W), mask (T, H, W)


def test_golden_original_preset_matches_published_weights(crnn_golden, tmp_path):
    g = crnn_golden
    model = load_authors_state_dict(build_model("crnn", preset="original"), g["state_dict"])
    assert _rel(_run_golden(model, g), g["expected"]) < 1e-4
    # the published file is a plain state dict; loading it by path infers the configuration
    path = tmp_path / "crnn_mri_d5_c5.pth"
    torch.save(g["state_dict"], path)
    assert authors_layout(g["state_dict"]) == "crnn"
    assert crnn_authors_config(g["state_dict"]) == dict(preset="original", nf=64, layers=5, cascades=5)
    loaded = load_authors_checkpoint(path)
    assert loaded.config == model.config
    assert torch.equal(_run_golden(loaded, g), _run_golden(model, g))


@pytest.mark.parametrize("change", [dict(preset="normalised"), dict(preset="original", zero_state_bias=False),
                                    dict(preset="original", normalise=True)])
def test_golden_needs_both_original_choices(crnn_golden, change):
    """Per-cascade normalisation or skipping the zero states' biases each changes the function."""
    model = load_authors_state_dict(build_model("crnn", **change), crnn_golden["state_dict"])
    assert _rel(_run_golden(model, crnn_golden), crnn_golden["expected"]) > 1e-2


def test_parameter_counts_shared_and_paper_table():
    # published checkpoint: 5 iterations sharing one copy; the seed paper's 1.49 M: 5 unshared copies
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    with torch.device("meta"):
        assert count(build_model("crnn", preset="original")) == 297_794
        assert count(build_model("crnn")) == 297_794
        assert count(build_model("crnn", preset="original", share_weights=False)) == 5 * 297_794 == 1_488_970


def test_presets_and_config_roundtrip():
    assert build_model("crnn", nf=4).config == replace(PRESETS["normalised"], nf=4)  # the default preset
    model = build_model("crnn", preset="original", nf=4, cascades=2)
    assert not model.normalise and model.config.zero_state_bias
    assert build_model("crnn", **model.config_dict()).config == model.config


def test_own_and_authors_layouts_roundtrip():
    torch.manual_seed(3)
    model = build_model("crnn", preset="original", nf=4, layers=4, cascades=3)
    authors = to_authors_state_dict(model)
    assert sorted(authors) == sorted(
        [f"bcrnn.CRNN_model.{c}.{p}" for c in ("i2h", "h2h", "ih2ih") for p in ("weight", "bias")]
        + [f"conv{l}_{s}.{p}" for l in (1, 2) for s in "xh" for p in ("weight", "bias")]
        + ["conv3_x.weight", "conv3_x.bias"])
    for sd in (authors, {"module." + k: v for k, v in authors.items()}, model.state_dict()):
        other = load_authors_state_dict(build_model("crnn", preset="original", nf=4, layers=4, cascades=3), sd)
        for (k, v), v2 in zip(model.state_dict().items(), other.state_dict().values()):
            assert torch.equal(v, v2), k
    # one published copy fills five unshared cascades
    unshared = load_authors_state_dict(build_model("crnn", preset="original", nf=4, layers=4, share_weights=False),
                                       authors)
    assert torch.equal(unshared.cascades[4].out.weight, model.cascades[0].out.weight)


def test_wrong_width_refused_in_one_line(crnn_golden, tmp_path):
    path = tmp_path / "crnn_mri_d5_c5.pth"
    torch.save(crnn_golden["state_dict"], path)
    with pytest.raises(DataError) as e:
        load_authors_state_dict(build_model("crnn", preset="original", nf=32), torch.load(path), source=str(path))
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "'bcrnn.CRNN_model.i2h.weight'" in msg
    assert "(64, 2, 3, 3)" in msg and "(32, 2, 3, 3)" in msg


@pytest.mark.parametrize("zero_state_bias", [False, True])
def test_bcrnn_matches_naive_recurrence(zero_state_bias):
    torch.manual_seed(0)
    layer = BCRNNLayer(2, 5, zero_state_bias)
    b, t, h, w = 2, 4, 6, 5
    x = torch.randn(b, t, 2, h, w)
    hi = torch.randn(b, t, 5, h, w)
    out = layer(x, hi)

    def step(k, prev):
        pre = F.conv2d(x[:, k], layer.w_x.weight, layer.w_x.bias, padding=1)
        pre = pre + F.conv2d(hi[:, k], layer.w_i.weight, layer.w_i.bias, padding=1)
        if prev is None and zero_state_bias:  # the original: the zero state goes through h2h
            prev = torch.zeros(b, 5, h, w)
        if prev is not None:
            pre = pre + F.conv2d(prev, layer.w_h.weight, layer.w_h.bias, padding=1)
        return torch.relu(pre)

    fwd, bwd = [None] * t, [None] * t
    prev = None
    for k in range(t):
        prev = fwd[k] = step(k, prev)
    prev = None
    for k in reversed(range(t)):
        prev = bwd[k] = step(k, prev)
    ref = torch.stack([f + g for f, g in zip(fwd, bwd)], dim=1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_bcrnn_is_bidirectional():
    torch.manual_seed(0)
    layer = BCRNNLayer(2, 4)
    x = torch.randn(1, 5, 2, 6, 6)
    y0 = layer(x, None)
    x2 = x.clone()
    x2[:, -1] += 1.0
    y1 = layer(x2, None)
    assert (y1[:, 0] - y0[:, 0]).abs().max() > 0  # last frame reaches the first via the backward pass


@pytest.mark.parametrize("b,t,h,w", [(2, 3, 8, 10), (1, 2, 13, 11)])
def test_shape_and_odd_sizes(b, t, h, w):
    assert_reconstructs_size("crnn", b, t, h, w, nf=6, cascades=2)


def test_state_is_passed_between_cascades():
    model = build_model("crnn", nf=4, cascades=3, share_weights=False)
    seen = []
    for casc in model.cascades:
        casc.register_forward_hook(lambda mod, args, out: seen.append((args[1], out[1])))
    _, maps, mask = random_problem(b=1, c=2, t=3, h=6, w=6)
    model(torch.randn(1, 2, 3, 6, 6, dtype=torch.complex64) * mask, mask, maps)
    assert seen[0][0] is None
    for (_, out_prev), (inp, _) in zip(seen[:-1], seen[1:]):
        assert isinstance(inp, CRNNState) and inp is out_prev
        assert inp.bcrnn.shape == (1, 3, 4, 6, 6) and len(inp.crnn_i) == 3


def test_shared_weights_count_once():
    shared = build_model("crnn", nf=4, cascades=4)
    single = build_model("crnn", nf=4, cascades=1)
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(shared) == count(single)
    assert count(build_model("crnn", nf=4, cascades=4, share_weights=False)) == 4 * count(single)


def test_batch_consistency():
    torch.manual_seed(0)
    model = build_model("crnn", nf=6, cascades=2, dc_lambda=0.5).eval()
    assert_batch_consistent(model, *random_kspace(b=2, c=3, t=3, h=8, w=7, seed=1))


def test_overfits_one_sample_beyond_zero_filling():
    torch.manual_seed(0)
    sample = undersampled_cine()
    zf = zero_filled_psnr(sample)
    model = build_model("crnn", nf=16, cascades=3)
    before, after = overfit(model, sample, steps=40, lr=3e-3)
    assert after > zf + 6.0 and after > before + 5.0, (zf, before, after)
