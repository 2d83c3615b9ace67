"""The paper-size baseline configs build the Table 1 rows, and the CLI loads the authors' baseline weights.

Configs: ``configs/{crnn,promptmr,cinenet}.yaml`` resolve (through ``load_config``) to the
presets README's Table 1 names: CRNN-MRI original and unshared (1,488,970 parameters),
PromptMR original with 5 cascades (30,496,134, counted on the meta device: nothing is
allocated), CineNet with complex-valued convolutions.

Weights: ``load_model`` (what ``cinerecon reconstruct --checkpoint`` and ``evaluate`` use)
accepts the authors' CRUNet-MR, CRNN-MRI and PromptMR files (PromptMR also as a Lightning
checkpoint), builds the authors' preset, and names the file, the first mismatching key and
both shapes when a file does not fit.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from cinerecon.cli import main
from cinerecon.errors import DataError
from cinerecon.models import build_model
from cinerecon.models.compat import to_authors_state_dict
from cinerecon.train.checkpoints import load_model
from cinerecon.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
CRNN_GOLDEN = ROOT.parent / "shared" / "reference" / "crnn_golden.pt"

# small PromptMR "original" widths (as tests/test_compat.py): cheap to build
PROMPTMR_SMALL = dict(preset="original", num_cascades=2, n_feat0=4, feature_dim=(4, 4, 4), prompt_dim=(2, 2, 2),
                      sens_n_feat0=4, sens_feature_dim=(4, 4, 4), sens_prompt_dim=(2, 2, 2), len_prompt=(2, 2, 2),
                      prompt_size=(4, 2, 1), n_enc_cab=(1, 1, 1), n_dec_cab=(1, 1, 1), n_skip_cab=(1, 1, 1),
                      n_bottleneck_cab=1)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------ configs


def test_crnn_config_is_the_original_unshared_row():
    cfg = load_config(CONFIGS / "crnn.yaml")
    assert cfg.model.name == "crnn" and cfg.model.kwargs == {"preset": "original", "share_weights": False}
    model = build_model(cfg.model.name, **cfg.model.kwargs)
    c = model.config
    assert (c.share_weights, c.normalise, c.zero_state_bias, c.nf, c.layers, c.cascades) == (False, False, True,
                                                                                              64, 5, 5)
    assert _params(model) == 1_488_970
    assert build_model("crnn").config.share_weights  # the builder's default preset is unchanged (ours, shared)


def test_promptmr_config_is_the_original_30m_row():
    cfg = load_config(CONFIGS / "promptmr.yaml")
    assert cfg.model.name == "promptmr" and cfg.model.kwargs == {"preset": "original", "num_cascades": 5}
    from cinerecon.models.promptmr import PromptMR, PromptMROriginal

    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        model = build_model(cfg.model.name, **cfg.model.kwargs)
    assert type(model) is PromptMROriginal and model.config.num_cascades == 5
    assert _params(model) == 30_496_134
    with torch.device("meta"):
        assert type(build_model("promptmr")) is PromptMR  # default preset unchanged (our re-design)


def test_cinenet_config_uses_complex_convolutions():
    cfg = load_config(CONFIGS / "cinenet.yaml")
    assert cfg.model.name == "cinenet" and cfg.model.kwargs == {"complex_conv": True}
    with torch.device("meta"):
        assert build_model(cfg.model.name, **cfg.model.kwargs).config.complex_conv
        assert not build_model("cinenet").config.complex_conv  # default unchanged


@pytest.mark.parametrize("name", ["crnn", "promptmr", "cinenet"])
def test_baseline_configs_share_crunet_training_and_overrides_still_apply(name):
    base = load_config(CONFIGS / "crunet_paper.yaml")
    row = load_config(CONFIGS / f"{name}.yaml").model.kwargs
    key = "num_cascades" if name == "promptmr" else "cascades"
    cfg = load_config(CONFIGS / f"{name}.yaml", [f"model.kwargs.{key}=2"])
    assert (cfg.optim, cfg.loss, cfg.data, cfg.epochs) == (base.optim, base.loss, base.data, base.epochs)
    assert cfg.model.kwargs == {**row, key: 2}  # the override adds to the row's preset, not replaces it


# ------------------------------------------------------------------ authors' weights through load_model


def _small_h5(path: Path, c=3, t=6, h=16, w=16) -> None:
    """A fully sampled slice with an R04 mask (centre columns sampled: an ACS block)."""
    from cinerecon.data.h5 import write_h5
    from cinerecon.data.sample import CineSample, SampleMeta
    from cinerecon.operators import SenseOp

    g = torch.Generator().manual_seed(0)
    x = torch.randn(t, h, w, dtype=torch.complex64, generator=g)
    s = torch.randn(c, 1, h, w, dtype=torch.complex64, generator=g)
    s = s / (s.abs() ** 2).sum(0, keepdim=True).sqrt()
    k = SenseOp(s[None]).expand(x[None])[0]
    line = torch.zeros(w)
    line[::4] = 1
    line[w // 2 - 2:w // 2 + 2] = 1
    write_h5(path, CineSample(k, torch.ones(1, 1, 1, w), s, x, SampleMeta(name=path.stem, view="sax")),
             {"R04": line[None, None, None]})


def _reconstruct(h5: Path, checkpoint: Path, out: Path) -> np.ndarray:
    assert main(["reconstruct", str(h5), "--method", "model", "--checkpoint", str(checkpoint), "--accel", "R04",
                 "--out", str(out), "--formats", "h5", "--quiet", "--device", "cpu"]) == 0
    files = sorted(out.rglob("*.h5"))
    assert len(files) == 1, files
    with h5py.File(files[0], "r") as f:
        assert f.attrs["checkpoint"] == str(checkpoint)
        return f["recon"][()]


@pytest.fixture(scope="module")
def crnn_golden():
    if not CRNN_GOLDEN.is_file():
        pytest.skip(f"{CRNN_GOLDEN} not present")
    return torch.load(CRNN_GOLDEN, map_location="cpu", weights_only=True)


def test_published_crnn_weights_load_as_original_preset_and_reconstruct(crnn_golden, tmp_path):
    path = tmp_path / "crnn_mri_d5_c5.pth"  # the published file: a plain state dict in the authors' names
    torch.save(crnn_golden["state_dict"], path)
    model, cfg = load_model(path)
    assert cfg["model"]["name"] == "crnn" and model.source_checkpoint == str(path)
    kw = cfg["model"]["kwargs"]
    assert (kw["normalise"], kw["zero_state_bias"], kw["share_weights"], kw["cascades"]) == (False, True, True, 5)
    assert _params(model) == 297_794
    k = crnn_golden["kspace"][None]  # (1, 1, T, H, W), one coil, all-ones maps
    with torch.no_grad():
        out = model(k, crnn_golden["mask"].float()[None, None], torch.ones(1, 1, 1, *k.shape[-2:],
                                                                           dtype=torch.complex64))[0]
    expected = crnn_golden["expected"]
    assert float((out - expected).norm() / expected.norm()) < 1e-4
    # the CLI path: cinerecon reconstruct --method model --checkpoint crnn_mri_d5_c5.pth
    _small_h5(tmp_path / "s0.h5")
    r = _reconstruct(tmp_path / "s0.h5", path, tmp_path / "out")
    assert r.shape == (6, 16, 16) and np.isfinite(r).all()


def test_small_crnn_authors_file_loads_and_wrong_shape_names_file_key_and_shapes(tmp_path):
    torch.manual_seed(0)
    model = build_model("crnn", preset="original", nf=4, layers=4, cascades=1)
    sd = to_authors_state_dict(model)
    path = tmp_path / "crnn_small.pth"
    torch.save(sd, path)
    loaded, cfg = load_model(path)
    assert cfg["model"]["name"] == "crnn" and cfg["model"]["kwargs"]["nf"] == 4
    assert cfg["model"]["kwargs"]["layers"] == 4 and not cfg["model"]["kwargs"]["normalise"]
    assert torch.equal(loaded.state_dict()["cascades.0.out.weight"], model.state_dict()["cascades.0.out.weight"])
    _assert_wrong_shape_refused(sd, "conv2_h.weight", tmp_path / "crnn_bad.pth")


def _assert_wrong_shape_refused(sd: dict, key: str, bad: Path) -> None:
    """``sd`` with ``key`` one row too long, saved at ``bad``, is refused naming file, key and shapes."""
    want = tuple(sd[key].shape)
    sd[key] = torch.zeros(want[0] + 1, *want[1:])
    torch.save(sd, bad)
    with pytest.raises(DataError) as e:
        load_model(bad)
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg and repr(key) in msg
    assert str((want[0] + 1, *want[1:])) in msg and str(want) in msg


def test_crunet_authors_file_with_wrong_shape_names_the_file(tmp_path):
    torch.manual_seed(0)
    sd = to_authors_state_dict(build_model("crunet", chans=4, cascades=2))
    _assert_wrong_shape_refused(sd, "cascades.1.conv.weight", tmp_path / "crunet_bad.pth")


def test_promptmr_lightning_checkpoint_loads_through_the_cli(tmp_path):
    torch.manual_seed(0)
    model = build_model("promptmr", **PROMPTMR_SMALL)
    sd = {"promptmr." + k: v for k, v in to_authors_state_dict(model).items()}
    sd["loss.w"] = torch.ones(1, 1, 7, 7)  # Lightning's SSIM loss buffer: dropped
    path = tmp_path / "promptmr-epoch=1.ckpt"
    torch.save({"epoch": 1, "global_step": 10, "pytorch-lightning_version": "2.1.0", "state_dict": sd,
                "hyper_parameters": {"num_cascades": 2, "lr": 2e-4}}, path)
    loaded, cfg = load_model(path)
    assert cfg["model"]["name"] == "promptmr" and cfg["model"]["kwargs"]["preset"] == "original"
    assert cfg["model"]["kwargs"]["num_cascades"] == 2 and type(loaded) is type(model)
    for (k, v), v2 in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v, v2), k
    _small_h5(tmp_path / "s0.h5")
    r = _reconstruct(tmp_path / "s0.h5", path, tmp_path / "out")
    assert r.shape == (6, 16, 16) and np.isfinite(r).all()
    # a damaged tensor: the file, the key and both shapes are named
    key = "promptmr.cascades.1.model.unet.enc_level2.down.weight"  # widths are read from cascade 0
    want = tuple(sd[key].shape)
    sd[key] = torch.zeros(want[0] + 1, *want[1:])
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": sd}, bad)
    with pytest.raises(DataError) as e:
        load_model(bad)
    msg = str(e.value)
    assert str(bad) in msg and repr(key[len("promptmr."):]) in msg
    assert str(want) in msg and str((want[0] + 1, *want[1:])) in msg
    # a tensor whose shape the widths are read from, damaged to 0-dim or 1-dim: one clear error
    for dims in ((), (3,)):
        sd2 = dict(sd)
        key0 = next(k for k in sd2 if k.startswith("promptmr.cascades.0.") and sd2[k].dim() == 4)
        sd2[key0] = torch.zeros(dims)
        torch.save({"state_dict": sd2}, bad)
        with pytest.raises(DataError) as e:
            load_model(bad)
        assert str(bad) in str(e.value)


def test_unknown_weights_refused_naming_the_file_and_every_layout(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(3, 4)}, path)
    with pytest.raises(DataError) as e:
        load_model(path)
    msg = str(e.value)
    assert str(path) in msg and all(n in msg for n in ("CRUNet-MR", "CRNN-MRI", "PromptMR"))
