"""``cinerecon simulate OUT``: write a synthetic multi-coil cine dataset in our HDF5 format."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..data.simulate import MIN_SIM_SIZE, VIEWS, SimConfig, simulate_dataset
from ..errors import ConfigError

_DEFAULTS = SimConfig()
_ACCELS = (4, 8, 10, 24)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``simulate`` subcommand."""
    p = subparsers.add_parser("simulate", help="simulate a synthetic multi-coil cardiac cine dataset (HDF5)",
                              description=__doc__)
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--subjects", type=int, default=4, help="number of subjects (default: %(default)s)")
    p.add_argument("--frames", type=int, default=_DEFAULTS.frames, help="cardiac phases T (default: %(default)s)")
    p.add_argument("--coils", type=int, default=_DEFAULTS.coils, help="coils C (default: %(default)s)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=list(_DEFAULTS.size),
                   help="image size H W, W = phase encoding (default: %(default)s)")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="base seed (default: %(default)s)")
    p.add_argument("--views", nargs="+", choices=VIEWS, default=[_DEFAULTS.view],
                   help="views per subject (default: %(default)s)")
    p.add_argument("--snr-db", type=float, default=_DEFAULTS.snr_db,
                   help="SNR in dB relative to the mean object magnitude; 'inf' for none (default: %(default)s)")
    p.add_argument("--accels", type=int, nargs="+", default=list(_ACCELS),
                   help="accelerations of the stored equispaced + ACS masks; one whose masks would sample every "
                        "phase-encode line (or none) at this --size and --acs is refused (default: %(default)s)")
    p.add_argument("--acs", type=int, default=None, help="ACS lines (default: 24, capped for small W)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    return p


def slice_bytes(frames: int, coils: int, size: tuple[int, int] | list[int]) -> int:
    """Rough peak memory of simulating one slice (bytes), for the check before allocating.

    The phantom, target, maps and k-space are complex64 while they are made (8 bytes per
    value): about ``3 C + 8`` arrays of ``T H W`` values at once (an upper bound of the
    measured peaks).
    """
    h, w = size
    return (3 * coils + 8) * frames * h * w * 8


def check_memory(frames: int, coils: int, size: list[int]) -> None:
    """Refuse sizes whose simulation cannot fit in the available memory, before allocating."""
    from ..runtime import available_memory_bytes

    for flag, value in (("--frames", frames), ("--coils", coils), ("--size", min(size))):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    need, avail = slice_bytes(frames, coils, size), available_memory_bytes()
    if avail is not None and need > 0.9 * avail:
        raise ConfigError(f"--size {size[0]} {size[1]} with --frames {frames} and --coils {coils} needs about "
                          f"{need / 2**30:.1f} GiB per slice and {avail / 2**30:.1f} GiB are available; "
                          "use a smaller --size, --frames or --coils")


def run(args: argparse.Namespace) -> int:
    """Simulate and print each written file."""
    if args.subjects < 1:
        raise ConfigError(f"--subjects must be >= 1, got {args.subjects}")
    if math.isnan(args.snr_db):
        raise ConfigError("--snr-db must be a number or inf")
    if any(r < 1 for r in args.accels):
        raise ConfigError(f"--accels must be positive integers, got {args.accels}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    check_memory(args.frames, args.coils, args.size)
    if min(args.size) < MIN_SIM_SIZE:
        raise ConfigError(f"--size must be at least {MIN_SIM_SIZE} {MIN_SIM_SIZE}, got {args.size[0]} {args.size[1]}")
    if args.acs is not None and not 0 <= args.acs <= args.size[1]:
        raise ConfigError(f"--acs must be in [0, W] = [0, {args.size[1]}] for --size {args.size[0]} {args.size[1]}, "
                          f"got {args.acs}")
    cfg = SimConfig(frames=args.frames, coils=args.coils, size=(args.size[0], args.size[1]), view=args.views[0],
                    snr_db=args.snr_db, seed=args.seed)
    paths = simulate_dataset(args.out, args.subjects, cfg, accels=tuple(args.accels), overwrite=args.overwrite,
                             views=tuple(args.views), acs=args.acs)
    h5 = [p for p in paths if p.suffix == ".h5"]
    for p in paths:
        print(p)
    print(f"wrote {len(h5)} slices ({args.subjects} subjects x {len(args.views)} views, "
          f"C={args.coils} T={args.frames} H={args.size[0]} W={args.size[1]}, masks "
          f"{', '.join(f'R{r:02d}' for r in args.accels)}) and split lists to {args.out}")
    return 0
