"""``cinerecon demo``: compare CRUNet-MR with classical methods on a held-out series.

With ``--pretrained`` (what ``make demo`` runs) the shipped CRUNet-MR reconstructs the real
series held out from its training (``../shared/data/real_cine_extra/rat_sax_8fr.npz`` when
present; simulated cines otherwise). Without weights the demo simulates cines and trains a
small CRUNet-MR for a few minutes. Writes OUT/demo_table.md and OUT/demo_figure.png (and
OUT/data, OUT/run when simulating / training) and prints the table. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..demo import DEFAULT_REAL_SERIES, SHIPPED_CHECKPOINT, DemoConfig, DemoResult, run_demo
from . import check_device
from .simulate import check_memory

_D = DemoConfig()


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``demo`` subcommand."""
    p = subparsers.add_parser("demo", help="end-to-end demo: CRUNet-MR (shipped, or trained briefly on simulated "
                                           "data) against zero-filled, CG-SENSE, GRAPPA and L+S",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=_D.out, help="output folder (default: %(default)s)")
    p.add_argument("--train-minutes", type=float, default=_D.train_minutes,
                   help="wall-clock training budget in minutes (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=_D.epochs,
                   help="train exactly this many epochs instead of filling the budget")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", type=Path, default=_D.checkpoint,
                         help="use these CRUNet-MR weights (our checkpoint or the authors') and skip training")
    weights.add_argument("--pretrained", dest="checkpoint", action="store_const", const=SHIPPED_CHECKPOINT,
                         help="use the CRUNet-MR shipped with cinerecon (trained on real anatomy, see "
                              "src/cinerecon/assets/crunet_real.md) and skip training")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--real-series", type=Path,
                        help="with weights: reconstruct this real magnitude series (.npz with 'frames' (T, H, W)); "
                             f"default {DEFAULT_REAL_SERIES} when it exists")
    source.add_argument("--phantoms", action="store_true",
                        help="with weights: reconstruct a simulated series even when the real one exists")
    p.add_argument("--subjects", type=int, default=_D.subjects, help="simulated subjects (default: %(default)s)")
    p.add_argument("--frames", type=int, default=_D.frames, help="cardiac phases T (default: %(default)s)")
    p.add_argument("--coils", type=int, default=_D.coils, help="coils C (default: %(default)s)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=list(_D.size),
                   help="image size, W = phase encoding (default: %(default)s)")
    p.add_argument("--accel", type=int, default=_D.accel, help="acceleration R (default: %(default)s)")
    p.add_argument("--chans", type=int, default=_D.chans, help="CRUNet-MR channels (default: %(default)s)")
    p.add_argument("--cascades", type=int, default=_D.cascades, help="CRUNet-MR cascades (default: %(default)s)")
    p.add_argument("--lr", type=float, default=_D.lr, help="AdamW learning rate, constant (default: %(default)s)")
    p.add_argument("--frames-window", type=int, default=_D.frames_window,
                   help="train on random windows of this many adjacent frames; 0: whole series "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=_D.seed, help="seed (default: %(default)s)")
    p.add_argument("--device", default=_D.device, help="auto, cpu or cuda[:N] (default: %(default)s)")
    p.add_argument("--error-gain", type=float, default=_D.error_gain,
                   help="magnification of the error maps (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no training progress bars")
    p.add_argument("--overwrite", action="store_true", help="replace the demo's previous outputs in --out")
    return p


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    """The :class:`DemoConfig` of parsed arguments."""
    real = args.real_series
    if real is None and args.checkpoint is not None and not args.phantoms and DEFAULT_REAL_SERIES.is_file():
        real = DEFAULT_REAL_SERIES
    return DemoConfig(real_series=real, out=args.out, subjects=args.subjects, frames=args.frames, coils=args.coils,
                      size=(args.size[0], args.size[1]), accel=args.accel, seed=args.seed, chans=args.chans,
                      cascades=args.cascades, train_minutes=args.train_minutes, epochs=args.epochs, lr=args.lr,
                      frames_window=args.frames_window or None, checkpoint=args.checkpoint, device=args.device,
                      error_gain=args.error_gain, overwrite=args.overwrite, progress=not args.no_progress)


def report(res: DemoResult) -> str:
    """What the demo prints after the table: where everything went."""
    tr = res.training
    lines = [f"effective acceleration: {res.effective_accel:.2f} (nominal R={res.accel}, {res.acs} ACS lines)",
             f"data:       {res.data_dir} (test series {res.test_file.name})"]
    if tr.trained:
        lines.append(f"training:   {tr.run_dir} ({tr.epochs} epochs, {tr.steps} steps, {tr.seconds:.0f} s)")
    lines += [f"checkpoint: {tr.checkpoint}",
              f"table:      {res.table_path}",
              f"figure:     {res.figure_path}"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the table and the output paths."""
    cfg = config_from_args(args)  # checks the flags' values
    if args.device != "auto":
        check_device(args.device)
    if cfg.real_series is None:  # the demo simulates: refuse sizes that cannot fit before writing anything
        check_memory(cfg.frames, cfg.coils, list(cfg.size))
    res = run_demo(cfg, log=lambda msg: print(msg, flush=True))
    print(res.table)
    print(report(res))
    return 0
