"""The moving average of the weights (optim.ema_decay): its recursion, what a run saves, exact resumption."""


import pytest
import torch
import torch.nn as nn

from cinerecon.errors import ConfigError
from cinerecon.train.checkpoints import load_model, read_checkpoint
from cinerecon.train.ema import WeightEMA
from cinerecon.train.loop import fit
from test_train_loop import MemoryCine, _metrics, crash_and_resume, tiny_cfg


def test_update_follows_the_warmed_up_recursion():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = WeightEMA(net, decay=0.9)
    expect = {k: v.clone().double() for k, v in net.state_dict().items()}
    for n in range(30):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net(torch.randn(5, 3))  # moves the running statistics and the batch counter
        d = min(0.9, (1 + n) / (10 + n))
        for k, v in net.state_dict().items():
            expect[k] = d * expect[k] + (1 - d) * v.double() if v.is_floating_point() else v.clone().double()
        ema.update(net)
    assert ema.updates == 30
    got = ema.model.state_dict()
    for k, v in expect.items():
        torch.testing.assert_close(got[k].double(), v, rtol=1e-5, atol=1e-6, msg=k)
    assert got["1.num_batches_tracked"] == net.state_dict()["1.num_batches_tracked"] == 30
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training


def test_average_differs_from_the_trained_weights_and_is_what_the_run_saves(tmp_path):
    over = {"optim.ema_decay": 0.95, "epochs": 3, "optim.schedule_per": "step"}
    run = fit(tiny_cfg(tmp_path / "run", **over), MemoryCine(n=4, noise=0.05), MemoryCine(n=1, seed=9))
    last = read_checkpoint(run / "last.pt")
    assert last.ema_updates == last.step == 6 and last.trained_state_dict is not None
    assert last.version == 2 and read_checkpoint(run / "best.pt").version == 1  # older readers refuse last.pt
    diff = max(float((last.state_dict[k] - last.trained_state_dict[k]).abs().max()) for k in last.state_dict)
    assert diff > 1e-4  # lr 3e-3 for 6 steps: the average lags the trained weights
    m = _metrics(run)
    assert all(r["val_psnr_trained"] is not None for r in m)
    assert any(r["val_psnr"] != r["val_psnr_trained"] for r in m)
    # best.pt / last.pt load the average for inference
    model, _ = load_model(run / "last.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, last.state_dict[k]), k
    best = read_checkpoint(run / "best.pt")
    assert best.trained_state_dict is None and best.optimizer is None


def test_resume_with_the_average_reproduces_the_uninterrupted_run(tmp_path, monkeypatch):
    over = {"optim.ema_decay": 0.9, "optim.schedule_per": "step", "epochs": 3}
    # crash at epoch 2's first batch: probe step, 2 batches, 2 validations (average, trained) come first
    run_a, run_b = crash_and_resume(tmp_path, monkeypatch, over, crash_at=6)
    a, b = read_checkpoint(run_a / "last.pt"), read_checkpoint(run_b / "last.pt")
    assert a.ema_updates == b.ema_updates == 6
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k]), k
        assert torch.equal(a.trained_state_dict[k], b.trained_state_dict[k]), k
    assert _metrics(run_a) == _metrics(run_b)[-3:]


def test_trained_weights_are_extracted_as_their_own_checkpoint(tmp_path):
    from cinerecon.train.ema import main

    run = fit(tiny_cfg(tmp_path / "run", **{"optim.ema_decay": 0.95, "epochs": 2}), MemoryCine(n=2))
    last = read_checkpoint(run / "last.pt")
    assert main([str(run / "last.pt"), str(tmp_path / "trained.pt")]) == 0
    model, _ = load_model(tmp_path / "trained.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, last.trained_state_dict[k]), k
    assert main([str(run / "last.pt"), str(tmp_path / "trained.pt")]) == 1  # no overwrite without asking
    assert main([str(run / "best.pt"), str(tmp_path / "t2.pt")]) == 1  # best.pt holds the average only
    assert not (tmp_path / "t2.pt").exists()


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1", ".nan"])
def test_bad_decay_is_refused(value, tmp_path):
    with pytest.raises(ConfigError, match="optim.ema_decay"):
        tiny_cfg(tmp_path / "run", **{"optim.ema_decay": value})


def test_a_weight_shared_between_layers_is_averaged_once():
    """A state dict lists a shared tensor under every name; the average must move it once per update."""
    lin = nn.Linear(3, 3)
    model = nn.Sequential(lin, nn.ReLU(), lin, nn.ReLU(), lin)  # one weight under three names
    ema = WeightEMA(model, decay=0.5)
    ema.updates = 10**6  # past the warm-up: d = 0.5
    before = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight.add_(1.0)
    ema.update(model)
    moved = ema.model[0].weight - before
    torch.testing.assert_close(moved, torch.full_like(moved, 0.5))  # 1 - d, not 1 - d**3
    assert ema.model[0].weight is ema.model[2].weight  # the copy keeps the sharing
