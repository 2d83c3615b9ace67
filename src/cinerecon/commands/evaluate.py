"""``cinerecon evaluate``: metrics, statistics, tables and figures for reconstruction methods."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from . import check_device

DEFAULT_METHODS = ("zero_filled", "cg_sense", "grappa", "lplus_s")
DEFAULT_ACCELS = ("4", "8")
#: How a shipped model (``--methods crunet`` without a checkpoint of that name) is named in the outputs.
SHIPPED = " (shipped)"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand."""
    p = subparsers.add_parser("evaluate", help="evaluate reconstruction methods on a folder of HDF5 slices",
                              description=__doc__)
    p.add_argument("data_dir", type=Path, help="folder of our HDF5 slices (test.txt selects the test split)")
    p.add_argument("--methods", nargs="*", default=None,
                   help="classical methods from cinerecon.classical: zero_filled, view_sharing, cg_sense, grappa, "
                        "lplus_s; and crunet: the shipped CRUNet-MR (cinerecon.models.load_pretrained), shown as "
                        f"'crunet{SHIPPED}', unless --checkpoint crunet=PATH gives one (default: "
                        f"{' '.join(DEFAULT_METHODS)}; the default's grappa is left out, with a note, at mask keys "
                        "whose masks are not regular line patterns, such as k-t random masks; named here it runs "
                        "there with a warning)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="add a trained model as method NAME (repeatable)")
    p.add_argument("--accel", nargs="+", default=list(DEFAULT_ACCELS),
                   help="accelerations or mask keys, e.g. 4 8, R08_uniform or the CMRxRecon2024 names ktGaussian8 (= R08_ktGaussian) (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="output folder for tables and figures")
    p.add_argument("--protocol", choices=("paper", "global", "cmrxrecon"), default="paper",
                   help="metric protocol: 'paper' (per-frame max scaling, 7x7 SSIM; comparable with the "
                        "paper), 'global' (data range from the target series) or 'cmrxrecon' (the "
                        "CMRxRecon2023 ranking: central 2 slices of each volume, first 3 frames, centre crop "
                        "round(H/3) x round(W/2), float32, per-volume means)")
    p.add_argument("--reference", default=None, metavar="METHOD",
                   help="method the statistics test every other method against, as the paper tests its "
                        "proposed model (default: the CRUNet-MR entry when there is one, else the best mean)")
    p.add_argument("--dists-weights", type=Path, default=None,
                   help="DISTS weights file or folder (also $CINERECON_DISTS_WEIGHTS / $CINERECON_VGG16_WEIGHTS); "
                        "DISTS is skipped when none is configured")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--timing-runs", type=int, default=3, help="timed runs per method for Table 2")
    p.add_argument("--no-figures", action="store_true", help="skip figures")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs in --out")
    return p


def parse_checkpoints(items: list[str]) -> dict[str, Path]:
    """``["crunet=run/best.pt"]`` -> ``{"crunet": Path("run/best.pt")}``."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--checkpoint expects NAME=PATH, got {item!r}")
        if name in out:
            raise ConfigError(f"--checkpoint name {name!r} given twice")
        out[name] = Path(path)
    return out


def build_methods(names: list[str], checkpoints: dict[str, Path], device: str) -> dict[str, Callable]:
    """Classical methods by name, shipped models by name, plus models loaded from checkpoints.

    A name with shipped weights (``crunet``, see :func:`cinerecon.models.load_pretrained`) and no
    checkpoint of that name is the shipped model, under the name ``"crunet (shipped)"``; with
    ``--checkpoint crunet=PATH`` it is that checkpoint, under ``"crunet"``.
    """
    from ..models import PRETRAINED

    methods: dict[str, Callable] = {}
    names = list(dict.fromkeys(names))
    shipped = [n for n in names if n in PRETRAINED and n not in checkpoints]
    classical = [n for n in names if n not in PRETRAINED]
    if classical:
        try:
            from ..classical import CLASSICAL
        except ImportError as e:
            raise ConfigError(f"classical methods are not available ({e}); use --methods with no names "
                              "and --checkpoint only") from e
        unknown = [n for n in classical if n not in CLASSICAL]
        if unknown:
            raise ConfigError(f"unknown method(s) {unknown}; available: {sorted(CLASSICAL)} and the shipped "
                              f"model(s) {sorted(PRETRAINED)} (other models: --checkpoint NAME=PATH)")
    for n in names:
        if n in shipped:
            from ..models import load_pretrained

            methods[n + SHIPPED] = load_pretrained(n, device=device)
        elif n not in PRETRAINED:
            methods[n] = CLASSICAL[n]
    if checkpoints:
        from ..train.checkpoints import load_model

        for name, path in checkpoints.items():
            if name in methods:
                raise ConfigError(f"checkpoint name {name!r} clashes with a method of the same name")
            if not path.exists() and str(path) in ("shipped", "pretrained", "default"):
                raise ConfigError(f"--checkpoint {name}={path}: no such file; the shipped model is "
                                  f"--methods {' '.join(sorted(PRETRAINED))} (without --checkpoint)")
            model, _ = load_model(path, device=device)
            methods[name] = model
    if not methods:
        raise ConfigError("nothing to evaluate: give --methods and/or --checkpoint")
    return methods


def default_reference(methods: dict[str, Callable]) -> str | None:
    """The statistics' default reference: the method loaded as a CRUNet-MR model, else the one named like it.

    A CRUNet-MR from a checkpoint comes before the shipped one (``"crunet (shipped)"``), which is
    the reference when it is the only one. See :func:`cinerecon.evaluate.report.default_reference`
    for the names; None when neither exists.
    """
    from ..evaluate.report import default_reference as by_name
    from ..models.crunet import CRUNet

    crunets = sorted((name for name, fn in methods.items() if isinstance(fn, CRUNet)),
                     key=lambda name: name.endswith(SHIPPED))  # stable: otherwise in method order
    return crunets[0] if crunets else by_name(methods)


def resolve_reference(reference: str | None, methods: dict[str, Callable]) -> str | None:
    """``--reference``: a method's name (``crunet`` also names ``"crunet (shipped)"``), else the default."""
    if reference is None:
        return default_reference(methods)
    if reference not in methods and reference + SHIPPED in methods:
        return reference + SHIPPED
    if reference not in methods:
        raise ConfigError(f"--reference {reference!r} is not among the evaluated methods {list(methods)}")
    return reference


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the Table-1 Markdown."""
    import torch

    from ..evaluate.runner import REGULAR_LINE_METHODS, EvaluationOptions, accel_key, evaluate_dir
    from ..evaluate.timing import TimingConfig

    device = check_device(args.device) if args.device else ("cuda" if torch.cuda.is_available() else "cpu")
    if args.timing_runs < 1:
        raise ConfigError(f"--timing-runs must be >= 1, got {args.timing_runs}")
    names = list(DEFAULT_METHODS) if args.methods is None else list(args.methods)
    methods = build_methods(names, parse_checkpoints(args.checkpoint), device)
    reference = resolve_reference(args.reference, methods)
    # a method for regular line patterns that only the default list brought is left out where the masks are not
    # regular; named in --methods (or as --reference) it runs there with a warning
    chosen = set(args.methods or ()) | {reference}
    line_methods = [n for n in REGULAR_LINE_METHODS if n in names]  # the classical ones
    opts = EvaluationOptions(timing=TimingConfig(runs=args.timing_runs), figures=not args.no_figures, device=device,
                             reference=reference,
                             skip_irregular=tuple(n for n in line_methods if n not in chosen),
                             warn_irregular=tuple(n for n in line_methods if n in chosen))
    res = evaluate_dir(args.data_dir, methods, out_dir=args.out, accels=tuple(accel_key(a) for a in args.accel),
                       protocol=args.protocol, dists_weights=args.dists_weights, overwrite=args.overwrite,
                       options=opts)
    print(res.table1_markdown)
    if not res.dists:
        print("note: DISTS not computed (no weights configured: --dists-weights PATH or CINERECON_DISTS_WEIGHTS / "
              "CINERECON_VGG16_WEIGHTS; see cinerecon.evaluate.dists)", file=sys.stderr)
    for note in res.info:
        print(f"note: {note}", file=sys.stderr)
    for note in res.notes:
        print(f"warning: {note}", file=sys.stderr)
    print(f"wrote {len(res.written)} files to {res.out_dir}")
    return 0
