"""The shipped CRUNet-MR: loads in eval mode, runs on any shape and mask, beats CG-SENSE on unseen data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cinerecon.classical.cg_sense import cg_sense
from cinerecon.cli import build_parser
from cinerecon.data.simulate import SimConfig, real_cine_to_sample, simulate_cine
from cinerecon.demo import SHIPPED_CHECKPOINT
from cinerecon.errors import ConfigError
from cinerecon.evaluate.metrics import series_metrics
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.models import PRETRAINED, load_pretrained
from cinerecon.operators import SenseOp

HELD_OUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_cine_extra" / "rat_sax_8fr.npz"


@pytest.fixture(scope="module")
def model():
    return load_pretrained("crunet")


def test_shipped_model_is_the_default_everywhere(model):
    assert not model.training
    assert PRETRAINED["crunet"] == SHIPPED_CHECKPOINT and SHIPPED_CHECKPOINT.is_file()
    assert build_parser().parse_args(["demo", "--pretrained"]).checkpoint == SHIPPED_CHECKPOINT
    assert SHIPPED_CHECKPOINT.stat().st_size < 8 * 2 ** 20  # a few MB
    assert SHIPPED_CHECKPOINT.with_suffix(".md").is_file()  # how it was trained
    with pytest.raises(ConfigError):
        load_pretrained("no_such_model")


@pytest.mark.parametrize("kind, coils, shape", [("time_varying", 5, (3, 37, 30)), ("uniform", 13, (4, 24, 33))])
def test_runs_on_odd_shapes_coil_counts_and_masks_without_acs(model, kind, coils, shape):
    t, h, w = shape
    s = simulate_cine(SimConfig(frames=t, coils=coils, size=(h, w), seed=3))
    mask = make_mask(MaskSpec(kind, 4, 0), t, w, seed=0)[None]
    with torch.no_grad():
        out = model(s.kspace[None] * mask, mask, s.maps[None])
    assert out.shape == (1, t, h, w) and out.is_complex() and torch.isfinite(torch.view_as_real(out)).all()


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(series_metrics(x, y, "global", with_haarpsi=False).psnr)


def test_beats_zero_filling_on_an_unseen_phantom(model):
    s = simulate_cine(SimConfig(frames=8, coils=8, size=(48, 40), seed=987))
    mask = make_mask(MaskSpec("equispaced_acs", 8, 8), 8, 40, seed=1)[None]
    k = s.kspace[None] * mask
    with torch.no_grad():
        recon = model(k, mask, s.maps[None])[0]
    zf = SenseOp(s.maps[None], mask).adjoint(k)[0]
    assert _psnr(recon, s.target) > _psnr(zf, s.target) + 2.0


def _held_out_margin(model, spec: MaskSpec, method, sample_seed: int, mask_seed: int) -> float:
    """PSNR of the shipped model minus that of ``method`` on the held-out series (96 x 96, 8 frames, 10 coils)."""
    s = real_cine_to_sample(HELD_OUT, coils=10, snr_db=35.0, seed=sample_seed, size=(96, 96), n_frames=8)
    mask = make_mask(spec, 8, 96, seed=mask_seed)[None]
    k = s.kspace[None] * mask
    with torch.no_grad():
        recon = model(k, mask, s.maps[None])[0]
    ref = method(k, mask, s.maps[None])[0]
    return _psnr(recon, s.target) - _psnr(ref, s.target)


@pytest.mark.skipif(not HELD_OUT.is_file(), reason="../shared real cine series absent")
def test_beats_cg_sense_on_the_held_out_real_series(model):
    assert _held_out_margin(model, MaskSpec("equispaced_acs", 8, 18), cg_sense, 0, 2) > 0.3


@pytest.mark.skipif(not HELD_OUT.is_file(), reason="../shared real cine series absent")
def test_beats_lplus_s_on_k_t_random_lines_of_the_held_out_series(model):
    """k-t random lines (new lines every frame around the ACS block, like CMRxRecon2024's ktGaussian):
    where L+S is strongest, the shipped model (main weights, L+S start) still improves on its start."""
    from cinerecon.classical.lowrank_sparse import lplus_s

    assert _held_out_margin(model, MaskSpec("random_acs", 8, 18), lplus_s, 1, 3) > 0.2
