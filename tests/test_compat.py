"""Authors' checkpoints: layouts recognised, and files matching no known layout refused in one line."""

import pytest
import torch

from cinerecon.errors import DataError
from cinerecon.models import build_model
from cinerecon.models.compat import (authors_layout, load_authors_checkpoint, load_authors_state_dict,
                                     to_authors_state_dict, unwrap_state_dict)

PROMPTMR = dict(preset="original", num_cascades=1, n_feat0=4, feature_dim=(4, 4, 4), prompt_dim=(2, 2, 2),
                sens_n_feat0=4, sens_feature_dim=(4, 4, 4), sens_prompt_dim=(2, 2, 2), len_prompt=(2, 2, 2),
                prompt_size=(4, 2, 1), n_enc_cab=(1, 1, 1), n_dec_cab=(1, 1, 1), n_skip_cab=(1, 1, 1),
                n_bottleneck_cab=1)
MODELS = {
    "crunet": dict(chans=4, cascades=2),
    "crnn": dict(preset="original", nf=4, layers=4, cascades=3),
    "promptmr": PROMPTMR,
}


def _model(name, seed=0):
    torch.manual_seed(seed)
    return build_model(name, **MODELS[name])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_authors_layout_recognised_and_rebuilt_from_file(name, tmp_path):
    model = _model(name)
    sd = to_authors_state_dict(model)
    assert authors_layout(sd) == name and authors_layout(model.state_dict()) is None
    path = tmp_path / f"{name}.pth"
    torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    loaded = load_authors_checkpoint(path, **({"cascades": 3} if name == "crnn" else {}))
    assert type(loaded) is type(model)
    for (k, v), v2 in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v, v2), k


@pytest.mark.parametrize("name", sorted(MODELS))
def test_own_layout_loads(name):
    model = _model(name, seed=1)
    other = load_authors_state_dict(_model(name, seed=2), model.state_dict())
    for (k, v), v2 in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(v, v2), k


def _message(model, sd, path):
    torch.save(sd, path)
    with pytest.raises(DataError) as e:
        load_authors_state_dict(model, torch.load(path), source=str(path))
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


@pytest.mark.parametrize("name,key", [("crunet", "cascades.1.conv.weight"), ("crnn", "conv2_h.weight"),
                                      ("promptmr", "cascades.0.model.unet.enc_level2.down.weight")])
def test_wrong_shape_refused_naming_file_key_and_both_shapes(name, key, tmp_path):
    sd = to_authors_state_dict(_model(name))
    want = tuple(sd[key].shape)
    sd[key] = torch.zeros(want[0] + 1, *want[1:])
    msg = _message(_model(name), sd, tmp_path / "weights.pt")
    assert f"{key!r}" in msg and str((want[0] + 1, *want[1:])) in msg and str(want) in msg


def test_missing_and_unexpected_keys_refused(tmp_path):
    sd = to_authors_state_dict(_model("crnn"))
    shape = tuple(sd.pop("conv1_x.bias").shape)
    msg = _message(_model("crnn"), sd, tmp_path / "fewer.pt")
    assert "'conv1_x.bias'" in msg and "missing" in msg and str(shape) in msg
    sd = to_authors_state_dict(_model("crnn"))
    sd["conv9_x.weight"] = torch.zeros(2, 3)
    msg = _message(_model("crnn"), sd, tmp_path / "more.pt")
    assert "'conv9_x.weight'" in msg and "(2, 3)" in msg and "not in the model" in msg


def test_other_models_weights_refused(tmp_path):
    crnn = to_authors_state_dict(_model("crnn"))
    msg = _message(_model("promptmr"), crnn, tmp_path / "crnn.pth")
    assert "first mismatching key" in msg and "missing" in msg


def test_unknown_layout_refused_by_path(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(3, 4), "fc.bias": torch.zeros(3)}, path)
    with pytest.raises(DataError, match=r"resnet\.pth.*no known authors' layout.*'fc\.weight'.*\(3, 4\)"):
        load_authors_checkpoint(path)


def test_lightning_prefix_and_loss_dropped():
    sd = {"promptmr.cascades.0.dc_weight": torch.ones(1), "loss.w": torch.ones(3)}
    assert set(unwrap_state_dict({"state_dict": sd})) == {"cascades.0.dc_weight", "loss.w"}
    model = _model("promptmr")
    lightning = {"promptmr." + k: v for k, v in to_authors_state_dict(model).items()}
    lightning["loss.w"] = torch.ones(1, 1, 7, 7)
    loaded = load_authors_state_dict(_model("promptmr", seed=5), {"state_dict": lightning})
    assert torch.equal(loaded.state_dict()["dc.0.weight"], model.state_dict()["dc.0.weight"])
