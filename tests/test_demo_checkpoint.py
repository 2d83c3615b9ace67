"""The CRUNet-MR shipped for the demo loads and reconstructs unseen data better than zero-filling."""

import torch

from cinerecon.cli import build_parser
from cinerecon.data.simulate import SimConfig, simulate_cine
from cinerecon.demo import SHIPPED_CHECKPOINT
from cinerecon.evaluate.metrics import series_metrics
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.operators import SenseOp
from cinerecon.train.checkpoints import load_model


def test_pretrained_flag_points_at_the_shipped_file():
    args = build_parser().parse_args(["demo", "--pretrained"])
    assert args.checkpoint == SHIPPED_CHECKPOINT and SHIPPED_CHECKPOINT.is_file()


def test_shipped_checkpoint_beats_zero_filling_on_unseen_subject():
    model, cfg = load_model(SHIPPED_CHECKPOINT)
    assert cfg["model"]["name"] == "crunet"
    s = simulate_cine(SimConfig(frames=8, coils=8, size=(48, 40), seed=987))  # other seed, size, T
    mask = make_mask(MaskSpec("equispaced_acs", 8, 8), 8, 40, seed=1)[None]
    k = s.kspace[None] * mask
    with torch.no_grad():
        recon = model(k, mask, s.maps[None])[0]
    zf = SenseOp(s.maps[None], mask).adjoint(k)[0]
    p_model = float(series_metrics(recon, s.target, "paper").psnr)
    p_zf = float(series_metrics(zf, s.target, "paper").psnr)
    assert p_model > p_zf + 2.0, (p_model, p_zf)
