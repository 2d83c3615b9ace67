"""Training at scale: every parameter acts (DDP), torchrun on two gloo processes, host syncs, NaN checks."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cinerecon.errors import ConfigError, DataError
from cinerecon.models import MODELS, build_model
from cinerecon.train.checkpoints import read_checkpoint, save_checkpoint
from cinerecon.train.distributed import DistInfo
from conftest import measured_problem
from test_train_loop import MemoryCine, _metrics, tiny_cfg

ROOT = Path(__file__).resolve().parents[1]
#: Small configurations of every registered model.
SMALL = {
    "crunet": dict(chans=4, cascades=2),
    "crnn": dict(nf=4, cascades=2),
    "unet3d": dict(chans=4, cascades=2),
    "cinenet": dict(cascades=2),
    "promptmr": dict(cascades=2),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_parameter_of_every_model_gets_a_gradient(name):
    """DistributedDataParallel (without find_unused_parameters) needs a gradient for every parameter."""
    if name not in MODELS:
        pytest.skip(f"{name} not registered")
    torch.manual_seed(0)
    model = build_model(name, **SMALL[name]).train()
    k0, mask, maps = measured_problem(b=1, t=3, h=16, w=16, seed=1)
    model(k0, mask, maps).abs().pow(2).sum().backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


class _Idle(nn.Module):
    """The tiny unrolled model plus a parameter that never acts."""

    def __init__(self) -> None:
        super().__init__()
        from test_train_loop import tiny_unrolled

        self.inner = tiny_unrolled()
        self.unused = nn.Parameter(torch.zeros(3))

    def forward(self, *a):
        return self.inner(*a)


def test_multiprocess_run_refuses_a_model_with_idle_parameters(tmp_path):
    from cinerecon.train.data import train_loader
    from cinerecon.train.loop import _probe_step

    cfg = tiny_cfg(tmp_path / "run")
    loader, _ = train_loader(MemoryCine(n=2), cfg.data, 0, DistInfo())
    _probe_step(_Idle(), loader, cfg, torch.device("cpu"), DistInfo())  # one process: fine
    with pytest.raises(ConfigError, match=r"1 parameter\(s\) get no gradient, e.g. \['unused'\]"):
        _probe_step(_Idle(), loader, cfg, torch.device("cpu"), DistInfo(rank=0, world_size=2))


def test_idle_weight_set_of_a_two_set_model_is_expected_but_an_idle_member_is_not():
    """A batch with calibrated masks only leaves the whole k-t weight set without gradients (DDP
    runs with find_unused_parameters then); one idle parameter inside the used set, or the used
    set idle as a whole, is still an error."""
    from cinerecon.data.sample import CineBatch
    from cinerecon.masks import MaskSpec, make_mask
    from cinerecon.train.loop import _idle_parameters

    torch.manual_seed(0)
    model = build_model("crunet", chans=2, cascades=2, uncalibrated_weights=True).train()
    k0, mask, maps = measured_problem(b=1, t=3, h=16, w=16, seed=1)  # equispaced with ACS: main weights
    batch = CineBatch(k0, mask, maps, None, [])
    model(k0, mask, maps).abs().pow(2).sum().backward()
    assert any(n.startswith("uncalibrated_cascades.") for n, p in model.named_parameters() if p.grad is None)
    assert _idle_parameters(model, batch) == []
    model.cascades[1].conv.bias.grad = None  # one member of the used set without a gradient
    assert _idle_parameters(model, batch) == ["cascades.1.conv.bias"]
    model.zero_grad(set_to_none=True)  # no gradient at all: the set the item was routed to is idle
    assert len(_idle_parameters(model, batch)) == sum(1 for n, _ in model.named_parameters()
                                                      if n.startswith("cascades."))
    # a k-t item (no calibration block) is routed to the second set: the main one is excused instead
    kt = make_mask(MaskSpec("time_varying", 4, 0), 3, 16, seed=0)[None]
    model(k0 * kt, kt, maps).abs().pow(2).sum().backward()
    assert _idle_parameters(model, CineBatch(k0 * kt, kt, maps, None, [])) == []


# ----------------------------------------------------------------------------- host syncs, NaN checks

def _host_reads_from_the_loop(n_items, tmp_path):
    """Reads of tensor values to the host (item, tolist, bool, float, int) made in loop.py during fit."""
    import cinerecon.train.loop as loop

    counts, saved = collections.Counter(), {}

    def counting(name):
        f = saved[name] = getattr(torch.Tensor, name)

        def g(self, *a, **k):
            caller = traceback.extract_stack(limit=2)[0]
            if caller.filename == loop.__file__:
                counts[caller.lineno] += 1
            return f(self, *a, **k)
        return g

    names = ("item", "tolist", "__bool__", "__float__", "__int__")
    try:
        for n in names:
            setattr(torch.Tensor, n, counting(n))
        loop.fit(tiny_cfg(tmp_path / f"n{n_items}", epochs=1, log_every=1000, **{"data.batch_size": 1}),
                 MemoryCine(n=n_items), None)
    finally:
        for n in names:
            setattr(torch.Tensor, n, saved[n])
    return counts


def test_training_steps_do_not_read_device_values(tmp_path):
    """Host reads in the loop happen per epoch or every log_every steps, never per step."""
    few, many = _host_reads_from_the_loop(2, tmp_path), _host_reads_from_the_loop(6, tmp_path)
    assert sum(many.values()) == sum(few.values()) <= 3, (few, many)


class _PoisonedCine(MemoryCine):
    def __init__(self, bad: int, **kw):
        super().__init__(**kw)
        self.bad = bad

    def __getitem__(self, i):
        s = super().__getitem__(i)
        if i == self.bad:
            from cinerecon.data.sample import CineSample

            target = s.target.clone()
            target[0, 0, 0] = 1e30  # finite, but its square overflows float32 in the loss
            s = CineSample(s.kspace, s.mask, s.maps, target, s.meta)
        return s


def test_nonfinite_loss_stops_naming_epoch_step_and_item(tmp_path):
    from cinerecon.train.loop import fit

    cfg = tiny_cfg(tmp_path / "run", epochs=2, log_every=3, **{"data.batch_size": 1})
    with pytest.raises(DataError, match=r"non-finite training loss at epoch 1, step [1-4] \(mem3\); found by the "
                                        r"check after steps [1-4]-[1-4]"):
        fit(cfg, _PoisonedCine(bad=3, n=4), None)
    assert not (tmp_path / "run" / "last.pt").exists()  # nothing trained on NaN weights is saved


# ----------------------------------------------------------------------------- resuming older CRUNet runs

def test_resume_crunet_run_written_with_the_idle_first_cascade_weights(tmp_path):
    """A run saved before the first cascade's ih2ih weights were dropped resumes (optimiser state by name)."""
    from cinerecon.train.loop import fit

    over = {"model.name": "crunet", "model.kwargs": "{chans: 2, cascades: 2}", "epochs": 2, "data.batch_size": 2}
    run = fit(tiny_cfg(tmp_path / "run", **{**over, "epochs": 1}), MemoryCine(n=2), None)
    ck = read_checkpoint(run / "last.pt")
    model = build_model("crunet", chans=2, cascades=2)
    model.load_state_dict(ck.state_dict)
    idle = model.idle_weights()
    # rewrite last.pt as the older model (with the idle weights, just before their biases) would have
    old_sd, old_state, pos, new_pos = {}, {}, 0, {}
    for k, v in ck.state_dict.items():
        if k.replace(".bias", ".weight") in idle and k.endswith("ih2ih.bias"):
            old_sd[k.replace(".bias", ".weight")] = torch.zeros(idle[k.replace(".bias", ".weight")])
            pos += 1
        old_sd[k] = v
        new_pos[len(new_pos)] = pos
        pos += 1
    opt = ck.optimizer
    old_state = {new_pos[i]: s for i, s in opt["state"].items()}
    old_opt = {"state": old_state, "param_groups": [{**opt["param_groups"][0], "params": list(range(pos))}]}

    class Old(nn.Module):  # only its state_dict is used by save_checkpoint
        def state_dict(self, *a, **k):
            return old_sd

    sched = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))]), lambda e: 1.0)
    sched.load_state_dict(ck.scheduler)
    optim = torch.optim.AdamW([nn.Parameter(torch.zeros(1)) for _ in range(pos)])
    optim.load_state_dict(old_opt)
    cfg = tiny_cfg(tmp_path / "run", **over)
    save_checkpoint(run / "last.pt", Old(), optim, sched, ck.epoch, cfg, ck.step, ck.best)
    fit(tiny_cfg(tmp_path / "run", resume=True, **over), MemoryCine(n=2), None)
    assert read_checkpoint(run / "last.pt").epoch == 2


# ----------------------------------------------------------------------------- torchrun, two gloo processes

def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


TWO_SETS_CONFIG = """model:
  name: crunet
  kwargs: {chans: 4, cascades: 2, uncalibrated_weights: true}
data:
  masks:
    - {kind: equispaced_acs, accel: 4, acs: 4}
    - {kind: time_varying, accel: 4, acs: 0}
"""


@pytest.mark.slow
@pytest.mark.parametrize("two_sets", [False, True], ids=["one_weight_set", "two_weight_sets"])
def test_torchrun_two_processes_train_crunet_like_one_process(tmp_path, two_sets):
    """`torchrun --standalone --nproc_per_node 2 -m cinerecon.cli train` (gloo, CPU), 3 epochs, CRUNet-MR.

    Two processes at batch 1 see the same items per step as one process at batch 2 (the
    sampler deals the same shuffled order, items are seeded by (seed, epoch, index), the loss
    is a mean over items and DDP averages gradients), so weights and metrics agree to float
    round-off. With a second weight set for masks without calibration and a mix of masks with
    and without ACS, a process's item often leaves one set without a gradient
    (``find_unused_parameters``); the average is still the one-process gradient.
    """
    from cinerecon.cli import main
    from cinerecon.data import simulate

    data = tmp_path / "data"
    files = simulate.simulate_dataset(data, 5, simulate.SimConfig(frames=3, coils=2, size=(16, 16)), accels=(4,))
    names = sorted(p.name for p in files if p.suffix == ".h5")
    (data / "train.txt").write_text("\n".join(names[:4]) + "\n")  # 4 items: 2 steps of 2 per epoch
    (data / "val.txt").write_text(names[4] + "\n")
    (data / "test.txt").write_text("")
    common = ["--model", "crunet", "--accel", "4", "--epochs", "3", "progress=false", "device=cpu",
              "model.kwargs.chans=4", "model.kwargs.cascades=2", "optim.warmup_epochs=1", "optim.lr=3e-3"]
    if two_sets:
        (tmp_path / "two_sets.yaml").write_text(TWO_SETS_CONFIG)
        common += ["--config", str(tmp_path / "two_sets.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(_torchrun() + ["--standalone", "--nproc_per_node", "2", "-m", "cinerecon.cli", "train",
                                         str(data), "--batch-size", "1", "--out", str(tmp_path / "two")] + common,
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run directory:") == 1  # rank 0 only
    assert "2 process(es)" in proc.stderr
    assert main(["train", str(data), "--batch-size", "2", "--out", str(tmp_path / "one")] + common) == 0
    a, b = read_checkpoint(tmp_path / "two" / "last.pt"), read_checkpoint(tmp_path / "one" / "last.pt")
    assert a.epoch == b.epoch == 3 and a.step == b.step == 6
    assert set(a.state_dict) == set(b.state_dict)
    # AdamW divides each gradient by its running RMS, so float round-off in a near-zero gradient
    # (the two runs sum the items' gradients in different orders and batch sizes) moves a weight
    # by up to lr per step: measured up to 1.3e-4 after these 6 steps. Items dealt or averaged
    # wrongly move weights by O(lr) = 3e-3 per step, far beyond this tolerance.
    for k in a.state_dict:
        torch.testing.assert_close(a.state_dict[k], b.state_dict[k], atol=5e-4, rtol=1e-3, msg=k)
    if two_sets:  # both sets trained (the k-t items reached the second set)
        start = build_model("crunet", chans=4, cascades=2, uncalibrated_weights=True).state_dict()
        for prefix in ("cascades.", "uncalibrated_cascades."):
            moved = [k for k in a.state_dict if k.startswith(prefix) and not torch.equal(a.state_dict[k], start[k])]
            assert moved, prefix
    ma, mb = _metrics(tmp_path / "two"), _metrics(tmp_path / "one")
    for ra, rb in zip(ma, mb):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-4)
        assert ra["val_psnr"] == pytest.approx(rb["val_psnr"], abs=1e-3)
    shutil.rmtree(tmp_path / "data")


def test_train_tf32_flag_and_worker_defaults():
    from cinerecon.cli import build_parser
    from cinerecon.commands.train import resolve
    from cinerecon.train.data import loader_workers

    args = build_parser().parse_args(["train", "DATA", "--no-tf32", "--out", "x"])
    assert resolve(args).tf32 is False
    cfg = resolve(build_parser().parse_args(["train", "DATA", "--out", "x"]))
    assert cfg.tf32 is True and cfg.data.num_workers is None
    assert loader_workers(cfg.data, DistInfo(), torch.device("cpu")) == 0  # the model's threads use the cores
    assert 0 <= loader_workers(cfg.data, DistInfo(world_size=2), torch.device("cuda")) <= 4
    explicit = resolve(build_parser().parse_args(["train", "DATA", "--out", "x", "data.num_workers=3"]))
    assert loader_workers(explicit.data, DistInfo(), torch.device("cpu")) == 3
