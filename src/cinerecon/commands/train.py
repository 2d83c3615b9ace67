"""``cinerecon train``: train a reconstruction model on our HDF5 files.

    cinerecon train DATA_DIR --model crunet --accel 8|KEY --epochs N --out RUN_DIR
                    [--config YAML] [--init CKPT] [--resume] [--batch-size B] [--overwrite]
                    [--time-budget MINUTES] [key=value ...]

Resolution order: dataclass defaults -> preset (``finetune`` with --init) -> YAML ->
the flags above -> ``key=value`` overrides (e.g. ``optim.lr=1e-4 data.frames_window=5``).
With --resume and no --config, RUN_DIR/config.yaml is the base.
Multi-GPU: ``torchrun --nproc_per_node N -m cinerecon.cli train ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shlex
import signal
import sys
from pathlib import Path

from ..errors import ConfigError


def _allow_intermixed(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Let ``key=value`` positionals follow options (``DATA --epochs 3 optim.lr=1e-4``).

    Plain argparse stops filling positionals once an option intervenes; this parser is
    made to parse with :meth:`argparse.ArgumentParser.parse_known_intermixed_args`.
    """
    plain = parser.parse_known_args
    busy = False

    def parse_known_args(args=None, namespace=None):
        nonlocal busy
        if busy:
            return plain(args, namespace)
        busy = True
        try:
            return parser.parse_known_intermixed_args(args, namespace)
        finally:
            busy = False

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``train`` subcommand."""
    p = subparsers.add_parser(
        "train", help="train a reconstruction model (CRUNet-MR and baselines)",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n  cinerecon train data/ --model crunet --accel 8 --epochs 100 --out runs/crunet_r8\n"
               "  cinerecon train data/ --config configs/ablations/no_side_branches.yaml --out runs/abl1\n"
               "  cinerecon train vendorB/ --init runs/crunet_r8/best.pt --out runs/ft  (finetune preset)\n"
               "  cinerecon train cmrx/ --accel ktGaussian8 --init runs/crunet_r8/best.pt --out runs/ft_kt  "
               "(stored mask R08_ktGaussian)\n"
               "  cinerecon train data/ --out runs/crunet_r8 --resume\n"
               "  cinerecon train data/ --model crunet --accel 8 --epochs 100 --time-budget 30 --out runs/r8_30min")
    p.add_argument("data_dir", help="directory of HDF5 files (optional train.txt / val.txt list the split)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. optim.lr=1e-4 model.kwargs.chans=32 data.frames_window=5")
    p.add_argument("--model", help="registered model name (resets model.kwargs when it changes the model)")
    p.add_argument("--accel", metavar="R|KEY",
                   help="stored mask to train on (config key data.mask_key): an acceleration (8 -> R08; with "
                        "data.masks it also sets their R) or a mask key as stored under masks/ (R08tv, "
                        "R08_ktGaussian; CMRxRecon2024 names too: ktGaussian8 -> R08_ktGaussian, Uniform8 -> R08)")
    p.add_argument("--epochs", type=int, help="number of epochs")
    p.add_argument("--out", help="run directory (checkpoints, config.yaml, TensorBoard logs)")
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--init", help="initialise weights from this checkpoint (fine-tuning; fresh optimiser, "
                                  "finetune schedule unless the YAML names a preset)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--batch-size", type=int, help="items per batch (per process)")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty run directory")
    p.add_argument("--time-budget", metavar="MINUTES",
                   help="wall-clock minutes for this session (config key time_budget_min): the epoch count and "
                        "the learning-rate schedule follow the measured time, training stops cleanly (mid-epoch if "
                        "need be) keeping best.pt and last.pt, and a budget that cannot fit one step is refused "
                        "before anything is trained or removed")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=None,
                   help="CUDA: TensorFloat-32 matmuls and cuDNN convolutions (config key tf32; default on); "
                        "--no-tf32 computes in full float32")
    p.add_argument("--set", action="append", default=[], metavar="key=value",
                   help="a config override (same as a positional key=value); repeatable")
    return _allow_intermixed(p)


def _minutes(text: str) -> float:
    """``--time-budget``'s value: a finite number of minutes > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--time-budget must be a positive number of minutes, got {text!r}")
    return value


def _accel_key(text: str) -> tuple[str, int | None]:
    """``--accel``'s value as (mask key, acceleration): ``'8'`` / ``'R8'`` / ``'Uniform8'`` -> ('R08', 8);
    ``'R08tv'`` -> ('R08tv', None); ``'ktGaussian8'`` -> ('R08_ktGaussian', None) (as reconstruct/evaluate read it).
    """
    import re

    from ..data.transforms import parse_mask_key

    text = str(text).strip()
    if re.fullmatch(r"[+-]?\d+", text) and int(text) < 1:
        raise ConfigError(f"--accel must be >= 1 or a mask key such as R08 or R08_ktGaussian, got {text!r}")
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+[eE][+-]?\d+)", text):  # a number, not a whole one: no stored key is named so
        raise ConfigError(f"--accel must be a whole number (the R of a stored mask, e.g. 8) or a mask key, got {text!r}")
    key = parse_mask_key(text)
    if not key or not re.fullmatch(r"[A-Za-z0-9][\w.+-]*", key):
        raise ConfigError(f"--accel {text!r} is neither an acceleration (e.g. 8) nor a mask key (e.g. R08, R08tv, "
                          "R08_ktGaussian)")
    plain = re.fullmatch(r"R(\d+)", key)
    return key, (int(plain.group(1)) if plain else None)


def _check_init_model(init: str, name: str) -> None:
    """Refuse ``--model NAME`` with an ``--init`` checkpoint of another model (its architecture would win)."""
    from ..train.checkpoints import load_model

    _, info = load_model(init, "cpu")
    have = info.get("model", {}).get("name")
    if have is not None and have != name:
        raise ConfigError(f"--init {init} holds model {have!r}; --model asks for {name!r} (drop --model: "
                          "the checkpoint's architecture is used)")


def resolve(args: argparse.Namespace):
    """The :class:`TrainConfig` described by parsed arguments."""
    from ..masks import MaskSpec
    from ..train.config import load_config, with_overrides

    base = args.config
    if args.resume and base is None and args.out and (Path(args.out) / "config.yaml").is_file():
        base = Path(args.out) / "config.yaml"
    cfg = load_config(base, (), preset="finetune" if args.init else None)
    data = dataclasses.replace(cfg.data, root=str(args.data_dir))
    key, accel = _accel_key(args.accel) if args.accel is not None else (None, None)
    if key is not None:
        masks = [MaskSpec(m.kind, accel, m.acs) for m in data.masks] if accel is not None else data.masks
        data = dataclasses.replace(data, mask_key=key, masks=masks)
    if args.batch_size is not None:
        data = dataclasses.replace(data, batch_size=args.batch_size)
    model = cfg.model
    if args.model is not None and args.init is not None and not args.resume:
        _check_init_model(args.init, args.model)
    if args.model is not None and args.model != model.name:
        model = dataclasses.replace(model, name=args.model, kwargs={})
    # run-control flags come from this command line only, never from a (saved) config file
    if cfg.overwrite and not args.overwrite:
        print(f"train: note: {base} sets overwrite: true; ignored (pass --overwrite to replace a run)",
              file=sys.stderr)
    changes = {"data": data, "model": model, "resume": bool(args.resume), "overwrite": bool(args.overwrite)}
    if args.epochs is not None:
        if args.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
        changes["epochs"] = args.epochs
    if args.tf32 is not None:
        changes["tf32"] = bool(args.tf32)
    if args.out is not None:
        changes["out"] = args.out
    if args.init is not None:
        changes["init"] = args.init
    if args.time_budget is not None:
        changes["time_budget_min"] = _minutes(args.time_budget)
    cfg = dataclasses.replace(cfg, **changes)
    overrides = [o for o in args.overrides if o] + list(args.set)
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"unexpected argument {o!r}: overrides look like key.sub=value")
    cfg = with_overrides(cfg, overrides) if overrides else cfg
    if key is not None and accel is None and cfg.data.masks and cfg.data.mask_key == key:
        raise ConfigError(f"--accel {args.accel} names the stored mask {key!r}, but data.masks draws masks on the "
                          "fly (and wins over stored masks); give an acceleration (e.g. --accel 8) to set their R, "
                          "or data.masks=[] to train on the stored mask")
    return cfg


def run(args: argparse.Namespace) -> int:
    """Train and print the run directory.

    SIGTERM (``kill``, ``timeout``, a batch scheduler's stop) ends the run as an exception does,
    so a run stopped before saving its first epoch puts a previous run's files back (``--overwrite``)
    instead of leaving them set aside.
    """
    from ..train.loop import fit
    from ..train.stop import on_sigterm

    cfg = resolve(args)
    try:
        with on_sigterm():
            run_dir = fit(cfg)
    except KeyboardInterrupt:
        _say_stopped("Ctrl-C", cfg, args)
        return 130
    except SystemExit as e:
        if e.code == 128 + signal.SIGTERM:
            _say_stopped("SIGTERM", cfg, args)
        raise
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 only
        print(f"run directory: {run_dir} (best.pt, last.pt, config.yaml, metrics.jsonl, tb/)")
    return 0


def _saved_epoch(path: Path) -> int | None:
    """The epoch a run's ``last.pt`` holds, or None when it cannot be read."""
    from ..train.checkpoints import read_checkpoint

    try:
        return int(read_checkpoint(path).epoch)
    except (Exception, KeyboardInterrupt):  # a damaged file, or a second Ctrl-C while reading: no epoch
        return None


def _say_stopped(how: str, cfg, args: argparse.Namespace) -> None:
    """One stderr line (rank 0) for a run stopped by Ctrl-C or SIGTERM: what last.pt holds and how to continue."""
    if os.environ.get("RANK", "0") != "0":
        return
    line = f"train: stopped ({how})"
    try:
        run = Path(cfg.out)
        last = run / "last.pt"
        if last.is_file():
            epoch = _saved_epoch(last)
            held = f" holds epoch {epoch}" if epoch is not None else " is kept"
            command = shlex.join(["cinerecon", "train", str(args.data_dir), "--out", str(run), "--resume"])
            line += f"; {last}{held}: continue with `{command}`"
        else:
            line += f" before an epoch was saved (no {last} to resume from)"
    except Exception:  # the message must never hide the stop itself
        pass
    print(line, file=sys.stderr, flush=True)
