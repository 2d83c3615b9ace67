"""Every model on measured data without signal (all-zero k-space, mask or maps).

Through the shared wrapper's per-sample normalisation such a sample used to become NaN
(0 / 0). It must give the zero image, the limit of ``model(a * k)`` as ``a -> 0``, and must
not change the other samples of its batch.
"""

import pytest
import torch

from cinerecon.masks import MaskSpec, make_mask
from cinerecon.models import build_model
from cinerecon.models.unrolled import denormalise, normalise

BUILDS = [("crunet", {"chans": 4, "cascades": 2}), ("crunet", {"chans": 4, "cascades": 2, "initial_image": "lplus_s"}),
          ("crnn", {}), ("crnn", {"preset": "original"}), ("unet3d", {}), ("cinenet", {}),
          ("promptmr", {}), ("promptmr", {"preset": "original", "num_cascades": 1, "n_feat0": 4,
                                         "feature_dim": [6, 8, 10], "prompt_dim": [2, 4, 6],
                                         "sens_n_feat0": 2, "sens_feature_dim": [3, 4, 5],
                                         "sens_prompt_dim": [1, 2, 3]})]


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(2, 3, 5, 16, 16, dtype=torch.complex64, generator=g)
    maps = torch.randn(2, 3, 1, 16, 16, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().square().sum(1, keepdim=True).sqrt()
    mask = make_mask(MaskSpec("equispaced_acs", 4, 4), 5, 16)[None].expand(2, -1, -1, -1, -1)
    return k, mask, maps


@pytest.mark.parametrize("name,kw", BUILDS, ids=[f"{n}-{kw.get('preset', kw.get('initial_image', ''))}" for n, kw in BUILDS])
def test_sample_without_signal_is_finite_and_leaves_its_batch_alone(name, kw):
    try:
        model = build_model(name, **kw).eval()
    except TypeError:
        pytest.skip(f"{name} {kw}: preset keywords differ")
    k, mask, maps = _inputs()
    with torch.no_grad():
        ref = model(k, mask, maps)
        k0 = k.clone()
        k0[1] = 0
        out = model(k0, mask, maps)
    assert torch.isfinite(torch.view_as_real(out) if out.is_complex() else out).all()
    torch.testing.assert_close(out[0], ref[0], rtol=1e-5, atol=1e-6)
    if kw.get("preset") != "original":  # the originals without normalisation map 0 to their biases
        assert out[1].abs().max() == 0


def test_normalise_constant_sample_round_trips():
    x = torch.zeros(2, 3, 4, 4, dtype=torch.complex64)
    x[0] = torch.randn(3, 4, 4, dtype=torch.complex64)
    x[1] = 2 + 2j  # real and imaginary parts equal everywhere: std 0
    xn, stats = normalise(x)
    assert torch.isfinite(torch.view_as_real(xn)).all() and xn[1].abs().max() == 0
    assert float(stats.std[1]) == 0
    y = torch.randn_like(xn)  # whatever a network makes of it
    back = denormalise(y, stats)
    torch.testing.assert_close(back[1], x[1])
    torch.testing.assert_close(denormalise(xn, stats)[0], x[0], rtol=1e-5, atol=1e-6)
