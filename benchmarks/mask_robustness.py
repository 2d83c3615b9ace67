"""Mask robustness: a fixed-mask CRUNet vs a mixed-mask CRUNet on masks with and without ACS.

Two tiny CRUNet-MR models get the same data, loss, optimiser, seed and number of steps
(``configs/study/small_budget.yaml``):

* ``fixed``: the stored R equispaced + ACS mask of each training file (CMRxRecon style);
* ``mixed``: each item draws one of equispaced + ACS, uniform (equispaced, no ACS) and
  time-varying (equispaced shifted every frame, no ACS), all at R;
* ``mixed_vs``: the same mixed masks, with the view-sharing initial image
  (``initial_image="view_sharing"``: each frame's missing lines start from their mean over
  the frames that sampled them; identical to zero-filling for static masks).

All are tested on the held-out subjects under (a) equispaced + ACS, (b) uniform without ACS
and (c) time-varying without ACS at R, with

* ``true`` maps (the simulation's coil sensitivities; a reference), and
* ``estimated`` maps from :func:`cinerecon.coils.maps_from_time_average` (the path of
  ``cinerecon reconstruct --no-acs-maps``): k-space averaged over the frames that sample each
  location, ESPIRiT on the filled centre (kernel ``min(6, ACS // 2)``, see
  :func:`espirit_kernel`). A time-varying mask fills the centre over time; a static mask
  without ACS leaves nothing to calibrate on, which is reported as n/a.

Zero-filled, view sharing (:func:`cinerecon.classical.view_sharing.view_sharing`) and CG-SENSE with the same maps are listed
for reference. The script prints
PSNR / SSIM (mean ± std over test slices) per model x test mask x maps and, measured in this
run: the drop of the fixed model from (a) to (b) / (c), the part of that drop the mixed model
recovers (per mixed model), and what mixing costs on (a).

Usage (from the repository root)::

    .venv/bin/python benchmarks/mask_robustness.py --out runs/mask_robustness

Outputs: ``OUT/data``, ``OUT/runs/{fixed,mixed,mixed_vs}``, ``OUT/results.md``,
``OUT/per_slice.csv``, ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cinerecon.errors import DataError


def load_common():  # noqa: ANN201 - the benchmarks' private helper module
    """Import ``benchmarks/common.py`` by path (the benchmarks folder is not a package)."""
    name = "cinerecon_benchmarks_common"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("common.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


common = load_common()

from cinerecon.classical.view_sharing import view_sharing  # noqa: E402  (re-exported for the report)

TEST_KINDS = ("equispaced_acs", "uniform", "time_varying")
NO_ACS_KINDS = ("uniform", "time_varying")
MAPS = ("true", "estimated")
MODELS = ("fixed", "mixed", "mixed_vs")
#: Models whose recovery over the fixed-mask model is reported.
MIXED_MODELS = MODELS[1:]


@dataclass(frozen=True)
class RobustnessDefaults(common.BenchDefaults):
    """Default size (a few minutes on 2 CPU cores)."""

    subjects: int = 14
    test_subjects: int = 5
    epochs: int = 20
    view: str = "sax"
    accel: int = 8
    chans: int = 8
    cascades: int = 3


D = RobustnessDefaults()


@dataclass(frozen=True)
class SliceResult:
    """Metrics of one method on one test slice under one test mask and one kind of maps."""

    file: str
    method: str
    test_mask: str
    maps: str
    psnr: float
    ssim: float


@dataclass(frozen=True)
class Cell:
    """Mean ± std over test slices; ``n`` = 0 and ``note`` when not available."""

    psnr: float
    psnr_std: float
    ssim: float
    ssim_std: float
    n: int
    note: str = ""


@dataclass(frozen=True)
class Ratio:
    """Drop of the fixed-mask model and recovery by mixed-mask training on one no-ACS test mask.

    Attributes:
        model: the mixed-mask model (``mixed``, or ``mixed_vs`` with a view-sharing initial image).
        test_mask: ``uniform`` or ``time_varying``.
        maps: ``true`` or ``estimated``.
        metric: ``psnr`` (dB) or ``ssim``.
        drop: fixed(a) - fixed(test mask).
        recovered: mixed(test mask) - fixed(test mask).
        recovered_fraction: recovered / drop (NaN when there is no drop).
        mixed_gap: mixed(a) - mixed(test mask), what remains.
        cost_on_acs: fixed(a) - mixed(a), what mixing costs on the training mask.
    """

    model: str
    test_mask: str
    maps: str
    metric: str
    drop: float
    recovered: float
    recovered_fraction: float
    mixed_gap: float
    cost_on_acs: float


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common.add_data_args(p, D, frames_help="frames T (>= R fills the centre over time)")
    p.add_argument("--view", choices=("sax", "lax"), default=D.view, help="view of every slice")
    p.add_argument("--accel", type=int, default=D.accel, help="acceleration R of every mask")
    p.add_argument("--chans", type=int, default=D.chans, help="CRUNet channels")
    p.add_argument("--cascades", type=int, default=D.cascades, help="CRUNet cascades")
    common.add_run_args(p, D, "auto, cpu or cuda", "both models")
    return common.parse_with_budget(p, D, argv)


# ----------------------------------------------------------------------------- testing


def make_test_mask(kind: str, accel: int, acs: int, frames: int, width: int, seed: int, index: int) -> torch.Tensor:
    """The seeded test mask (1, T|1, 1, W) of one kind for test slice ``index``."""
    from cinerecon.masks import MaskSpec, make_mask

    sub = int(np.random.SeedSequence([seed, 7, index, TEST_KINDS.index(kind)]).generate_state(1)[0])
    return make_mask(MaskSpec(kind, accel, acs), frames, width, seed=sub)


def espirit_kernel(acs: int) -> int:
    """ESPIRiT kernel width for a calibration block of ``acs`` lines: the default 6, at most ``acs // 2``.

    The default 6 x 6 kernel needs a calibration width well above 6: with 8 ACS lines (32-line
    images) ESPIRiT's eigenvalue crop keeps only about a fifth of the object.
    """
    return int(min(6, max(3, acs // 2)))


def estimate_maps(kspace: torch.Tensor, mask: torch.Tensor, kernel: int) -> tuple[torch.Tensor | None, str]:
    """Maps from the time-averaged centre, or (None, reason) when the centre is never filled.

    Args:
        kspace: (C, T, H, W) undersampled k-space.
        mask: (1, T|1, 1, W).
        kernel: ESPIRiT kernel width.
    """
    from cinerecon.coils import maps_from_time_average

    try:
        return maps_from_time_average(kspace, mask, kernel=kernel), ""
    except DataError as e:
        return None, f"no calibration region ({str(e).split(':', 1)[-1].strip()})"


def evaluate(models: dict[str, torch.nn.Module], files: Sequence[Path], accel: int, acs: int, seed: int,
             protocol: str, device: torch.device) -> tuple[list[SliceResult], dict[str, str], dict[str, float]]:
    """Every method on every test file x test mask x maps.

    Returns:
        Per-slice results, the reason per test mask where maps could not be estimated, and
        the mean effective acceleration (W over sampled lines per frame) per test mask.
    """
    from cinerecon.classical.cg_sense import cg_sense
    from cinerecon.classical.zero_filled import zero_filled
    from cinerecon.data.h5 import read_h5
    from cinerecon.evaluate.metrics import series_metrics
    from cinerecon.masks import effective_acceleration

    methods: dict[str, Callable] = {**models, "zero_filled": zero_filled, "view_sharing": view_sharing,
                                    "cg_sense": cg_sense}
    results, notes, eff = [], {}, {k: [] for k in TEST_KINDS}
    for i, path in enumerate(files):
        full = read_h5(path)
        if full.target is None:
            raise DataError(f"{path}: test slices need a 'target' dataset")
        c, t, h, w = full.shape
        target = full.target.to(device)
        for kind in TEST_KINDS:
            mask = make_test_mask(kind, accel, acs, t, w, seed, i)
            kspace = full.kspace * mask
            eff[kind].append(effective_acceleration(mask))
            est, why = estimate_maps(kspace, mask, espirit_kernel(acs))
            if est is None:
                notes[kind] = why
            for maps_name, maps in (("true", full.maps), ("estimated", est)):
                if maps is None:
                    continue
                k, m, s = kspace[None].to(device), mask[None].to(device), maps[None].to(device)
                for name, fn in methods.items():
                    with torch.no_grad():
                        rec = fn(k, m, s)[0]
                    sm = series_metrics(rec, target, protocol, with_haarpsi=False)
                    results.append(SliceResult(str(path), name, kind, maps_name, float(sm.psnr), float(sm.ssim)))
    return results, notes, {k: float(np.mean(v)) for k, v in eff.items() if v}


def summarise(results: Sequence[SliceResult], notes: dict[str, str]) -> dict[tuple[str, str, str], Cell]:
    """(method, test mask, maps) -> :class:`Cell`."""
    methods = list(dict.fromkeys(r.method for r in results))
    out = {}
    for meth in methods:
        for kind in TEST_KINDS:
            for maps in MAPS:
                rs = [r for r in results if (r.method, r.test_mask, r.maps) == (meth, kind, maps)]
                if not rs:
                    out[meth, kind, maps] = Cell(*(float("nan"),) * 4, 0, notes.get(kind, "not run"))
                    continue
                p, ps = common.mean_std(r.psnr for r in rs)
                s, ss = common.mean_std(r.ssim for r in rs)
                out[meth, kind, maps] = Cell(p, ps, s, ss, len(rs))
    return out


def ratios(cells: dict[tuple[str, str, str], Cell]) -> list[Ratio]:
    """Drop / recovery per no-ACS test mask, maps and metric (only where all four cells exist)."""
    out = []
    for model in (m for m in MIXED_MODELS if (m, "equispaced_acs", MAPS[0]) in cells):
        for maps in MAPS:
            for kind in NO_ACS_KINDS:
                fa, fm = cells["fixed", "equispaced_acs", maps], cells["fixed", kind, maps]
                ma, mm = cells[model, "equispaced_acs", maps], cells[model, kind, maps]
                if min(c.n for c in (fa, fm, ma, mm)) == 0:
                    continue
                for metric in ("psnr", "ssim"):
                    v = {k: getattr(c, metric) for k, c in (("fa", fa), ("fm", fm), ("ma", ma), ("mm", mm))}
                    drop, rec = v["fa"] - v["fm"], v["mm"] - v["fm"]
                    frac = rec / drop if abs(drop) > 1e-12 else float("nan")
                    out.append(Ratio(model, kind, maps, metric, drop, rec, frac, v["ma"] - v["mm"],
                                     v["fa"] - v["ma"]))
    return out


# ----------------------------------------------------------------------------- report


def results_table(cells: dict[tuple[str, str, str], Cell], eff: dict[str, float]) -> str:
    methods = list(dict.fromkeys(k[0] for k in cells))
    header = ["Method", "Maps"] + [f"{k} (R_eff {eff.get(k, float('nan')):.1f}) {m}" for k in TEST_KINDS
                                   for m in ("PSNR", "SSIM")]
    rows = []
    for meth in methods:
        for maps in MAPS:
            line = [meth, maps]
            for kind in TEST_KINDS:
                c = cells[meth, kind, maps]
                if c.n == 0:
                    line += ["n/a", "n/a"]
                else:
                    line += [f"{c.psnr:.2f} ± {c.psnr_std:.2f}", f"{c.ssim:.4f} ± {c.ssim_std:.4f}"]
            rows.append(line)
    return common.markdown_table(header, rows)


def ratio_table(rs: Sequence[Ratio]) -> str:
    def f(x: float, metric: str) -> str:
        return "–" if not np.isfinite(x) else (f"{x:+.2f}" if metric == "psnr" else f"{x:+.4f}")

    rows = [[r.model, r.test_mask, r.maps, r.metric.upper(), f(r.drop, r.metric), f(r.recovered, r.metric),
             "–" if not np.isfinite(r.recovered_fraction) else f"{100 * r.recovered_fraction:.0f} %",
             f(r.mixed_gap, r.metric), f(r.cost_on_acs, r.metric)] for r in rs]
    return common.markdown_table(["Model", "Test mask", "Maps", "Metric", "Drop of fixed (a -> mask)",
                                  "Recovered by mixed", "Recovered share", "Mixed gap (a -> mask)",
                                  "Cost of mixing on (a)"], rows)


def write_per_slice(path: Path, results: Sequence[SliceResult]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "method", "test_mask", "maps", "psnr", "ssim"])
        for r in results:
            w.writerow([r.file, r.method, r.test_mask, r.maps, f"{r.psnr:.6f}", f"{r.ssim:.6f}"])
    return path


# ----------------------------------------------------------------------------- main


def run_benchmark(args: argparse.Namespace, argv: Sequence[str] | None = None) -> dict:
    """Run everything; returns the summary also written to ``OUT/summary.json``."""
    from cinerecon.data.transforms import default_acs, mask_key
    from cinerecon.masks import MaskSpec
    from cinerecon.train.checkpoints import load_model

    start = common.start_run("mask_robustness.py", args, argv)
    out, cmd = start.out, start.command
    data_dir = out / "data"
    split = common.simulate_from_args(args, data_dir, (args.accel,), (args.view,), view=args.view)
    acs = default_acs(args.size[1])
    epochs = common.epochs_for(len(split["train"]), args.epochs, args.budget)
    kwargs = {"chans": args.chans, "cascades": args.cascades}
    mixed_specs = [MaskSpec(k, args.accel, acs) for k in TEST_KINDS]
    plan = {"fixed": ({}, {"mask_key": mask_key(args.accel), "masks": ()}),
            "mixed": ({}, {"mask_key": None, "masks": mixed_specs}),
            "mixed_vs": ({"initial_image": "view_sharing"}, {"mask_key": None, "masks": mixed_specs})}
    runs = []
    for label, (extra, data) in plan.items():
        print(f"training {label} CRUNet for {epochs} epochs ...", flush=True)
        runs.append(common.train_one(label, "crunet", {**kwargs, **extra}, data_dir, out / "runs" / label, epochs,
                                     args.seed, args.device, args.overwrite, overrides=args.overrides, **data))
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    models = {r.name: load_model(r.checkpoint, device=device)[0] for r in runs}
    print(f"testing on {len(split['test'])} slices ...", flush=True)
    results, notes, eff = evaluate(models, split["test"], args.accel, acs, args.seed, args.protocol, device)
    cells = summarise(results, notes)
    rs = ratios(cells)
    training_md = common.training_table(runs)
    table = results_table(cells, eff)
    ratio_md = ratio_table(rs)
    n_test = len(split["test"])
    notes_md = "\n".join(f"- {k}, estimated maps: {v}" for k, v in notes.items())
    text = (f"$ {cmd}\n\n## Training (same budget)\n\n{training_md}\n\n"
            f"## PSNR / SSIM at R = {args.accel} ({args.protocol} protocol, mean ± std over {n_test} test slices)\n\n"
            f"(a) equispaced_acs: equispaced + {acs} ACS lines (the fixed model's training mask); "
            f"(b) uniform: equispaced, no ACS; (c) time_varying: shifted every frame, no ACS.\n\n{table}\n\n"
            + (f"{notes_md}\n\n" if notes_md else "")
            + f"## Drop and recovery (measured in this run)\n\n{ratio_md}\n")
    (out / "results.md").write_text(text)
    write_per_slice(out / "per_slice.csv", results)
    summary = {
        "command": cmd,
        "args": common.json_ready(vars(args)),
        "epochs": epochs,
        "acs": acs,
        "espirit_kernel": espirit_kernel(acs),
        "effective_accel": eff,
        "mixed_masks": common.json_ready(mixed_specs),
        "training": common.json_ready(runs),
        "cells": {f"{m}|{k}|{p}": common.json_ready(c) for (m, k, p), c in cells.items()},
        "ratios": common.json_ready(rs),
        "notes": notes,
        "seconds": time.perf_counter() - start.t_start,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n" + text.split("\n", 2)[2])
    print(f"wrote {out} in {summary['seconds']:.0f} s")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_benchmark(args, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
