"""Command-line entry point: ``cinerecon simulate | prepare | train | reconstruct | evaluate | demo``.

Each subcommand lives in ``cinerecon/commands/<name>.py`` and provides
``add_parser(subparsers)`` and ``run(args) -> int``. Every user error (bad flag, bad
file, existing output) ends in one line on stderr naming the flag or file and the
value, and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import CineReconError

COMMANDS = ("simulate", "prepare", "train", "reconstruct", "evaluate", "demo")
DESCRIPTION = ("Accelerated cardiac cine MRI reconstruction: simulate or prepare data (our HDF5, see "
               "docs/hdf5_layout.md), train CRUNet-MR and baselines, reconstruct, evaluate. "
               "'cinerecon COMMAND --help' describes each command.")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``prog: error: message (see prog --help)``)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    parser = OneLineParser(prog="cinerecon", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one clear line and exit with status 2."""
    args = build_parser().parse_args(argv)
    from .runtime import tune_cpu_allocator

    tune_cpu_allocator()  # reuse freed memory instead of mmap/munmap per feature map (see cinerecon.runtime)
    try:
        return int(args._run(args) or 0)
    except CineReconError as e:
        print(f"cinerecon {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system refused: permissions, a full disk, a folder where a file should be
        where = f"{e.filename}: " if e.filename else ""
        print(f"cinerecon {args.command}: error: {where}{_one_line(e.strerror or e)}", file=sys.stderr)
        return 2
    except MemoryError as e:  # a size no check caught; say so instead of a traceback
        print(f"cinerecon {args.command}: error: out of memory ({_one_line(e) or 'MemoryError'}); use smaller "
              "sizes", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cinerecon {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
