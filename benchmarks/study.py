"""A reproducible small study: every deep model trained with the same budget, then Tables 1 and 2.

Steps (everything seeded by ``--seed``):

1. simulate ``--subjects`` subjects (one slice per view) with stored equispaced + ACS masks
   at ``--accels``; the last ``--test-subjects`` subjects test, one validates, the rest train;
2. if ``--real-dir`` holds ``*.npz`` magnitude cines (default ``../shared/data/real_cine``),
   convert each with :func:`cinerecon.data.simulate.magnitude_cine_to_sample` (whole FOV
   resized to ``--size``, ``--frames`` frames, synthetic phase and coils) and add it to the
   test split as view ``real_<view>`` (its own Table-1 block);
3. train crunet, crnn, unet3d, cinenet and promptmr with :func:`cinerecon.train.loop.fit`,
   each the faithful variant of its paper's Table 1 row at a tiny width (``--cascades``
   each; presets in :class:`common.TinySizes`: CRNN-MRI and PromptMR ``preset="original"``,
   CRNN-MRI unshared, 3D UNet-MR ``preset="paper"``, CineNet complex-valued): same loss,
   AdamW, schedule (``configs/study/small_budget.yaml``), seed and number of epochs / steps
   (the budget); each training item draws an equispaced + ACS mask at one of ``--accels``
   (one model per architecture for all accelerations);
4. evaluate the models (``best.pt``: best validation PSNR) with zero_filled, cg_sense,
   grappa and lplus_s through :func:`cinerecon.evaluate.runner.evaluate_dir`: Table 1
   (mean ± std per view and R; 1 - DISTS when DISTS weights are configured), Wilcoxon +
   Bonferroni statistics of every method against CRUNet-MR (as the paper), dynamic-region
   table, Table 2 (parameters, time per slice) and figures under ``OUT/results``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/study.py --out runs/study

Outputs: ``OUT/data`` (HDF5 + split lists), ``OUT/runs/<model>`` (checkpoints, logs),
``OUT/results`` (tables, CSVs, figures), ``OUT/training.md``, ``OUT/study.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from cinerecon.errors import ConfigError


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

from cinerecon.classical import CLASSICAL


@dataclass(frozen=True)
class StudyDefaults(common.BenchDefaults):
    """Default size of the study (about 10 minutes together with mask_robustness on 2 CPU cores)."""

    subjects: int = 16
    test_subjects: int = 9
    epochs: int = 10
    views: tuple[str, ...] = ("sax", "lax")
    accels: tuple[int, ...] = (4, 8)
    timing_runs: int = 3


D = StudyDefaults()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common.add_data_args(p, D)
    p.add_argument("--views", nargs="+", default=list(D.views), choices=("sax", "lax"), help="views per subject")
    p.add_argument("--accels", type=int, nargs="+", default=list(D.accels), help="accelerations R")
    p.add_argument("--models", nargs="+", default=list(common.DEEP_MODELS), help="deep models to train")
    p.add_argument("--methods", nargs="*", default=list(CLASSICAL), help="classical methods to evaluate")
    p.add_argument("--cascades", type=int, default=common.TinySizes.cascades, help="cascades of every model")
    p.add_argument("--real-dir", type=Path, default=common.REAL_DIR,
                   help="folder of real magnitude cines (*.npz); skipped when absent")
    p.add_argument("--no-real", action="store_true", help="do not add the real series")
    p.add_argument("--timing-runs", type=int, default=D.timing_runs, help="timed runs per method (Table 2)")
    p.add_argument("--no-figures", action="store_true", help="skip figures")
    common.add_run_args(p, D, "auto, cpu or cuda (training and evaluation)", "every model")
    return common.parse_with_budget(p, D, argv)


# ----------------------------------------------------------------------------- data


def add_real_series(data_dir: Path, real_dir: Path, size: tuple[int, int], frames: int, coils: int,
                    snr_db: float, seed: int, accels: Sequence[int], overwrite: bool) -> list[Path]:
    """Convert every ``real_dir/*.npz`` magnitude cine to a small multi-coil test slice.

    Returns:
        The written HDF5 files (view ``real_<sax|lax|unknown>``), empty when there are none.
    """
    import numpy as np

    from cinerecon.data.h5 import write_h5
    from cinerecon.data.simulate import load_real_cine_npz, magnitude_cine_to_sample
    from cinerecon.data.transforms import default_acs, mask_key
    from cinerecon.masks import MaskSpec, make_mask

    written = []
    for i, path in enumerate(sorted(Path(real_dir).glob("*.npz")) if Path(real_dir).is_dir() else []):
        mags, info = load_real_cine_npz(path)
        parts = path.stem.lower().split("_")
        view = "sax" if "sax" in parts else "lax" if "lax" in parts else "unknown"
        sub = int(np.random.SeedSequence([seed, 1000 + i]).generate_state(1)[0])
        sample = magnitude_cine_to_sample(
            mags, coils=coils, snr_db=snr_db, seed=sub, name=f"real/{path.stem}", size=tuple(size),
            n_frames=min(frames, mags.shape[0]), view=f"real_{view}", pixel_spacing=info["pixel_spacing_mm"],
            frame_times_ms=info["trigger_time_ms"])
        _, t, _, w = sample.shape
        masks = {mask_key(r): make_mask(MaskSpec("equispaced_acs", int(r), default_acs(w)), t, w, seed=sub + int(r))
                 for r in accels}
        written.append(write_h5(data_dir / f"real_{path.stem}.h5", sample, masks, overwrite=overwrite))
    return written


def classical_methods(names: Sequence[str]) -> tuple[dict[str, Callable], dict[str, str]]:
    """Classical methods by name (from :data:`cinerecon.classical.CLASSICAL`), and none missing."""
    unknown = [n for n in names if n not in CLASSICAL]
    if unknown:
        raise ConfigError(f"unknown classical method(s) {unknown}; choose from {sorted(CLASSICAL)}")
    return {name: CLASSICAL[name] for name in names}, {}


def min_adjusted_p(n: int, methods: int) -> float:
    """Smallest Bonferroni-adjusted two-sided exact Wilcoxon p with ``n`` pairs and ``methods`` methods."""
    return min(1.0, (methods - 1) * 2.0 / 2.0 ** n) if n > 0 else 1.0


# ----------------------------------------------------------------------------- main


def run_study(args: argparse.Namespace, argv: Sequence[str] | None = None) -> dict:
    """Run the whole study; returns the summary also written to ``OUT/study.json``."""
    from cinerecon.data.transforms import default_acs
    from cinerecon.evaluate.runner import EvaluationOptions, evaluate_dir
    from cinerecon.evaluate.timing import TimingConfig
    from cinerecon.masks import MaskSpec
    from cinerecon.train.checkpoints import load_model

    start = common.start_run("study.py", args, argv)
    out, cmd = start.out, start.command
    data_dir = out / "data"
    split = common.simulate_from_args(args, data_dir, args.accels, args.views)
    real = [] if args.no_real else add_real_series(data_dir, args.real_dir, tuple(args.size), args.frames,
                                                    args.coils, args.snr_db, args.seed, args.accels, args.overwrite)
    if real:
        from cinerecon.data.h5 import write_split

        split["test"] = split["test"] + real
        write_split(data_dir, split, overwrite=True)
    print(f"data: {len(split['train'])} train / {len(split['val'])} val / {len(split['test'])} test slices "
          f"({len(real)} real) in {data_dir}", flush=True)

    epochs = common.epochs_for(len(split["train"]), args.epochs, args.budget)
    sizes = common.TinySizes(cascades=args.cascades)
    train_masks = [MaskSpec("equispaced_acs", int(r), default_acs(args.size[1])) for r in args.accels]
    runs = []
    for name in args.models:
        print(f"training {name} for {epochs} epochs ...", flush=True)
        runs.append(common.train_one(name, name, sizes.kwargs(name), data_dir, out / "runs" / name, epochs,
                                     args.seed, args.device, args.overwrite, masks=train_masks,
                                     overrides=args.overrides))
    training_md = common.training_table(runs)
    (out / "training.md").write_text(training_md + "\n")

    device = None if args.device == "auto" else args.device
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    methods, missing = classical_methods(args.methods)
    for r in runs:
        model, _ = load_model(r.checkpoint, device=dev)
        methods[r.name] = model
    opts = EvaluationOptions(timing=TimingConfig(runs=args.timing_runs), figures=not args.no_figures, device=device)
    print(f"evaluating {', '.join(methods)} at R = {', '.join(map(str, args.accels))} ...", flush=True)
    res = evaluate_dir(data_dir, methods, out_dir=out / "results", accels=tuple(int(a) for a in args.accels),
                       protocol=args.protocol, overwrite=args.overwrite, options=opts)
    n_per_view = {}
    for rec in res.records:
        n_per_view.setdefault(rec.view, set()).add(rec.file)
    summary = {
        "command": cmd,
        "args": common.json_ready(vars(args)),
        "epochs": epochs,
        "train_masks": common.json_ready(train_masks),
        "model_kwargs": {n: sizes.kwargs(n) for n in args.models},
        "training": common.json_ready(runs),
        "classical_missing": missing,
        "test_slices_per_view": {v: len(f) for v, f in n_per_view.items()},
        "min_adjusted_p_per_view": {v: min_adjusted_p(len(f), len(methods)) for v, f in n_per_view.items()},
        "results_dir": str(out / "results"),
        "seconds": time.perf_counter() - start.t_start,
    }
    (out / "study.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_report(out, training_md, res, missing, summary)
    return summary


def _print_report(out: Path, training_md: str, res, missing: dict[str, str], summary: dict) -> None:  # noqa: ANN001
    print("\n## Training (same budget for every model)\n")
    print(training_md)
    for title, name in (("Table 1", "table1.md"), ("Statistics (Wilcoxon + Bonferroni)", "stats.md"),
                        ("Dynamic / static regions", "dynamic.md"), ("Table 2", "table2.md")):
        print(f"\n## {title}\n")
        print((res.out_dir / name).read_text().rstrip())
    notes = [f"{v}: n = {summary['test_slices_per_view'][v]} slices, smallest attainable adjusted p = {p:.3g}"
             for v, p in summary["min_adjusted_p_per_view"].items()]
    print("\nSignificance power: " + "; ".join(notes))
    for name, why in missing.items():
        print(f"skipped classical method {name}: {why}")
    print(f"\nwrote {out} in {summary['seconds']:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_study(args, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
