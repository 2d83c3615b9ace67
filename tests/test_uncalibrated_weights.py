"""A second set of cascade weights for items whose mask has no calibration block.

``build_model("crunet", uncalibrated_weights=True)`` reconstructs each item of a batch with
the weights of its kind of mask; :func:`merge_uncalibrated` builds such a checkpoint from two
trained ones.
"""

import pytest
import torch

from cinerecon.errors import ConfigError, DataError, OutputExistsError
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.models import build_model
from cinerecon.train.checkpoints import load_model, save_checkpoint
from cinerecon.train.uncalibrated_merge import merge_uncalibrated

KW = {"chans": 4, "cascades": 2, "initial_image": "lplus_s_kt"}


def _batch():
    g = torch.Generator().manual_seed(0)
    t, w = 4, 16
    k = torch.randn(2, 3, t, 16, w, dtype=torch.complex64, generator=g)
    maps = torch.randn(2, 3, 1, 16, w, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().square().sum(1, keepdim=True).sqrt()
    acs = make_mask(MaskSpec("equispaced_acs", 4, 6), t, w).expand(1, t, 1, w)
    tv = make_mask(MaskSpec("time_varying", 4, 0), t, w)
    return k, torch.stack([acs, tv]), maps


def _pair(seed_main: int, seed_kt: int):
    torch.manual_seed(seed_main)
    main = build_model("crunet", **KW).eval()
    torch.manual_seed(seed_kt)
    kt = build_model("crunet", **KW).eval()
    both = build_model("crunet", uncalibrated_weights=True, **KW).eval()
    state = dict(main.state_dict())
    state.update({"uncalibrated_" + k: v for k, v in kt.state_dict().items() if k.startswith("cascades.")})
    both.load_state_dict(state)
    return main, kt, both


def test_each_item_gets_the_weights_of_its_kind_of_mask():
    main, kt, both = _pair(0, 1)
    k, mask, maps = _batch()
    with torch.no_grad():
        out = both(k, mask, maps)
        ref_acs = main(k[:1], mask[:1], maps[:1])
        ref_tv = kt(k[1:], mask[1:], maps[1:])
        wrong_tv = main(k[1:], mask[1:], maps[1:])
    torch.testing.assert_close(out[:1], ref_acs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[1:], ref_tv, rtol=1e-5, atol=1e-6)
    assert (out[1:] - wrong_tv).abs().max() > 1e-3 * wrong_tv.abs().max()  # the two sets differ
    # a batch of one kind only, and a mask shared by the whole batch
    with torch.no_grad():
        shared = both(k, mask[1], maps)
    torch.testing.assert_close(shared[1:], ref_tv, rtol=1e-5, atol=1e-6)


def test_training_step_reaches_only_the_weights_used():
    _, _, both = _pair(0, 1)
    both.train()
    k, mask, maps = _batch()
    both(k[1:], mask[1:], maps[1:]).abs().square().sum().backward()  # a k-t item only
    main_grads = [p.grad for n, p in both.named_parameters() if n.startswith("cascades.")]
    kt_grads = [p.grad for n, p in both.named_parameters() if n.startswith("uncalibrated_cascades.")]
    assert all(g is None for g in main_grads)
    assert any(g is not None and g.abs().max() > 0 for g in kt_grads)


def _save(path, model, kwargs):
    cfg = {"model": {"name": "crunet", "kwargs": kwargs}}
    save_checkpoint(path, model, None, None, 1, cfg, rng=False)


def test_merge_writes_a_checkpoint_that_loads_and_routes(tmp_path):
    main, kt, _ = _pair(0, 1)
    _save(tmp_path / "main.pt", main, {**KW, "initial_image": "lplus_s"})
    _save(tmp_path / "kt.pt", kt, KW)
    out = merge_uncalibrated(tmp_path / "main.pt", tmp_path / "kt.pt", tmp_path / "both.pt")
    model, _ = load_model(out)
    assert model.config.uncalibrated_weights and model.config.initial_image == "lplus_s_kt"
    k, mask, maps = _batch()
    with torch.no_grad():
        out_b = model(k, mask, maps)
        main_alone = main(k[:1], mask[:1], maps[:1])  # built with "lplus_s_kt": same start on ACS items
        kt_alone = kt(k[1:], mask[1:], maps[1:])
    torch.testing.assert_close(out_b[:1], main_alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_b[1:], kt_alone, rtol=1e-5, atol=1e-6)
    with pytest.raises(OutputExistsError):
        merge_uncalibrated(tmp_path / "main.pt", tmp_path / "kt.pt", out)
    # `cinerecon train --init` rebuilds the model from the stored training config
    from cinerecon.train.checkpoints import read_checkpoint
    assert read_checkpoint(out).config["model"]["kwargs"] == read_checkpoint(out).model_kwargs


def test_merge_of_two_runs_with_the_default_initial_image(tmp_path):
    """Runs that never set initial_image (the builder's default) used to merge into kwargs initial_image=None."""
    torch.manual_seed(0)
    plain = {"chans": 4, "cascades": 2}
    _save(tmp_path / "a.pt", build_model("crunet", **plain), plain)
    _save(tmp_path / "b.pt", build_model("crunet", **plain), plain)
    model, _ = load_model(merge_uncalibrated(tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "ab.pt"))
    assert model.config.uncalibrated_weights and model.config.initial_image == "zero_filled"
    _save(tmp_path / "c.pt", build_model("crunet", **plain), {**plain, "initial_image": "zero_filled"})
    merge_uncalibrated(tmp_path / "a.pt", tmp_path / "c.pt", tmp_path / "ac.pt")  # unset == the default: pairs


def test_two_set_model_has_no_authors_layout():
    from cinerecon.models.compat import to_authors_state_dict

    _, _, both = _pair(0, 1)
    with pytest.raises(ConfigError, match="second weight set"):
        to_authors_state_dict(both)


def test_route_keeps_item_order_whichever_kind_comes_first():
    main, kt, both = _pair(0, 1)
    k, mask, maps = _batch()
    k, mask, maps = k.flip(0), mask.flip(0), maps.flip(0)  # the k-t item first
    with torch.no_grad():
        out = both(k, mask, maps)
        torch.testing.assert_close(out[:1], kt(k[:1], mask[:1], maps[:1]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[1:], main(k[1:], mask[1:], maps[1:]), rtol=1e-5, atol=1e-6)


def test_two_sets_with_activation_checkpointing_give_the_same_gradients():
    _, _, both = _pair(0, 1)
    k, mask, maps = _batch()
    grads = []
    for ckpt in (False, True):
        both.zero_grad()
        both.checkpoint_cascades = ckpt
        both.train()
        both(k, mask, maps).abs().square().sum().backward()
        grads.append([p.grad.clone() for p in both.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) == len(list(both.parameters()))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_merge_refuses_models_that_do_not_pair(tmp_path):
    main, kt, _ = _pair(0, 1)
    _save(tmp_path / "main.pt", main, KW)
    wider = build_model("crunet", **{**KW, "chans": 6})
    _save(tmp_path / "wide.pt", wider, {**KW, "chans": 6})
    with pytest.raises(DataError, match="different models"):
        merge_uncalibrated(tmp_path / "main.pt", tmp_path / "wide.pt", tmp_path / "x.pt")
    _save(tmp_path / "cg.pt", kt, {**KW, "initial_image": "cg_sense"})
    with pytest.raises(DataError, match="calibrated items would not start"):
        merge_uncalibrated(tmp_path / "cg.pt", tmp_path / "main.pt", tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_single_frame_items_use_the_main_weights():
    """One frame has no L+S start (the k-t weights' start): such items stay with the main weights."""
    main, _, both = _pair(0, 1)
    k, mask, maps = _batch()
    k1, m1 = k[1:, :, :1], mask[1:, :, :1]
    with torch.no_grad():
        torch.testing.assert_close(both(k1, m1, maps[1:]), main(k1, m1, maps[1:]), rtol=1e-5, atol=1e-6)
