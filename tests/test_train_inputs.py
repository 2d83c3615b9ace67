"""`cinerecon train` start-up checks of its inputs, --accel forms, the batch-size note and the stop message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from cinerecon.cli import build_parser, main
from cinerecon.data.h5 import CineH5Dataset
from cinerecon.errors import ConfigError, DataError
from cinerecon.train.checkpoints import read_checkpoint
from cinerecon.train.config import load_config
from cinerecon.train.data import build_datasets, train_loader, val_loader
from cinerecon.train.distributed import DistInfo
from test_train_loop import TINY

simulate = pytest.importorskip("cinerecon.data.simulate")

COMMON = ["--model", TINY, "progress=false", "device=cpu", "optim.warmup_epochs=0"]


def _data(root: Path, n: int = 4, size=(16, 12)) -> Path:
    """n subjects of 4 frames, 2 coils: with n=4, 2 training files, 1 validation file, 1 test file; masks R04."""
    simulate.simulate_dataset(root, n, simulate.SimConfig(frames=4, coils=2, size=size), accels=(4,),
                              split=(0.5, 0.25, 0.25))
    return root


def _split(root: Path, name: str) -> list[Path]:
    return [root / line for line in (root / f"{name}.txt").read_text().split()]


def _add_key(files, key: str = "R04tv") -> None:
    """Store a copy of masks/R04 under ``key`` (as a second mask family would be stored)."""
    for p in files:
        with h5py.File(p, "a") as f:
            f["masks"].create_dataset(key, data=f["masks/R04"][()])


def _cfg(root: Path, *over: str):
    return load_config(None, [f"data.root={root}", f"model.name={TINY}", *over])


# ----------------------------------------------------------------------------- 1. checked at start-up


def test_a_training_file_without_the_mask_key_is_refused_at_start_up(tmp_path):
    data = _data(tmp_path / "data")
    train = _split(data, "train")
    _add_key(train[:1] + _split(data, "val"))  # the second training file lacks R04tv
    cfg = _cfg(data, "data.mask_key=R04tv")
    ds, _ = build_datasets(cfg.data, 0)
    with pytest.raises(DataError) as e:
        train_loader(ds, cfg.data, 0, DistInfo())  # before this fix: accepted, then failed mid-epoch
    msg = str(e.value)
    assert "training data" in msg and str(train[1]) in msg and "masks/R04tv" in msg and "['R04']" in msg
    assert "1 of 2 files lacks it" in msg and "\n" not in msg
    with pytest.raises(DataError, match="masks/R04tv"):  # the dataset class checks at construction when asked
        CineH5Dataset(train, mask_key="R04tv", check=True)
    # masks drawn on the fly need no stored key
    fly = _cfg(data, "data.mask_key=R04tv", "data.masks=[{kind: uniform, accel: 2}]")
    train_loader(build_datasets(fly.data, 0)[0], fly.data, 0, DistInfo())


def test_a_validation_file_without_the_mask_key_is_refused_before_training(tmp_path, capsys):
    data = _data(tmp_path / "data")
    _add_key(_split(data, "train"))
    val = _split(data, "val")[0]
    cfg = _cfg(data, "data.mask_key=R04tv")
    _, ds = build_datasets(cfg.data, 0)
    with pytest.raises(DataError, match=r"validation data: .*" + val.name + r".*masks/R04tv"):
        val_loader(ds, cfg.data, DistInfo())
    run = tmp_path / "run"
    assert main(["train", str(data), "--accel", "R04tv", "--epochs", "1", "--out", str(run), *COMMON]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "validation data" in err and val.name in err
    assert not run.exists()  # refused before anything was trained or written


def _mixed_sizes(tmp_path: Path) -> Path:
    a = _data(tmp_path / "a", n=2)
    b = _data(tmp_path / "b", n=2, size=(16, 16))
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "train.txt").write_text("".join(f"{p}\n" for p in _split(a, "train") + _split(b, "train")))
    (root / "val.txt").write_text("".join(f"{p}\n" for p in _split(a, "val")))
    return root


def test_files_of_different_sizes_are_refused_at_start_up_when_batched(tmp_path):
    root = _mixed_sizes(tmp_path)
    cfg = _cfg(root, "data.mask_key=R04", "data.batch_size=2")
    train, _ = build_datasets(cfg.data, 0)
    with pytest.raises(DataError) as e:  # before this fix: "cannot batch samples" at the first mixed batch
        train_loader(train, cfg.data, 0, DistInfo())
    msg = str(e.value)
    assert "cannot batch" in msg and "(2, 4, 16, 12)" in msg and "(2, 4, 16, 16)" in msg
    assert "data.batch_size=1" in msg
    one = _cfg(root, "data.mask_key=R04", "data.batch_size=1")
    loader, _ = train_loader(train, one.data, 0, DistInfo())
    assert len(list(loader)) == 2


# ----------------------------------------------------------------------------- 2. --accel forms


@pytest.mark.parametrize("accel, key", [("8", "R08"), ("R8", "R08"), ("Uniform8", "R08"), ("R08tv", "R08tv"),
                                        ("R08_ktGaussian", "R08_ktGaussian"), ("ktGaussian8", "R08_ktGaussian")])
def test_accel_takes_an_acceleration_or_a_mask_key(tmp_path, accel, key):
    from cinerecon.commands.train import resolve

    args = build_parser().parse_args(["train", str(tmp_path), "--accel", accel, "--out", str(tmp_path / "r")])
    assert resolve(args).data.mask_key == key


def test_accel_mask_keys_and_their_refusals(tmp_path, capsys):
    from cinerecon.commands.train import resolve

    def parse(*argv):
        return resolve(build_parser().parse_args(["train", str(tmp_path), "--out", str(tmp_path / "r"), *argv]))

    yaml = tmp_path / "masks.yaml"
    yaml.write_text("data:\n  masks: [{kind: uniform, accel: 2}]\n")
    assert [m.accel for m in parse("--accel", "6", "--config", str(yaml)).data.masks] == [6]  # as before
    for where in (["--config", str(yaml)], ["data.masks=[{kind: uniform, accel: 2}]"]):
        with pytest.raises(ConfigError, match="data.masks"):  # a stored key cannot set on-the-fly masks
            parse("--accel", "R08tv", *where)
    assert parse("--accel", "R08tv", "--config", str(yaml), "data.masks=[]").data.mask_key == "R08tv"
    with pytest.raises(ConfigError, match="--accel"):
        parse("--accel", "0")
    data = _data(tmp_path / "data")
    _add_key(_split(data, "train") + _split(data, "val"))
    run = tmp_path / "run"
    assert main(["train", str(data), "--accel", "R04tv", "--epochs", "1", "--out", str(run), *COMMON]) == 0
    assert load_config(run / "config.yaml").data.mask_key == "R04tv"


# ----------------------------------------------------------------------------- 3. batch size > items


def test_a_batch_size_above_the_training_items_is_noted_once(tmp_path, capsys):
    data = _data(tmp_path / "data")
    args = ["train", str(data), "--accel", "4", "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path / "r")]
    assert main(args + COMMON) == 0
    err = capsys.readouterr().err
    assert err.count("data.batch_size=4 but there are only 2 training items: batches hold 2") == 1
    assert main(["train", str(data), "--accel", "4", "--epochs", "1", "--batch-size", "2",
                 "--out", str(tmp_path / "r2"), *COMMON]) == 0
    assert "batches hold" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- 4. stop message


def test_ctrl_c_and_sigterm_say_what_last_pt_holds_and_how_to_resume(tmp_path, capsys, monkeypatch):
    import cinerecon.train.loop as loop

    data, run = _data(tmp_path / "data"), tmp_path / "run"
    assert main(["train", str(data), "--accel", "4", "--epochs", "1", "--out", str(run), *COMMON]) == 0
    capsys.readouterr()
    resume = ["train", str(data), "--out", str(run), "--resume", "--epochs", "3"]
    hint = f"continue with `cinerecon train {data} --out {run} --resume`"

    def stop(exc):
        def fit(cfg, *a, **k):
            raise exc
        monkeypatch.setattr(loop, "fit", fit)

    stop(KeyboardInterrupt())
    assert main(resume) == 130
    err = capsys.readouterr().err
    assert err == f"train: stopped (Ctrl-C); {run / 'last.pt'} holds epoch 1: {hint}\n"
    stop(SystemExit(128 + signal.SIGTERM))
    with pytest.raises(SystemExit) as e:
        main(resume)
    assert e.value.code == 143
    assert capsys.readouterr().err == f"train: stopped (SIGTERM); {run / 'last.pt'} holds epoch 1: {hint}\n"
    (run / "last.pt").write_bytes(b"damaged")  # the epoch is left out, the hint kept
    stop(KeyboardInterrupt())
    assert main(resume) == 130
    assert capsys.readouterr().err == f"train: stopped (Ctrl-C); {run / 'last.pt'} is kept: {hint}\n"
    fresh = tmp_path / "fresh"
    assert main(["train", str(data), "--accel", "4", "--out", str(fresh), *COMMON]) == 130
    assert capsys.readouterr().err == f"train: stopped (Ctrl-C) before an epoch was saved (no {fresh / 'last.pt'} " \
                                      "to resume from)\n"


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_a_real_sigterm_after_an_epoch_prints_the_resume_hint(tmp_path):
    data, run = _data(tmp_path / "data"), tmp_path / "run"
    script = ("import sys, time, test_train_loop\nimport cinerecon.train.loop as L\nplain = L.validate\ncalls = []\n"
              "def slow(*a, **k):\n    calls.append(1)\n    if len(calls) == 2:\n"
              "        print('validating', flush=True); time.sleep(60)\n    return plain(*a, **k)\n"
              "L.validate = slow\nfrom cinerecon.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    argv = ["train", str(data), "--accel", "4", "--epochs", "3", "--out", str(run), *COMMON]
    proc = subprocess.Popen([sys.executable, "-c", script, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=str(Path(__file__).parent), env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line = proc.stdout.readline()  # epoch 1 is saved; epoch 2 validates
        assert line.strip() == "validating", proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    err = proc.stderr.read().strip().splitlines()
    assert read_checkpoint(run / "last.pt").epoch == 1
    assert err[-1] == (f"train: stopped (SIGTERM); {run / 'last.pt'} holds epoch 1: continue with "
                       f"`cinerecon train {data} --out {run} --resume`")


def test_accel_refuses_a_fractional_number():
    from cinerecon.commands.train import _accel_key
    from cinerecon.errors import ConfigError

    for bad in ("8.5", "8.", "1e1"):
        with pytest.raises(ConfigError, match="whole number"):
            _accel_key(bad)
    assert _accel_key("8") == ("R08", 8)


def test_undersampled_only_files_and_too_short_series_are_refused_at_start_up(tmp_path, capsys):
    """Training needs a fully sampled reference in every file, and windows no longer than the series."""
    data = _data(tmp_path / "data")
    train = _split(data, "train")
    out = tmp_path / "run"
    assert main(["train", str(data), "--accel", "4", "--out", str(out), "--epochs", "1",
                 "data.frames_window=9"] + COMMON) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fewer than data.frames_window=9" in err[0] and "4 frames" in err[0]
    with h5py.File(train[1], "a") as f:  # an undersampled-only file: k-space zeroed off the R04 lines
        m = f["masks/R04"][()].reshape(-1)
        k = f["kspace"][()]
        k[..., m == 0] = 0
        del f["kspace"], f["mask"]
        f["kspace"] = k
        f["mask"] = m.reshape(1, 1, 1, -1).astype("float32")
        f.attrs["fully_sampled"] = False
    assert main(["train", str(data), "--accel", "4", "--out", str(out), "--epochs", "1"] + COMMON) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(train[1]) in err[0] and "undersampled only" in err[0]
    assert not out.exists() or not any(out.iterdir())
