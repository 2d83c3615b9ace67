"""Models take complex128 data (computed in their weights' precision, returned in the input's) and refuse real k-space."""

import pytest
import torch

from cinerecon.errors import DataError
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.models import build_model
from phantoms import cine_phantom

MODELS = [
    ("crunet", dict(chans=4, cascades=2)),
    ("crnn", dict()),
    ("unet3d", dict()),
    ("cinenet", dict()),
    ("promptmr", dict()),
    ("promptmr", dict(preset="original", num_cascades=1, n_feat0=4, feature_dim=[6, 8, 10], prompt_dim=[2, 4, 6],
                      sens_n_feat0=2, sens_feature_dim=[3, 4, 5], sens_prompt_dim=[1, 2, 3])),
]


@pytest.mark.parametrize("name,kwargs", MODELS, ids=[m[0] + ("_original" if "preset" in m[1] else "") for m in MODELS])
def test_complex128_input_matches_complex64_and_keeps_its_precision(name, kwargs):
    full, maps, _ = cine_phantom(coils=3, frames=5, size=(16, 24), seed=1, noise=0.02)
    mask = make_mask(MaskSpec("equispaced_acs", 4, 8), 5, 24, seed=0)[None]
    torch.manual_seed(0)
    model = build_model(name, **kwargs).eval()
    k = full * mask
    with torch.no_grad():
        ref = model(k, mask, maps)
        got = model(k.to(torch.complex128), mask.double(), maps.to(torch.complex128))
    assert got.dtype == (torch.complex128 if ref.is_complex() else torch.float64)
    torch.testing.assert_close(got, ref.to(got.dtype), rtol=0, atol=1e-6 * float(ref.abs().max()))


def test_real_kspace_is_refused_with_its_shape():
    model = build_model("crunet", chans=4, cascades=1).eval()
    full, maps, _ = cine_phantom(coils=2, frames=3, size=(8, 8))
    with pytest.raises(DataError, match=r"complex.*\(1, 2, 3, 8, 8\).*float32"):
        model(full.abs(), torch.ones(1, 1, 3, 1, 8), maps)
