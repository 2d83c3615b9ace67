"""Every model and classical method refuses bad inputs in one DataError (cinerecon.inputs), not deep in torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cinerecon.classical import CLASSICAL
from cinerecon.errors import DataError
from cinerecon.models import build_model

B, C, T, H, W = 2, 3, 3, 12, 14


def _inputs():
    g = torch.Generator().manual_seed(0)
    k = torch.randn(B, C, T, H, W, dtype=torch.complex64, generator=g)
    s = torch.randn(B, C, 1, H, W, dtype=torch.complex64, generator=g)
    s = s / s.abs().square().sum(1, keepdim=True).sqrt()
    m = torch.zeros(1, 1, 1, 1, W)
    m[..., ::2] = 1
    m[..., 5:9] = 1
    return k * m, m, s


METHODS = {
    "crunet": lambda: build_model("crunet", chans=4, cascades=1).eval(),
    "crnn_original": lambda: build_model("crnn", preset="original", nf=4, cascades=1).eval(),
    "unet3d": lambda: build_model("unet3d", chans=4, cascades=1).eval(),
    "cinenet": lambda: build_model("cinenet", chans=4, cascades=1).eval(),
    "view_sharing": lambda: CLASSICAL["view_sharing"],
    "lplus_s": lambda: CLASSICAL["lplus_s"],
}


def _bad_cases():
    k, m, s = _inputs()
    nan = k.clone()
    nan[1, 0, 0, 0, 0] = float("nan")
    return {
        "one series without its batch axis": ((k[0], m.reshape(W), s[0]), r"batch axis"),
        "maps with another coil count": ((k, m, s[:, :2]), r"maps shape \(2, 2, 1, 12, 14\) does not match"),
        "mask of another width": ((k, m[..., :13], s), r"mask shape .* does not broadcast"),
        "no mask": ((k, None, s), r"mask must be"),
        "no maps": ((k, m, None), r"maps .* needed"),
        "numpy k-space": ((k.numpy(), m, s), r"numpy.ndarray"),
        "an empty frame axis": ((k[:, :, :0], m, s), r"empty axis"),
        "NaN in k-space": ((nan, m, s), r"NaN or Inf \(batch item 1\)"),
        "a complex mask": ((k, m.to(torch.complex64), s), r"mask must be"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
@pytest.mark.parametrize("method", list(METHODS))
def test_bad_inputs_are_one_data_error(method, case):
    args, pattern = _bad_cases()[case]
    fn = METHODS[method]()
    with torch.no_grad(), pytest.raises(DataError, match=pattern):
        fn(*args)


def test_promptmr_original_takes_a_line_mask_of_shape_w():
    k, m, s = _inputs()
    model = build_model("promptmr", preset="original", num_cascades=1, n_feat0=4, feature_dim=[6, 8, 10],
                        prompt_dim=[2, 4, 4], sens_n_feat0=4, sens_feature_dim=[6, 8, 10],
                        sens_prompt_dim=[2, 4, 4], len_prompt=[3, 3, 3], prompt_size=[8, 4, 2],
                        n_enc_cab=[1, 1, 1], n_dec_cab=[1, 1, 1], n_skip_cab=[1, 1, 1], n_bottleneck_cab=1).eval()
    with torch.no_grad():
        a = model(k, m.reshape(W), s)
        b = model(k, m, s)
    assert a.shape == (B, T, H, W) and torch.equal(a, b)


def test_boolean_masks_and_good_inputs_pass():
    k, m, s = _inputs()
    model = METHODS["crunet"]()
    with torch.no_grad():
        assert torch.isfinite(model(k, m.bool(), s)).all()
    assert np.isfinite(CLASSICAL["view_sharing"](k, m, s).abs().numpy()).all()


@pytest.mark.parametrize("kw", [{"initial_image": "lplus_s", "uncalibrated_weights": True},
                                {"initial_image": "lplus_s"}, {"initial_image": "lplus_s_kt"}])
def test_the_recipe_configurations_size_on_the_meta_device(kw):
    """Shapes without values (to size a model): the per-item routing cannot read the mask there."""
    with torch.device("meta"):
        model = build_model("crunet", chans=4, cascades=2, **kw)
        out = model(torch.zeros(B, C, T, H, W, dtype=torch.complex64), torch.ones(1, 1, 1, 1, W),
                    torch.zeros(B, C, 1, H, W, dtype=torch.complex64))
    assert out.shape == (B, T, H, W) and out.device.type == "meta"
