"""Bad flag and config values: one line naming the flag or key and the value, a non-zero exit.

Rows of ``simulate``, ``demo`` and ``train`` run ``cinerecon.cli.main`` in-process (as
tests/test_bad_inputs.py does). The demo rows name a missing ``--checkpoint`` so that a value
the demo failed to check ends quickly in another error instead of a training run; the
train rows point at a missing data folder for the same reason. Every shipped YAML (and the
resolved configs kept in docs/) must still load.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cinerecon.errors import ConfigError
from cinerecon.train.config import load_config
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_YAML = sorted((ROOT / "configs").rglob("*.yaml")) + sorted((ROOT / "docs").rglob("*config*.yaml"))


def _one_line(rc, err: str, fragments: list[str]) -> str:
    assert rc not in (0, None), f"exit status {rc}; stderr: {err}"
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0], f"expected one line, got {len(lines)}:\n{err}"
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in lines[0], f"{frag!r} not in: {lines[0]}"
    return lines[0]


# ----------------------------------------------------------------------------- simulate

SIMULATE_ROWS = [
    ("acs-wider-than-size", ["--size", "16", "16", "--acs", "40"], ["--acs", "40", "--size 16 16"]),
    ("acs-negative", ["--size", "16", "16", "--acs", "-1"], ["--acs", "-1"]),
    ("seed-negative", ["--seed", "-1"], ["--seed", "-1"]),
    ("size-below-simulator-minimum", ["--size", "4", "4"], ["--size", "4 4"]),
]


@pytest.mark.parametrize("flags, fragments", [pytest.param(f, fr, id=i) for i, f, fr in SIMULATE_ROWS])
def test_simulate_bad_flags(tmp_path, capsys, flags, fragments):
    out = tmp_path / "out"
    rc, err = run_cli(["simulate", str(out), "--subjects", "1", "--frames", "2", "--coils", "1"] + flags, capsys)
    _one_line(rc, err, fragments)
    assert not out.exists()


# ----------------------------------------------------------------------------- demo

DEMO_ROWS = [
    ("lr-nan", ["--lr", "nan"], ["--lr", "nan"]),
    ("lr-inf", ["--lr", "inf"], ["--lr", "inf"]),
    ("lr-zero", ["--lr", "0"], ["--lr", "0"]),
    ("accel-zero", ["--accel", "0"], ["--accel", "0"]),
    ("error-gain-nan", ["--error-gain", "nan"], ["--error-gain", "nan"]),
    ("error-gain-inf", ["--error-gain", "inf"], ["--error-gain", "inf"]),
    ("train-minutes-nan", ["--train-minutes", "nan"], ["--train-minutes", "nan"]),
    ("epochs-zero", ["--epochs", "0"], ["--epochs", "0"]),
    ("subjects-one", ["--subjects", "1"], ["--subjects", "1"]),
    ("frames-zero", ["--frames", "0"], ["--frames", "0"]),
    ("coils-zero", ["--coils", "0"], ["--coils", "0"]),
    ("chans-zero", ["--chans", "0"], ["--chans", "0"]),
    ("cascades-zero", ["--cascades", "0"], ["--cascades", "0"]),
    ("seed-negative", ["--seed", "-1"], ["--seed", "-1"]),
    ("frames-window-negative", ["--frames-window", "-1"], ["--frames-window", "-1"]),
    ("size-tiny", ["--size", "4", "64"], ["--size", "4 64"]),
    ("size-huge", ["--size", "100000", "100000"], ["--size 100000 100000", "GiB"]),
    ("device-absent-gpu", ["--device", "cuda:99"], ["--device", "cuda:99"]),
]


@pytest.mark.parametrize("flags, fragments", [pytest.param(f, fr, id=i) for i, f, fr in DEMO_ROWS])
def test_demo_bad_flags(tmp_path, capsys, flags, fragments):
    out = tmp_path / "out"
    argv = ["demo", "--out", str(out), "--checkpoint", str(tmp_path / "missing.pt"), "--phantoms"] + flags
    rc, err = run_cli(argv, capsys)
    _one_line(rc, err, fragments)
    assert not out.exists()


# ----------------------------------------------------------------------------- train config

TRAIN_ROWS = [
    ("seed-negative", "seed=-1", ["seed", "-1"]),
    ("log-every-zero", "log_every=0", ["log_every", "0"]),
    ("epochs-zero", "epochs=0", ["epochs", "0"]),
    ("max-val-items-negative", "data.max_val_items=-1", ["data.max_val_items", "-1"]),
    ("max-val-items-zero", "data.max_val_items=0", ["data.max_val_items", "0"]),
    ("frames-window-zero", "data.frames_window=0", ["data.frames_window", "0"]),
    ("ssim-window-zero", "loss.ssim_window=0", ["loss.ssim_window", "0"]),
    ("ssim-window-one", "loss.ssim_window=1", ["loss.ssim_window", "1"]),
    ("ssim-window-even", "loss.ssim_window=6", ["loss.ssim_window", "6"]),
    ("ssim-k1-zero", "loss.ssim_k1=0", ["loss.ssim_k1", "0"]),
    ("ssim-k2-nan", "loss.ssim_k2=.nan", ["loss.ssim_k2", "nan"]),
    ("w-ssim-negative", "loss.w_ssim=-5", ["loss.w_ssim", "-5"]),
    ("w-kspace-nan", "loss.w_kspace=.nan", ["loss.w_kspace", "nan"]),
    ("w-image-inf", "loss.w_image=.inf", ["loss.w_image", "inf"]),
    ("image-l1-negative", "loss.image_l1=-1", ["loss.image_l1", "-1"]),
    ("grad-clip-zero", "optim.grad_clip=0", ["optim.grad_clip", "0"]),
    ("beta-one", "optim.betas=[1.0, 0.999]", ["optim.betas[0]", "1.0"]),
]


@pytest.mark.parametrize("override, fragments", [pytest.param(o, f, id=i) for i, o, f in TRAIN_ROWS])
def test_train_bad_config_values(tmp_path, capsys, override, fragments):
    rc, err = run_cli(["train", str(tmp_path / "no_data"), "--out", str(tmp_path / "run"), override], capsys)
    _one_line(rc, err, fragments)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, fragments", [pytest.param(o, f, id=i) for i, o, f in TRAIN_ROWS])
def test_yaml_bad_values_name_file_and_key(tmp_path, override, fragments):
    key, value = override.split("=", 1)
    *parents, leaf = key.split(".")
    text = "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents)) + f"{'  ' * len(parents)}{leaf}: {value}\n"
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "bad.yaml" in str(e.value) and key in str(e.value)


def test_loss_that_is_identically_zero_is_refused():
    with pytest.raises(ConfigError, match="identically zero"):
        load_config(None, ["loss.w_kspace=0", "loss.w_ssim=0", "loss.image_l1=0", "loss.image_mse=0"])
    with pytest.raises(ConfigError, match="identically zero"):
        load_config(None, ["loss.w_kspace=0", "loss.w_ssim=0", "loss.w_image=0"])
    # one term left is a valid ablation
    assert load_config(None, ["loss.w_kspace=0", "loss.w_image=0"]).loss.w_ssim == 1.0


def test_good_edge_values_still_load():
    cfg = load_config(None, ["seed=0", "log_every=1", "data.max_val_items=1", "data.frames_window=1",
                             "loss.ssim_window=3", "optim.grad_clip=0.5", "optim.betas=[0.0, 0.0]", "epochs=1"])
    assert (cfg.seed, cfg.log_every, cfg.data.max_val_items, cfg.loss.ssim_window) == (0, 1, 1, 3)
    assert load_config(None, ["data.max_val_items=null", "optim.grad_clip=null"]).data.max_val_items is None


@pytest.mark.parametrize("path", SHIPPED_YAML, ids=[str(p.relative_to(ROOT)) for p in SHIPPED_YAML])
def test_every_shipped_yaml_still_loads(path):
    load_config(path)


def test_shipped_yaml_found():
    names = {str(p.relative_to(ROOT / "configs")) for p in SHIPPED_YAML if p.is_relative_to(ROOT / "configs")}
    assert any(n.startswith("ablations/") for n in names) and any(n.startswith("study/") for n in names)


def test_train_epochs_flag_zero_names_the_flag(tmp_path, capsys):
    rc, err = run_cli(["train", str(tmp_path / "no_data"), "--out", str(tmp_path / "run"), "--epochs", "0"], capsys)
    _one_line(rc, err, ["--epochs", "0"])
    assert not (tmp_path / "run").exists()
