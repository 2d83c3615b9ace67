"""Command-line entry point: ``cinerecon simulate | prepare | train | reconstruct | evaluate | demo``.

Each subcommand lives in ``cinerecon/commands/<name>.py`` and provides
``add_parser(subparsers)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import CineReconError

COMMANDS = ("simulate", "prepare", "train", "reconstruct", "evaluate", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="cinerecon", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"cinerecon.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"cinerecon.commands.{name}":
                continue
            raise
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one clear line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except CineReconError as e:
        print(f"cinerecon {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
