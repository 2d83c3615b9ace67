from pathlib import Path

import pytest
import yaml

from cinerecon.errors import ConfigError
from cinerecon.masks import MaskSpec
from cinerecon.train.config import (PRESETS, TrainConfig, dump_yaml, from_dict, load_config, to_dict,
                                    with_overrides)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL_YAML = sorted(CONFIGS.rglob("*.yaml"))


def test_defaults_are_the_papers_schedule_and_loss():
    cfg = load_config()
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.warmup_epochs, cfg.optim.min_lr) == (3e-4, 0.01, 10, 1e-4)
    assert (cfg.loss.w_kspace, cfg.loss.w_image, cfg.loss.w_ssim) == (0.25, 0.5, 1.0)
    assert cfg.data.mask_key == "R08" and cfg.data.frames_window is None


def test_overrides_are_typed_by_field():
    cfg = load_config(None, ["optim.lr=1e-4", "epochs=7", "amp=true", "data.frames_window=5",
                             "data.mask_key=null", "model.kwargs.chans=32", "model.kwargs.dilations=[1,3,5]",
                             "optim.betas=[0.8, 0.9]", "data.masks=[{kind: uniform, accel: 4}]",
                             "optim.schedule_per=step"])
    assert isinstance(cfg.optim.lr, float) and cfg.optim.lr == pytest.approx(1e-4)  # YAML reads 1e-4 as a string
    assert cfg.epochs == 7 and cfg.amp is True and cfg.data.frames_window == 5 and cfg.data.mask_key is None
    assert cfg.model.kwargs == {"chans": 32, "dilations": [1, 3, 5]}
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.data.masks == [MaskSpec("uniform", 4)]
    assert cfg.optim.schedule_per == "step"


@pytest.mark.parametrize("bad, word", [("optim.lrr=1", "optim.lrr"), ("nope=1", "nope"), ("epochs=abc", "epochs"),
                                       ("optim.schedule_per=month", "schedule_per"), ("epochs", "key.sub=value"),
                                       ("data.masks=[{kind: spiral}]", "spiral"), ("optim.lr.x=1", "optim.lr")])
def test_bad_overrides_raise_config_error_naming_the_key(bad, word):
    with pytest.raises(ConfigError, match=word.replace(".", r"\.")):
        load_config(None, [bad])


def test_yaml_unknown_key_names_file_and_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 1.0e-3\n  warmup: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*warmup"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_base_chain_preset_and_override_precedence(tmp_path):
    (tmp_path / "base.yaml").write_text("epochs: 5\nmodel: {name: unet3d, kwargs: {chans: 8}}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nmodel: {kwargs: {depth: 2}}\noptim: {lr: 2.0e-4}\n")
    cfg = load_config(tmp_path / "child.yaml", ["epochs=9"])
    assert cfg.epochs == 9 and cfg.model.name == "unet3d" and cfg.model.kwargs == {"chans": 8, "depth": 2}
    assert cfg.optim.lr == pytest.approx(2e-4)
    ft = load_config(None, [], preset="finetune")
    assert (ft.epochs, ft.optim.lr, ft.optim.warmup_epochs, ft.optim.min_lr) == (32, 1e-4, 5, 5e-5)
    # the YAML wins over the preset, overrides over both
    (tmp_path / "ft.yaml").write_text("preset: finetune\noptim: {warmup_epochs: 2}\n")
    cfg = load_config(tmp_path / "ft.yaml", ["optim.min_lr=1e-5"])
    assert (cfg.epochs, cfg.optim.warmup_epochs, cfg.optim.min_lr) == (32, 2, 1e-5)
    with pytest.raises(ConfigError, match="preset"):
        load_config(None, [], preset="nonexistent")


def test_to_dict_round_trip_through_yaml():
    cfg = load_config(None, ["data.masks=[{kind: time_varying_acs, accel: 8}]", "model.kwargs.chans=16",
                             "optim.grad_clip=1.0", "out=runs/x"])
    back = from_dict(yaml.safe_load(dump_yaml(cfg)))
    assert back == cfg
    assert to_dict(with_overrides(cfg, ["seed=3"]))["seed"] == 3 and cfg.seed == 0


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_yaml_is_a_valid_config(path):
    from cinerecon.models import MODELS, build_model

    cfg = load_config(path)
    assert isinstance(cfg, TrainConfig)
    assert cfg.model.name in {"crunet", "unet3d", "crnn", "cinenet", "promptmr"}
    if cfg.model.name in MODELS and cfg.model.name == "crunet":
        build_model(cfg.model.name, **cfg.model.kwargs)  # the kwargs are accepted by the builder


def test_shipped_ablations_and_finetune_state_what_they_claim():
    assert len(ALL_YAML) >= 12
    abl = CONFIGS / "ablations"
    assert load_config(abl / "no_side_branches.yaml").model.kwargs == {"side_branches": False}
    assert load_config(abl / "dilations_135.yaml").model.kwargs == {"dilations": [1, 3, 5]}
    only_l1 = load_config(abl / "loss_image_only_l1.yaml").loss
    assert (only_l1.w_kspace, only_l1.w_ssim, only_l1.image_mse, only_l1.image_l1) == (0, 0, 0, 1)
    ft = load_config(CONFIGS / "finetune.yaml")
    assert (ft.epochs, ft.optim.lr, ft.optim.warmup_epochs, ft.optim.min_lr) == (32, 1e-4, 5, 5e-5)
    assert "finetune" in PRESETS
