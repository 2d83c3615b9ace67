"""The training loop on a tiny test-only model and an in-memory dataset of CineSample."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml
from torch.utils.data import Dataset

from cinerecon.data.sample import CineSample, SampleMeta
from cinerecon.errors import ConfigError, DataError, OutputExistsError
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.models import MODELS, register
from cinerecon.models.complex_io import from_channels, to_channels
from cinerecon.models.unrolled import Unrolled
from cinerecon.operators import SenseOp
from cinerecon.train.checkpoints import load_model, read_checkpoint
from cinerecon.train.config import from_dict, load_config
from cinerecon.train.loop import fit

TINY = "test_tiny_unrolled"


class TinyDenoiser(nn.Module):
    """One 3x3 convolution on (real, imag), residual."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x, state):
        b, t, h, w = x.shape
        y = self.conv(to_channels(x).reshape(b * t, 2, h, w)).reshape(b, t, 2, h, w)
        return x + from_channels(y), state


def tiny_unrolled(cascades: int = 2) -> nn.Module:
    return Unrolled([TinyDenoiser() for _ in range(cascades)], pad_multiple=1)


if TINY not in MODELS:
    register(TINY)(tiny_unrolled)


def _smooth(shape, g):
    x = torch.randn(*shape, 2, generator=g)
    x = torch.nn.functional.avg_pool2d(x.movedim(-1, 0).reshape(-1, 1, *shape[-2:]), 3, 1, 1)
    x = x.reshape(2, *shape).movedim(0, -1).contiguous()
    return torch.view_as_complex(x)


class MemoryCine(Dataset):
    """Synthetic undersampled cine slices held in memory.

    With ``noise`` each item adds Gaussian k-space noise drawn from the global torch RNG,
    so exact resumption needs the RNG state restored.
    """

    def __init__(self, n=4, coils=2, frames=3, size=(12, 10), accel=3, seed=0, noise=0.0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        self.noise = noise
        for i in range(n):
            target = _smooth((frames, *size), g) * 4
            maps = _smooth((coils, 1, *size), g) + 1.0
            maps = maps / (maps.abs() ** 2).sum(0, keepdim=True).sqrt()
            full = SenseOp(maps[None]).expand(target[None])[0]
            mask = make_mask(MaskSpec("equispaced_acs", accel, 2), frames, size[1], seed=seed + i)
            self.items.append(CineSample(full * mask, mask, maps, target,
                                         SampleMeta(name=f"mem{i}", accel=accel)))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        s = self.items[i]
        if not self.noise:
            return s
        k = s.kspace + self.noise * torch.randn_like(s.kspace) * s.mask
        return CineSample(k, s.mask, s.maps, s.target, s.meta)


def tiny_cfg(out, **over):
    base = ["model.name=" + TINY, "epochs=3", "optim.warmup_epochs=1", "optim.lr=3e-3", "optim.min_lr=1e-3",
            "data.batch_size=2", "progress=false", "device=cpu", "log_every=1", f"out={out}"]
    return load_config(None, base + [f"{k}={v}" for k, v in over.items()])


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_loss_decreases_and_beats_zero_filling(tmp_path):
    cfg = tiny_cfg(tmp_path / "run", epochs=12, **{"optim.lr": 2e-2, "optim.min_lr": 5e-3, "data.batch_size": 1})
    run = fit(cfg, MemoryCine(n=2), MemoryCine(n=1, seed=5))
    m = _metrics(run)
    assert len(m) == 12
    assert m[-1]["loss"] < 0.7 * m[0]["loss"]
    assert m[-1]["val_psnr"] > m[-1]["val_psnr_zf"] + 1.0
    assert (run / "best.pt").is_file() and (run / "tb").is_dir() and any((run / "tb").iterdir())


def crash_and_resume(tmp_path, monkeypatch, over: dict, crash_at: int):
    """Run ``a`` uninterrupted; run ``b`` crashed at the ``crash_at``-th loss computation (epoch 2), then resumed.

    Returns the two run directories.
    """
    import cinerecon.train.loop as loop

    data = dict(train_set=MemoryCine(n=4, noise=0.05), val_set=MemoryCine(n=1, seed=9))
    run_a = fit(tiny_cfg(tmp_path / "a", **over), **data)
    real_loss, calls = loop.reconstruction_loss, {"n": 0}

    def crashing(*a, **k):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise RuntimeError("simulated crash")
        return real_loss(*a, **k)

    monkeypatch.setattr(loop, "reconstruction_loss", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tiny_cfg(tmp_path / "b", **over), **data)
    assert read_checkpoint(tmp_path / "b" / "last.pt").epoch == 1
    monkeypatch.setattr(loop, "reconstruction_loss", real_loss)
    fit(dataclasses.replace(tiny_cfg(tmp_path / "b", **over), resume=True), **data)
    return run_a, tmp_path / "b"


def test_resume_reproduces_uninterrupted_run(tmp_path, monkeypatch):
    # crash at the first batch of epoch 2 (the start-up probe step, then 2 batches + 1 validation item)
    run_a, run_b = crash_and_resume(tmp_path, monkeypatch, {"optim.schedule_per": "step", "epochs": 3}, crash_at=5)
    a, b = read_checkpoint(run_a / "last.pt"), read_checkpoint(run_b / "last.pt")
    assert a.epoch == b.epoch == 3 and a.step == b.step == 6
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k]), k
    assert a.scheduler["last_epoch"] == b.scheduler["last_epoch"]
    assert [r["loss"] for r in _metrics(run_a)] == [r["loss"] for r in _metrics(run_b)][-3:]


def test_checkpoint_holds_resolved_config_and_reloads(tmp_path):
    cfg = tiny_cfg(tmp_path / "run", epochs=1)
    run = fit(cfg, MemoryCine(n=2))
    ck = read_checkpoint(run / "last.pt")
    assert from_dict(ck.config) == cfg
    assert from_dict(yaml.safe_load((run / "config.yaml").read_text())) == cfg
    assert ck.model_name == TINY and ck.optimizer is not None and ck.rng is not None
    model, conf = load_model(run / "best.pt")
    assert not model.training and conf["model"]["name"] == TINY
    s = MemoryCine(n=1)[0]
    with torch.no_grad():
        out = model(s.kspace[None], s.mask[None], s.maps[None])
    ref = tiny_unrolled()
    ref.load_state_dict(ck.state_dict)
    with torch.no_grad():
        assert torch.equal(out, ref(s.kspace[None], s.mask[None], s.maps[None]))


def test_run_directory_is_protected(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty"):
        fit(tiny_cfg(out, epochs=1), MemoryCine(n=2))
    with pytest.raises(ConfigError, match="last.pt"):
        fit(dataclasses.replace(tiny_cfg(out, epochs=1), resume=True), MemoryCine(n=2))
    fit(dataclasses.replace(tiny_cfg(out, epochs=1), overwrite=True), MemoryCine(n=2))
    assert (out / "notes.txt").read_text() == "mine" and (out / "last.pt").is_file()


def test_init_loads_weights_and_architecture(tmp_path):
    src = fit(tiny_cfg(tmp_path / "src", epochs=1, **{"model.kwargs.cascades": 3}), MemoryCine(n=2))
    init_sd = read_checkpoint(src / "best.pt").state_dict
    # a different architecture in the config: the checkpoint's architecture wins
    cfg = tiny_cfg(tmp_path / "ft", epochs=1, **{"optim.lr": 1e-12, "optim.min_lr": 1e-12,
                                                 "optim.weight_decay": 0.0, "init": src / "best.pt"})
    run = fit(cfg, MemoryCine(n=2))
    ck = read_checkpoint(run / "last.pt")
    assert ck.model_kwargs == {"cascades": 3} and ck.config["init"] == str(src / "best.pt")
    for k, v in init_sd.items():
        assert torch.allclose(ck.state_dict[k], v, atol=1e-8), k


def test_cli_trains_on_hdf5_files_and_resumes(tmp_path, capsys):
    simulate = pytest.importorskip("cinerecon.data.simulate")
    pytest.importorskip("cinerecon.data.h5")
    from cinerecon.cli import main

    data = tmp_path / "data"
    simulate.simulate_dataset(data, 3, simulate.SimConfig(frames=4, coils=2, size=(16, 12)), accels=(4,),
                              split=(0.34, 0.33, 0.33))
    run = tmp_path / "run"
    args = ["train", str(data), "--model", TINY, "--accel", "4", "--epochs", "2", "--out", str(run),
            "progress=false", "device=cpu", "optim.warmup_epochs=1"]
    assert main(args) == 0
    assert "run directory" in capsys.readouterr().out
    m = _metrics(run)
    assert len(m) == 2 and m[0]["val_psnr"] is not None
    cfg = load_config(run / "config.yaml")
    assert cfg.data.mask_key == "R04" and cfg.data.root == str(data) and cfg.model.name == TINY
    assert main(args) == 2  # the run directory exists: refused
    assert "not empty" in capsys.readouterr().err
    assert main(["train", str(data), "--out", str(run), "--resume", "--epochs", "3"]) == 0
    assert read_checkpoint(run / "last.pt").epoch == 3 and len(_metrics(run)) == 3
    # mixed on-the-fly masks and 2-frame windows through key=value overrides
    run2 = tmp_path / "run2"
    assert main(["train", str(data), "--model", TINY, "--epochs", "1", "--out", str(run2), "progress=false",
                 "device=cpu", "data.frames_window=2", "data.masks=[{kind: uniform, accel: 2}, "
                 "{kind: time_varying_acs, accel: 3, acs: 2}]"]) == 0
    assert load_config(run2 / "config.yaml").data.masks[1] == MaskSpec("time_varying_acs", 3, 2)


def test_cli_guards_runs_against_saved_configs_and_changed_architectures(tmp_path, capsys):
    """A saved config.yaml never carries --overwrite; --resume and --init refuse another architecture in one line."""
    simulate = pytest.importorskip("cinerecon.data.simulate")
    from cinerecon.cli import main

    data = tmp_path / "data"
    simulate.simulate_dataset(data, 3, simulate.SimConfig(frames=4, coils=2, size=(16, 12)), accels=(4,),
                              split=(0.34, 0.33, 0.33))
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    common = ["progress=false", "device=cpu", "optim.warmup_epochs=1"]
    assert main(["train", str(data), "--model", "crunet", "--accel", "4", "--epochs", "1", "--out", str(run),
                 "--overwrite", "model.kwargs.chans=2", "model.kwargs.cascades=1"] + common) == 0
    assert load_config(run / "config.yaml").overwrite is False
    assert read_checkpoint(run / "last.pt").config["overwrite"] is False
    before = (run / "best.pt").read_bytes()
    old = tmp_path / "old_style.yaml"  # a config that says overwrite: true (as saved before this fix)
    old.write_text((run / "config.yaml").read_text().replace("overwrite: false", "overwrite: true"))
    assert main(["train", str(data), "--config", str(old)]) == 2
    assert "overwrite: true; ignored" in capsys.readouterr().err
    assert (run / "best.pt").read_bytes() == before
    # re-running the saved config (its out is this run) without --overwrite: refused, nothing replaced
    assert main(["train", str(data), "--config", str(run / "config.yaml"), "model.kwargs.chans=3"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (run / "best.pt").read_bytes() == before and (run / "notes.txt").read_text() == "mine"
    # resuming with another architecture: one line naming last.pt and the key
    assert main(["train", str(data), "--out", str(run), "--resume", "--epochs", "2", "model.kwargs.chans=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "last.pt" in err[0] and "model.kwargs.chans=3" in err[0]
    # --init with a conflicting explicit model or kwargs: refused instead of silently ignored
    for extra in (["--model", "unet3d"], ["model.kwargs.chans=3"]):
        out = tmp_path / f"ft{len(extra)}"
        assert main(["train", str(data), "--init", str(run / "best.pt"), "--epochs", "1", "--out", str(out)]
                    + extra + common) == 2
        err = capsys.readouterr().err
        assert "--init" in err and ("unet3d" in err or "chans=3" in err)
        assert not out.exists() or not any(out.iterdir())  # nothing trained or written
    # the same kwargs as the checkpoint (or only the free ones) are fine
    assert main(["train", str(data), "--init", str(run / "best.pt"), "--epochs", "1", "--out", str(tmp_path / "ok"),
                 "--accel", "4", "model.kwargs.chans=2", "model.kwargs.initial_image=view_sharing"] + common) == 0
    # ... and a free option changed from the checkpoint's is said, once, with both values
    err = [ln for ln in capsys.readouterr().err.splitlines() if "initial_image" in ln]
    assert len(err) == 1 and "'view_sharing'" in err[0] and "'zero_filled'" in err[0] and "--init" in err[0]
    assert main(["train", str(data), "--init", str(run / "best.pt"), "--epochs", "1", "--out", str(tmp_path / "ok2"),
                 "--accel", "4", "model.kwargs.initial_image=zero_filled"] + common) == 0
    assert "initial_image" not in capsys.readouterr().err  # the same value: nothing to say


def test_cli_refuses_explicit_default_model_against_another_init(tmp_path, capsys):
    """--model crunet (the config's default name) with a checkpoint of another model: one line, nothing trained."""
    simulate = pytest.importorskip("cinerecon.data.simulate")
    from cinerecon.cli import main

    data = tmp_path / "data"
    simulate.simulate_dataset(data, 3, simulate.SimConfig(frames=4, coils=2, size=(16, 12)), accels=(4,),
                              split=(0.34, 0.33, 0.33))
    src = fit(tiny_cfg(tmp_path / "src", epochs=1), MemoryCine(n=2))  # a TINY checkpoint
    capsys.readouterr()
    out = tmp_path / "ft"
    common = ["--epochs", "1", "--out", str(out), "progress=false", "device=cpu"]
    assert main(["train", str(data), "--init", str(src / "best.pt"), "--model", "crunet"] + common) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and TINY in err[0] and "'crunet'" in err[0] and "--init" in err[0]
    assert not out.exists()
    # naming the checkpoint's own model is fine
    assert main(["train", str(data), "--init", str(src / "best.pt"), "--model", TINY, "--accel", "4"] + common) == 0
    assert read_checkpoint(out / "last.pt").model_name == TINY


def test_architecture_checks_fill_in_the_builders_defaults(tmp_path):
    """{} and {"cascades": 2} are one tiny model (its builder's default): neither --init nor --resume may trip on it."""
    src = fit(tiny_cfg(tmp_path / "src", epochs=1), MemoryCine(n=2))  # kwargs {}: the default 2 cascades
    # --init: the same architecture written out is fine, another one is refused even though src stored none
    fit(tiny_cfg(tmp_path / "same", epochs=1, **{"init": src / "last.pt", "model.kwargs.cascades": 2}), MemoryCine(n=2))
    with pytest.raises(ConfigError, match=r"cascades=2.*model.kwargs.cascades=3"):
        fit(tiny_cfg(tmp_path / "other", epochs=1, **{"init": src / "last.pt", "model.kwargs.cascades": 3}),
            MemoryCine(n=2))
    # --resume of a run whose stored kwargs list a default that its config leaves out
    b = fit(tiny_cfg(tmp_path / "b", epochs=1, **{"model.kwargs.cascades": 2}), MemoryCine(n=2))
    fit(dataclasses.replace(tiny_cfg(b, epochs=2), resume=True), MemoryCine(n=2))
    assert read_checkpoint(b / "last.pt").epoch == 2


@pytest.mark.parametrize("spec", ["{kind: equispaced_acs, accel: 0}", "{kind: uniform, accel: -4}",
                                  "{kind: equispaced_acs, accel: 4, acs: -1}"])
def test_nonsense_mask_specs_are_refused_in_one_line(spec, tmp_path):
    with pytest.raises(ConfigError, match=r"mask .*(accel|acs) must be"):
        tiny_cfg(tmp_path / "r", **{"data.masks": f"[{spec}]"})


def test_bf16_autocast_and_activation_checkpointing_train(tmp_path):
    cfg = tiny_cfg(tmp_path / "run", epochs=2, amp=True, checkpoint_cascades=True)
    run = fit(cfg, MemoryCine(n=2), MemoryCine(n=1, seed=3))
    m = _metrics(run)
    assert all(torch.isfinite(torch.tensor([r["loss"], r["val_psnr"]])).all() for r in m)


def _ddp_worker(rank, world, port, out, result_dir):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    cfg = tiny_cfg(out, epochs=2, **{"data.batch_size": 1})
    fit(cfg, MemoryCine(n=4), MemoryCine(n=2, seed=7))


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one_process_with_double_batch(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path / "ddp"), str(tmp_path)), nprocs=2, join=True)
    single = fit(tiny_cfg(tmp_path / "one", epochs=2, **{"data.batch_size": 2}), MemoryCine(n=4),
                 MemoryCine(n=2, seed=7))
    a, b = read_checkpoint(tmp_path / "ddp" / "last.pt"), read_checkpoint(single / "last.pt")
    assert a.epoch == b.epoch == 2
    for k in a.state_dict:
        assert torch.allclose(a.state_dict[k], b.state_dict[k], atol=1e-5), k
    ma, mb = _metrics(tmp_path / "ddp"), _metrics(single)
    assert ma[-1]["val_psnr"] == pytest.approx(mb[-1]["val_psnr"], abs=1e-3)


def test_finetune_crunet_from_authors_checkpoint_via_cli(tmp_path, golden):
    simulate = pytest.importorskip("cinerecon.data.simulate")
    pytest.importorskip("cinerecon.models.compat")
    if "crunet" not in MODELS:
        pytest.skip("crunet not available")
    from cinerecon.cli import main

    data = tmp_path / "data"
    simulate.simulate_dataset(data, 2, simulate.SimConfig(frames=3, coils=2, size=(16, 16)), accels=(4,),
                              split=(0.5, 0.5, 0.0))
    authors = tmp_path / "authors.pt"
    torch.save(golden["state_dict"], authors)
    run = tmp_path / "ft"
    assert main(["train", str(data), "--init", str(authors), "--epochs", "1", "--accel", "4", "--out", str(run),
                 "progress=false", "device=cpu", "optim.lr=1e-12", "optim.min_lr=1e-12",
                 "optim.weight_decay=0"]) == 0
    cfg = load_config(run / "config.yaml")
    assert cfg.model.name == "crunet" and cfg.model.kwargs["chans"] == golden["config"]["chans"]
    assert cfg.optim.warmup_epochs == 5  # the finetune preset applies with --init
    model, _ = load_model(run / "last.pt")
    from cinerecon.models.compat import load_authors_checkpoint

    ref = load_authors_checkpoint(golden["state_dict"])
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-8), k


class _FakeClock:
    """``time`` stand-in for the loop whose ``monotonic()`` advances 10 s per call."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 10.0
        return self.now


def test_time_budget_fits_the_epoch_count_and_keeps_best_and_last(tmp_path, monkeypatch):
    import cinerecon.train.loop as loop

    monkeypatch.setattr(loop, "time", _FakeClock())
    # clock: start 10, probe 20 -> 30, epoch ends 40, 50, 60 (elapsed 30, 40, 50 of a 60 s budget):
    # after epoch 1 two epochs fit, after epoch 2 three, and the run ends at 3 of the 50 asked for
    cfg = tiny_cfg(tmp_path / "run", epochs=50, time_budget_min=1.0)
    run = fit(cfg, MemoryCine(n=2), MemoryCine(n=1, seed=4))
    assert read_checkpoint(run / "last.pt").epoch == 3
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 3
    assert (run / "best.pt").is_file() and len(_metrics(run)) == 3


def test_time_budget_that_cannot_fit_one_step_is_refused_before_training(tmp_path):
    cfg = tiny_cfg(tmp_path / "run", epochs=2, time_budget_min=1e-9)
    with pytest.raises(ConfigError, match="cannot fit one training step"):
        fit(cfg, MemoryCine(n=2))
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("override", ["data.batch_size=0", "optim.lr=.nan", "optim.lr=-1", "time_budget_min=0"])
def test_bad_numbers_in_the_config_are_refused(override):
    with pytest.raises(ConfigError):
        load_config(None, [override])


@pytest.mark.parametrize("name, default, other", [
    ("cinenet", {"chans": 16}, {"chans": 8}),
    ("crnn", {"preset": "normalised"}, {"preset": "original"}),
    ("crnn", {"nf": 64}, {"nf": 32}),
    ("promptmr", {"preset": "tiny", "cascades": 2}, {"cascades": 3}),
    ("unet3d", {"preset": "paper", "dilations": [1, 2, 4]}, {"preset": "paper", "chans": 32}),
    ("crunet", {"chans": 64}, {"chans": 16}),
])
def test_every_model_resolves_its_builder_defaults(name, default, other):
    """A model's own defaults written out are the same architecture as {} (--init / --resume must accept
    them); a real change is still found."""
    from cinerecon.models import architecture_change

    assert architecture_change(name, {}, default, keys=default) is None
    change = architecture_change(name, {}, other, keys=other)
    assert change is not None and change[1] != change[2]


class _UnreadableVal(MemoryCine):
    """Validation items that cannot be read (as a file with all-zero maps would be)."""

    def __getitem__(self, i):
        raise DataError(f"val{i}.h5: dataset 'maps' of shape (2, 1, 12, 10) is all zeros")


def test_overwrite_keeps_the_previous_run_when_the_new_one_fails_before_saving(tmp_path):
    """--overwrite sets the old run aside; a failure before the first epoch is saved puts it back untouched."""
    out = tmp_path / "run"
    fit(tiny_cfg(out, epochs=1), MemoryCine(n=2), MemoryCine(n=2, seed=5))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    tb_before = sorted(p.name for p in (out / "tb").iterdir())
    with pytest.raises(DataError, match="all zeros"):
        fit(dataclasses.replace(tiny_cfg(out, epochs=2), overwrite=True), MemoryCine(n=2), _UnreadableVal(n=2))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in (out / "tb").iterdir()) == tb_before
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["tb"]  # no set-aside folder left
    # a successful overwrite replaces the old run and leaves no set-aside folder either
    fit(dataclasses.replace(tiny_cfg(out, epochs=2), overwrite=True), MemoryCine(n=2), MemoryCine(n=2, seed=5))
    assert read_checkpoint(out / "last.pt").epoch == 2 and len(_metrics(out)) == 2
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["tb"]


def test_a_run_whose_validation_images_are_not_finite_stops_without_saving(tmp_path):
    """Weights that diverge in the last steps give NaN images: the run stops naming the epoch, no best.pt."""
    cfg = tiny_cfg(tmp_path / "run", epochs=2, **{"optim.lr": 1e30, "optim.min_lr": 1e30, "optim.grad_clip": "null",
                                                 "optim.warmup_epochs": 0, "log_every": 1000})
    with pytest.raises(DataError, match=r"validation PSNR is (nan|-inf) after epoch 1"):
        fit(cfg, MemoryCine(n=2), MemoryCine(n=2, seed=5))  # one step: its loss is finite, its update is not
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "last.pt").exists()


def test_a_refused_or_failed_new_run_leaves_no_folder_and_never_touches_a_run_it_was_refused(tmp_path, capsys):
    out = tmp_path / "new"
    with pytest.raises(DataError, match="all zeros"):  # fails at the first validation
        fit(tiny_cfg(out, epochs=1), MemoryCine(n=2), _UnreadableVal(n=2))
    assert not out.exists()  # the folder it created is gone with what it wrote
    with pytest.raises(ConfigError):  # refused before writing anything (unknown model)
        fit(tiny_cfg(out, epochs=1, **{"model.name": "no_such_model"}), MemoryCine(n=2))
    assert not out.exists()
    # a refused run (not empty, no --overwrite) leaves the existing run exactly as it was
    old = tmp_path / "old"
    fit(tiny_cfg(old, epochs=1), MemoryCine(n=2))
    before = {p.relative_to(old).as_posix(): p.read_bytes() for p in old.rglob("*") if p.is_file()}
    with pytest.raises(OutputExistsError):
        fit(tiny_cfg(old, epochs=1), MemoryCine(n=2))
    assert {p.relative_to(old).as_posix(): p.read_bytes() for p in old.rglob("*") if p.is_file()} == before
    # and with --overwrite but a failure before anything is set aside (the model cannot be built)
    with pytest.raises(ConfigError):
        fit(dataclasses.replace(tiny_cfg(old, epochs=1, **{"model.name": "no_such_model"}), overwrite=True),
            MemoryCine(n=2))
    assert {p.relative_to(old).as_posix(): p.read_bytes() for p in old.rglob("*") if p.is_file()} == before


def test_a_killed_overwrite_leaves_its_set_aside_folder_named_not_hidden(tmp_path):
    """SIGKILL gives no chance to put the previous run back: the next start names the folder that holds it."""
    out = tmp_path / "run"
    fit(tiny_cfg(out, epochs=1), MemoryCine(n=2))
    stranded = out / ".previous-run-abc123"  # as a killed --overwrite leaves it
    stranded.mkdir()
    for name in ("best.pt", "last.pt", "metrics.jsonl"):
        (out / name).rename(stranded / name)
    for cfg in (tiny_cfg(out, epochs=1), dataclasses.replace(tiny_cfg(out, epochs=2), resume=True),
                dataclasses.replace(tiny_cfg(out, epochs=1), overwrite=True)):
        with pytest.raises(OutputExistsError, match=r"\.previous-run-abc123 holds the files of an earlier run"):
            fit(cfg, MemoryCine(n=2))
    assert sorted(p.name for p in stranded.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGTERM") or __import__("os").name != "posix",
                    reason="POSIX signals")
def test_sigterm_during_an_overwrite_puts_the_previous_run_back(tmp_path):
    """`kill` / `timeout` / a scheduler's stop during the first epoch of `train --overwrite`: the old run is back."""
    import signal
    import subprocess
    import sys
    import time

    simulate = pytest.importorskip("cinerecon.data.simulate")
    from cinerecon.cli import main

    data, out = tmp_path / "data", tmp_path / "run"
    simulate.simulate_dataset(data, 3, simulate.SimConfig(frames=4, coils=2, size=(16, 12)), accels=(4,),
                              split=(0.34, 0.33, 0.33))
    common = ["train", str(data), "--model", TINY, "--accel", "4", "--out", str(out), "progress=false", "device=cpu"]
    assert main(common + ["--epochs", "1"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    script = ("import sys, time, test_train_loop\nimport cinerecon.train.loop as L\n"
              "def slow(*a, **k):\n    print('validating', flush=True); time.sleep(60)\n"
              "L.validate = slow\nfrom cinerecon.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script, *common, "--epochs", "2", "--overwrite"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(Path(__file__).parent), env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    line = proc.stdout.readline()  # the first epoch has trained: the previous run is set aside now
    assert line.strip() == "validating", proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not list(out.glob(".previous-run-*"))


def test_the_sigterm_handler_lives_only_as_long_as_the_run(tmp_path):
    import signal

    from cinerecon.train import stop

    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with stop.on_sigterm():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        stop.check()  # nothing requested: no stop
        stop._REQUESTED.set()  # as a handler whose exception a callback swallowed leaves it
        with pytest.raises(SystemExit) as e:
            stop.check()
        assert e.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and not stop._REQUESTED.is_set()


def test_an_undeletable_previous_run_never_blocks_a_later_resume(tmp_path, monkeypatch):
    """If deleting the set-aside folder fails after the first save, what is left is not taken for a stranded run."""
    import cinerecon.train.loop as loop

    out = tmp_path / "run"
    fit(tiny_cfg(out, epochs=1), MemoryCine(n=2))
    monkeypatch.setattr(loop.shutil, "rmtree", lambda *a, **k: None)  # e.g. NFS keeps an open file
    fit(dataclasses.replace(tiny_cfg(out, epochs=1), overwrite=True), MemoryCine(n=2))
    monkeypatch.undo()
    assert not list(out.glob(".previous-run-*")) and len(list(out.glob(".discarded-run-*"))) == 1
    fit(dataclasses.replace(tiny_cfg(out, epochs=2), resume=True), MemoryCine(n=2))
    assert read_checkpoint(out / "last.pt").epoch == 2
