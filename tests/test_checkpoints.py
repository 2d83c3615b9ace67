import random

import numpy as np
import pytest
import torch

import cinerecon.train.checkpoints as ckpt
from cinerecon.errors import ConfigError, DataError, OutputExistsError, WeightsNotFoundError
from cinerecon.files import atomic_write_text
from cinerecon.train.checkpoints import (RngState, load_model, prepare_run_dir, read_checkpoint, save_checkpoint)
from cinerecon.train.config import load_config, to_dict
from cinerecon.train.schedule import make_scheduler
from test_train_loop import TINY, tiny_unrolled  # noqa: F401 (registers the tiny model)


def _setup(seed=0):
    torch.manual_seed(seed)
    model = tiny_unrolled(cascades=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = make_scheduler(opt, 1e-3, 1e-4, 1, 5)
    loss = sum(p.square().sum() for p in model.parameters())
    loss.backward()
    opt.step()
    sched.step()
    cfg = load_config(None, [f"model.name={TINY}", "model.kwargs.cascades=2", "epochs=5"])
    return model, opt, sched, cfg


def test_round_trip_restores_everything(tmp_path):
    model, opt, sched, cfg = _setup()
    path = save_checkpoint(tmp_path / "last.pt", model, opt, sched, epoch=1, cfg=cfg, step=4, best=21.5)
    ck = read_checkpoint(path)
    assert (ck.epoch, ck.step, ck.best, ck.model_name, ck.model_kwargs) == (1, 4, 21.5, TINY, {"cascades": 2})
    assert ck.config == to_dict(cfg) and ck.version == ckpt.PLAIN_VERSION
    model2, opt2, sched2, _ = _setup(seed=1)
    model2.load_state_dict(ck.state_dict)
    opt2.load_state_dict(ck.optimizer)
    sched2.load_state_dict(ck.scheduler)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert opt2.state_dict()["state"][0]["exp_avg"].equal(opt.state_dict()["state"][0]["exp_avg"])
    assert sched2.last_epoch == sched.last_epoch and sched2.get_last_lr() == sched.get_last_lr()
    loaded, conf = load_model(path)
    assert not loaded.training and conf["model"]["kwargs"] == {"cascades": 2}
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters()))


def test_failing_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, opt, sched, cfg = _setup()
    path = save_checkpoint(tmp_path / "last.pt", model, opt, sched, epoch=1, cfg=cfg)
    before = path.read_bytes()
    real_save = torch.save

    def broken_save(obj, f, *a, **k):
        f.write(b"partial garbage")  # half-written, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, opt, sched, epoch=2, cfg=cfg)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert read_checkpoint(path).epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left behind


def test_checkpoint_mode_follows_umask(tmp_path):
    import os

    model, opt, sched, cfg = _setup()
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "last.pt", model, opt, sched, epoch=1, cfg=cfg)
        text = atomic_write_text(tmp_path / "config.yaml", "a: 1\n", fsync=True)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644 and text.stat().st_mode & 0o777 == 0o644


def test_rng_state_round_trip():
    torch.manual_seed(3)
    np.random.seed(4)
    random.seed(5)
    state = RngState.capture()
    expect = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(7), np.random.rand(2), random.random()
    state.restore()
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1]) and expect[2] == got[2]


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt"):
        read_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"foo": torch.zeros(1)}, other)
    with pytest.raises(DataError, match="other.pt"):
        load_model(other)


def test_prepare_run_dir_protects_user_files(tmp_path):
    out = tmp_path / "run"
    assert prepare_run_dir(out, resume=False, overwrite=False).is_dir()  # new directory
    prepare_run_dir(out, resume=False, overwrite=False)  # empty: fine
    (out / "mine.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="run"):
        prepare_run_dir(out, resume=False, overwrite=False)
    prepare_run_dir(out, resume=False, overwrite=True)
    assert (out / "mine.txt").exists()
    with pytest.raises(ConfigError, match="last.pt"):
        prepare_run_dir(out, resume=True, overwrite=False)


def test_authors_state_dict_dispatch(tmp_path, golden):
    compat = pytest.importorskip("cinerecon.models.compat")
    path = tmp_path / "authors.pt"
    torch.save(golden["state_dict"], path)
    assert compat.is_authors_state_dict(golden["state_dict"])
    model, conf = load_model(path)
    assert conf["model"]["name"] == "crunet" and not model.training
    assert conf["model"]["kwargs"]["chans"] == golden["config"]["chans"]
    # the loaded model computes the authors' reference output
    from cinerecon.fft import fft2c

    maps = golden["sens_maps"][:, None]  # (C, 1, H, W)
    mask = golden["mask"].to(torch.float32)[None, None]  # (1, 1, H, W)
    k = mask * fft2c(maps * golden["image"][None])
    with torch.no_grad():
        out = model(k[None], mask[None], maps[None])[0]
    err = (out - golden["expected"]).norm() / golden["expected"].norm()
    assert float(err) < 1e-4
