"""CRUNet-MR: golden file, literal reference, shapes, batch consistency, ablations, learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cinerecon.errors import ConfigError, DataError, WeightsNotFoundError
from cinerecon.models import build_model
from cinerecon.models.blocks import Conv2p1d, CRNNUnit, temporal_conv
from cinerecon.models.compat import (authors_config, is_authors_state_dict, load_authors_checkpoint,
                                     load_authors_state_dict, to_authors_state_dict)
from cinerecon.models.crunet import CRUNetState
from cinerecon.operators import SenseOp
from conftest import assert_batch_consistent, assert_image_output, load_benchmark, measured_problem, seeded_model
from crunet_naive import naive_crunet
from phantoms import overfit, undersampled_cine, zero_filled_psnr

SMALL = dict(chans=6, cascades=2)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _model(seed=0, **kw):
    return seeded_model("crunet", seed, **{**SMALL, **kw})


# ---------------------------------------------------------------- golden file (authors' output)

def _golden_inputs(golden):
    maps = golden["sens_maps"][None, :, None]  # (1, C, 1, H, W)
    mask = golden["mask"]  # (H, W) broadcasts against (B, C, T, H, W)
    k0 = SenseOp(maps, mask).forward(golden["image"][None])
    return k0, mask, maps


def test_golden_zero_filled_matches(golden):
    k0, mask, maps = _golden_inputs(golden)
    zf = SenseOp(maps, mask).adjoint(k0)[0]
    assert _rel(zf, golden["zero_filled"]) < 1e-5


def test_golden_output_matches_authors(golden):
    k0, mask, maps = _golden_inputs(golden)
    sd = golden["state_dict"]
    assert is_authors_state_dict(sd)
    cfg = authors_config(sd)
    assert (cfg["chans"], cfg["cascades"]) == (golden["config"]["chans"], golden["config"]["cascades"])
    assert cfg["side_branches"] and cfg["iteration_recurrence"]
    model = load_authors_checkpoint(sd)
    with torch.no_grad():
        out = model(k0, mask, maps)[0]
    assert out.shape == golden["expected"].shape
    assert _rel(out, golden["expected"]) < 1e-4


@pytest.mark.slow
def test_golden_naive_reference_matches_authors(golden):
    """The literal re-implementation used as reference below also reproduces the authors."""
    k0, mask, maps = _golden_inputs(golden)
    with torch.no_grad():
        out = naive_crunet(golden["state_dict"], k0, mask, maps)[0]
    assert _rel(out, golden["expected"]) < 1e-4


def test_parameter_count_matches_paper_model():
    model = build_model("crunet", chans=64, cascades=5)
    # every parameter acts: the first cascade's five ih2ih convolutions see a zero state, so
    # only their biases are parameters (5 x 64 x 64 x 3 x 3 = 184,320 idle weights left out)
    assert sum(p.numel() for p in model.parameters()) == 4_537_930 - 184_320
    # the authors' layout holds those idle weights too: 4,537,930 without the unused pp tensors
    assert sum(v.numel() for v in to_authors_state_dict(model).values()) == 4_537_930


def test_every_parameter_acts_and_old_checkpoints_load():
    """DDP needs a gradient for every parameter; checkpoints with the idle weights still load."""
    model = _model(seed=13)
    k0, mask, maps = measured_problem(b=1, t=3, h=8, w=8, seed=14)
    model(k0, mask, maps).abs().pow(2).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    old = dict(model.state_dict())
    idle = model.idle_weights()
    assert sorted(idle) == sorted(f"cascades.0.{u}.cell.ih2ih.weight"
                                  for u in ("d_crnn1", "d_crnn2", "bcrnn", "u_crnn1", "u_crnn2"))
    old.update({k: torch.randn(shape) for k, shape in idle.items()})  # as written before the change
    fresh = _model(seed=14)
    fresh.load_state_dict(old)  # strict
    load_authors_state_dict(_model(seed=15), old)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    with pytest.raises(ConfigError, match="iteration state"):
        model.cascades[0].d_crnn1(torch.randn(1, 2, SMALL["chans"], 4, 4), torch.randn(1, 2, SMALL["chans"], 4, 4))


# ---------------------------------------------------------------- fast blocks vs literal ops

@pytest.mark.parametrize("padding", ["circular", "zero"])
@pytest.mark.parametrize("t", [1, 2, 5])
@pytest.mark.parametrize("with_bias", [True, False])
def test_temporal_conv_matches_conv1d_per_pixel(padding, t, with_bias):
    g = torch.Generator().manual_seed(1)
    b, c, h, w = 2, 3, 4, 3
    x = torch.randn(b, t, c, h, w, generator=g)
    weight, bias = torch.randn(4, c, 3, generator=g), torch.randn(4, generator=g) if with_bias else None
    seq = x.permute(0, 3, 4, 2, 1).reshape(-1, c, t)  # (B*H*W, C, T)
    ref = F.conv1d(F.pad(seq, (1, 1), mode="circular" if padding == "circular" else "constant"), weight, bias)
    ref = ref.reshape(b, h, w, 4, t).permute(0, 4, 3, 1, 2)
    torch.testing.assert_close(temporal_conv(x, weight, bias, padding), ref, atol=1e-5, rtol=1e-5)


def test_transposed_conv2p1d_shapes():
    x = torch.randn(2, 3, 4, 5, 6)
    up = Conv2p1d(4, 7, 2, stride=2, padding=0, transpose=True)
    down = Conv2p1d(7, 4, 2, stride=2, padding=0)
    y = up(x)
    assert y.shape == (2, 3, 7, 10, 12)
    assert down(y).shape == x.shape


def test_bidirectional_unit_is_sum_of_directions():
    torch.manual_seed(0)
    x, hit = torch.randn(2, 5, 4, 6, 6), torch.randn(2, 5, 4, 6, 6)
    bi = CRNNUnit(4, 2, "bidirectional")
    fw, bw = CRNNUnit(4, 2, "forward"), CRNNUnit(4, 2, "backward")
    fw.load_state_dict(bi.state_dict())
    bw.load_state_dict(bi.state_dict())
    torch.testing.assert_close(bi(x, hit), fw(x, hit) + bw(x, hit))
    # causality: the forward unit's frame 1 ignores frames 2..; the backward unit's frame 3 ignores 0..2
    x2 = x.clone()
    x2[:, 2:] += 1.0
    assert torch.equal(fw(x, hit)[:, :2], fw(x2, hit)[:, :2])
    x3 = x.clone()
    x3[:, :3] += 1.0
    assert torch.equal(bw(x, hit)[:, 3:], bw(x3, hit)[:, 3:])


CONFIGS = [
    {},
    {"temporal_padding": "zero"},
    {"side_branches": False},
    {"iteration_recurrence": False},
    {"dilations": (1, 3, 5)},
]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_fast_model_matches_literal_reference(kw):
    model = _model(seed=3, **kw)
    k0, mask, maps = measured_problem(b=2, t=5, h=12, w=10, seed=4)
    with torch.no_grad():
        out = model(k0, mask, maps)
        ref = naive_crunet(to_authors_state_dict(model), k0, mask, maps,
                           dilations=kw.get("dilations", (1, 2, 4)),
                           circular=kw.get("temporal_padding", "circular") == "circular")
        zf = SenseOp(maps, mask).adjoint(k0)
    assert _rel(out - zf, ref - zf) < 1e-4  # compare the networks' contributions, not just DC
    assert _rel(ref, zf) > 1e-3


# ---------------------------------------------------------------- properties

def test_batch_consistency():
    model = _model(seed=1)
    k0, mask, maps = measured_problem(b=2, t=4, h=12, w=10, seed=5)
    assert_batch_consistent(model, k0, mask, maps)


@pytest.mark.parametrize("t,h,w", [(2, 8, 8), (5, 16, 12), (12, 10, 9), (3, 15, 13)])
def test_shapes_and_data_consistency(t, h, w):
    model = _model(seed=2)
    # one coil with |S| = 1, so that S S^H = I and hard DC reproduces k0 exactly
    k0, mask, maps = measured_problem(b=1, c=1, t=t, h=h, w=w, seed=6)
    with torch.no_grad():
        out = model(k0, mask, maps)
    assert_image_output(out, (1, t, h, w))
    # hard DC: the sampled k-space of the output is the measured k-space
    assert _rel(SenseOp(maps, mask).forward(out), k0) < 1e-5


def test_state_is_typed_with_level_shapes():
    model = _model(seed=2)
    x = torch.randn(2, 3, 16, 8, dtype=torch.complex64)
    y, state = model.cascades[0](x, None)
    assert isinstance(state, CRUNetState) and y.shape == x.shape
    c = SMALL["chans"]
    assert state.h0.shape == state.h4.shape == (2, 3, c, 16, 8)
    assert state.h1.shape == state.h2.shape == state.h3.shape == (2, 3, c, 8, 4)
    y2, _ = model.cascades[1](x, state)
    y3, _ = model.cascades[1](x, None)
    assert not torch.allclose(y2, y3)  # the iteration state matters


@pytest.mark.parametrize("kw", CONFIGS[1:] + [{"dilations": (1, 1, 1)}],
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_each_switch_changes_the_output(kw):
    base = _model(seed=7)
    other = _model(seed=8, **kw)
    # share every weight the two models have in common
    missing, _ = other.load_state_dict(base.state_dict(), strict=False)
    assert not missing
    k0, mask, maps = measured_problem(b=1, t=4, h=12, w=10, seed=9)
    with torch.no_grad():
        a, b = base(k0, mask, maps), other(k0, mask, maps)
        zf = SenseOp(maps, mask).adjoint(k0)
    assert _rel(b - zf, a - zf) > 1e-5  # identical computations agree to ~1e-7


def test_switches_remove_parameters():
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    full = build_model("crunet", chans=4, cascades=1)
    assert n(build_model("crunet", chans=4, cascades=1, side_branches=False)) == n(full) - 5 * (16 + 4)
    # one cascade: the first cascade's ih2ih is its bias alone (a zero iteration state)
    assert n(build_model("crunet", chans=4, cascades=1, iteration_recurrence=False)) == n(full) - 5 * 4
    two = build_model("crunet", chans=4, cascades=2)
    assert n(build_model("crunet", chans=4, cascades=2, iteration_recurrence=False)) == n(two) - 5 * (144 + 4 + 4)


def test_checkpointing_gives_same_output_and_gradients():
    a = _model(seed=4)
    b = _model(seed=4, checkpoint_cascades=True)
    a.train(), b.train()
    k0, mask, maps = measured_problem(b=1, t=3, h=8, w=8, seed=10)
    outs = []
    for m in (a, b):
        out = m(k0, mask, maps)
        out.abs().pow(2).sum().backward()
        outs.append(out.detach())
    torch.testing.assert_close(outs[0], outs[1])
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)


def test_bad_config_raises():
    with pytest.raises(ConfigError):
        build_model("crunet", temporal_padding="reflect")
    with pytest.raises(ConfigError):
        build_model("crunet", dilations=(1, 2))
    with pytest.raises(ConfigError):
        build_model("crunet", chanels=8)


# ---------------------------------------------------------------- authors' checkpoints

def test_authors_roundtrip_wrapped_and_prefixed(tmp_path):
    model = _model(seed=11, side_branches=False)
    sd = {"module." + k: v for k, v in to_authors_state_dict(model).items()}
    sd["module.cascades.0.pp"] = torch.zeros(1, 2, 224, 112)
    assert is_authors_state_dict({"epoch": 3, "state_dict": sd})
    assert not is_authors_state_dict(model.state_dict())
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model": sd}, path)
    loaded = load_authors_checkpoint(path)
    assert loaded.config.side_branches is False and loaded.config.chans == SMALL["chans"]
    for (k, v), v2 in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v, v2), k


def test_authors_mismatch_errors(tmp_path):
    model = _model(seed=12)
    sd = to_authors_state_dict(model)
    wrong = build_model("crunet", chans=4, cascades=2)
    with pytest.raises(DataError, match="shape"):
        load_authors_state_dict(wrong, sd)
    fewer = {k: v for k, v in sd.items() if not k.startswith("cascades.1.conv0")}
    with pytest.raises(DataError, match="missing"):
        load_authors_state_dict(build_model("crunet", **SMALL), fewer)
    with pytest.raises(WeightsNotFoundError):
        load_authors_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(DataError):
        load_authors_checkpoint({"epoch": 1})
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="garbage.pt"):
        load_authors_checkpoint(garbage)


# ---------------------------------------------------------------- it learns

def test_tiny_crunet_overfits_and_beats_zero_filling():
    torch.manual_seed(0)
    sample = undersampled_cine(frames=6, size=(24, 24), coils=4, kind="equispaced_acs")
    zf_psnr = zero_filled_psnr(sample)
    model = build_model("crunet", chans=8, cascades=2)
    scale = sample[-1].abs().max()
    _, psnr = overfit(model, sample, steps=40, lr=2e-3,
                      loss=lambda out, ref: (out - ref).abs().pow(2).mean() / scale**2)
    print(f"PSNR {psnr:.2f} dB vs zero-filled {zf_psnr:.2f} dB")
    assert psnr > zf_psnr + 5.0, (psnr, zf_psnr)


def test_speed_benchmark_runs_and_agrees(capsys):
    bench = load_benchmark("crunet_speed")
    assert bench.main(["--size", "12", "10", "--frames", "3", "--coils", "2", "--chans", "4",
                       "--cascades", "2", "--skip-memory", "--throughput-batch", "2", "--skip-allocator"]) == 0
    out = capsys.readouterr().out
    err = float(out.split("max |ours - naive| / max |naive| = ")[1].split()[0])
    assert err < 1e-5
    assert "throughput ratio ours/naive fp32: " in out  # 2 slices in one call vs 2 naive calls
    err = float(out.split("throughput ratio ours/naive fp32: ")[1].split("max |ours - naive| / max |naive| = ")[1]
                .split()[0])
    assert err < 1e-5
