"""``cinerecon train --time-budget MINUTES``: the flag, stopping mid-epoch, refusing before anything is removed."""

import dataclasses
import json

import pytest
import yaml

from cinerecon.errors import ConfigError
from cinerecon.train.checkpoints import read_checkpoint
from cinerecon.train.loop import fit
from test_train_loop import TINY, MemoryCine, tiny_cfg


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _files(run):
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def h5_data(tmp_path_factory):
    simulate = pytest.importorskip("cinerecon.data.simulate")
    data = tmp_path_factory.mktemp("budget") / "data"
    simulate.simulate_dataset(data, 3, simulate.SimConfig(frames=4, coils=2, size=(16, 12)), accels=(4,),
                              split=(0.34, 0.33, 0.33))
    return data


def test_time_budget_flag_sets_time_budget_min(tmp_path):
    from cinerecon.cli import build_parser
    from cinerecon.commands.train import resolve

    args = build_parser().parse_args(["train", str(tmp_path), "--time-budget", "2.5", "--out", str(tmp_path / "r")])
    assert resolve(args).time_budget_min == 2.5
    # a key=value override still has the last word
    args = build_parser().parse_args(["train", str(tmp_path), "--time-budget", "2.5", "time_budget_min=7"])
    assert resolve(args).time_budget_min == 7.0
    assert "--time-budget MINUTES" in build_parser()._subparsers._group_actions[0].choices["train"].format_help()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_bad_time_budget_flag_is_one_line_naming_the_flag(tmp_path, capsys, value):
    from cinerecon.cli import main

    assert main(["train", str(tmp_path), "--time-budget", value, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--time-budget must be a positive number of minutes" in err, err
    assert not (tmp_path / "r").exists()


def test_cli_time_budget_trains_and_overwrite_with_a_refused_budget_keeps_the_old_run(h5_data, tmp_path, capsys):
    from cinerecon.cli import main

    run = tmp_path / "run"
    base = ["train", str(h5_data), "--model", TINY, "--accel", "4", "--out", str(run), "progress=false",
            "device=cpu", "optim.warmup_epochs=1"]
    assert main(base + ["--epochs", "2", "--time-budget", "5"]) == 0
    err = capsys.readouterr().err
    assert "s per step, time budget 5 min (room for the 2 epochs asked)" in err and "trainable parameters" in err, err
    assert yaml.safe_load((run / "config.yaml").read_text())["time_budget_min"] == 5.0
    assert read_checkpoint(run / "last.pt").epoch == 2
    before = _files(run)
    assert {"last.pt", "best.pt", "config.yaml", "metrics.jsonl"} <= set(before)

    assert main(base + ["--epochs", "2", "--overwrite", "--time-budget", "1e-9"]) == 2
    err = capsys.readouterr().err
    assert "cannot fit one training step" in err and err.count("\n") == 1, err
    assert _files(run) == before and (run / "tb").is_dir()  # refused before anything was removed


def test_overwrite_with_a_refused_budget_keeps_the_old_run(tmp_path):
    out = tmp_path / "run"
    fit(tiny_cfg(out, epochs=1), MemoryCine(n=2), MemoryCine(n=1, seed=3))
    before = _files(out)
    with pytest.raises(ConfigError, match="cannot fit one training step"):
        fit(dataclasses.replace(tiny_cfg(out, epochs=1, time_budget_min=1e-9), overwrite=True), MemoryCine(n=2))
    assert _files(out) == before


class _Clock:
    """``time`` stand-in for the loop: the clock only moves when the data set loads an item."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


class _SlowCine(MemoryCine):
    """Loading an item takes ``seconds`` on ``clock`` (the model's steps take no time there)."""

    def __init__(self, clock, seconds=1.0, **kw):
        super().__init__(**kw)
        self.clock, self.seconds = clock, seconds

    def __getitem__(self, i):
        self.clock.now += self.seconds
        return super().__getitem__(i)


def test_budget_shorter_than_an_epoch_stops_mid_epoch_and_keeps_best_and_last(tmp_path, monkeypatch, capsys):
    import cinerecon.train.loop as loop

    clock = _Clock()
    monkeypatch.setattr(loop, "time", clock)
    # 40 one-item steps of 1 s per epoch; a 12 s budget: probe 1 s, then steps while step + validation fit
    cfg = tiny_cfg(tmp_path / "run", epochs=5, time_budget_min=0.2, **{"data.batch_size": 1})
    data = dict(train_set=_SlowCine(clock, n=40), val_set=_SlowCine(clock, n=1, seed=7))
    start = clock.now
    run = fit(cfg, **data)
    assert clock.now - start <= 12.0  # the budget, validation included
    ck = read_checkpoint(run / "last.pt")
    assert ck.epoch == 1 and 5 <= ck.step < 40, ck.step
    assert (run / "best.pt").is_file()
    m = _metrics(run)
    assert len(m) == 1 and m[0]["partial_steps"] == ck.step and m[0]["steps_per_epoch"] == 40
    assert m[0]["val_psnr"] is not None
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 1  # the run is finished
    assert "stopping in epoch 1 after" in capsys.readouterr().err

    # resuming a finished run says so and trains nothing
    before = _files(run)
    fit(dataclasses.replace(cfg, epochs=1, resume=True), **data)
    assert "is finished" in capsys.readouterr().err and _files(run) == before
    # a larger epoch count continues with the next epoch
    fit(dataclasses.replace(cfg, epochs=2, resume=True, time_budget_min=None), **data)
    ck2 = read_checkpoint(run / "last.pt")
    assert ck2.epoch == 2 and ck2.step == ck.step + 40 and len(_metrics(run)) == 2
