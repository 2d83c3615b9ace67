"""Helpers shared by ``benchmarks/study.py`` and ``benchmarks/mask_robustness.py``.

Not a library API: the command-line options and start of a run both scripts share,
simulation with an explicit train / val / test split by subject, the tiny model sizes, one
training run through :func:`cinerecon.train.loop.fit` with the shared settings of
``configs/study/small_budget.yaml``, output-folder checks and small formatting helpers. Load it by file path (see :func:`load_common` in the scripts), not from ``sys.path``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cinerecon.data.simulate import SimConfig
from cinerecon.errors import ConfigError, OutputExistsError
from cinerecon.evaluate.report import markdown_table  # noqa: F401 - the scripts call common.markdown_table
from cinerecon.masks import MaskSpec

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = ROOT / "configs" / "study" / "small_budget.yaml"
REAL_DIR = ROOT.parent / "shared" / "data" / "real_cine"
DEEP_MODELS = ("crunet", "crnn", "unet3d", "cinenet", "promptmr")


# ----------------------------------------------------------------------------- command line


@dataclass(frozen=True)
class BenchDefaults:
    """Defaults both benchmarks share; each script's subclass gives the size of its run.

    Attributes:
        subjects: simulated subjects in total.
        test_subjects: of which held out for testing.
        epochs: epochs per model when neither ``--epochs`` nor ``--budget`` is given.
        size: image size (H, W).
        frames: frames T.
        coils: coils C.
        snr_db: simulated SNR.
        seed: seed of simulation, masks and training.
        protocol: metric protocol.
    """

    subjects: int
    test_subjects: int
    epochs: int
    size: tuple[int, int] = (32, 32)
    frames: int = 8
    coils: int = 8
    snr_db: float = 30.0
    seed: int = 0
    protocol: str = "paper"


def add_data_args(p: argparse.ArgumentParser, d: BenchDefaults, frames_help: str = "frames T") -> None:
    """``--out``, the training budget (``--epochs`` | ``--budget``) and the simulated data's options."""
    p.add_argument("--out", type=Path, required=True, help="output folder (must be empty unless --overwrite)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=None, help=f"epochs per model (default {d.epochs})")
    budget.add_argument("--budget", type=int, default=None,
                        help="optimiser steps per model (batch 1); epochs = ceil(budget / training slices)")
    p.add_argument("--size", type=int, nargs=2, default=d.size, metavar=("H", "W"), help="image size")
    p.add_argument("--frames", type=int, default=d.frames, help=frames_help)
    p.add_argument("--coils", type=int, default=d.coils, help="coils C")
    p.add_argument("--subjects", type=int, default=d.subjects, help="simulated subjects in total")
    p.add_argument("--test-subjects", type=int, default=d.test_subjects, help="of which held out for testing")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of simulation, masks and training")
    p.add_argument("--snr-db", type=float, default=d.snr_db, help="simulated SNR")


def add_run_args(p: argparse.ArgumentParser, d: BenchDefaults, device_help: str, models: str) -> None:
    """``--protocol``, ``--device``, ``--threads``, ``--set`` (training overrides for ``models``), ``--overwrite``."""
    p.add_argument("--protocol", choices=("paper", "global", "cmrxrecon"), default=d.protocol,
                   help="metric protocol (cmrxrecon: the CMRxRecon2023 ranking's frames, crop and per-volume means)")
    p.add_argument("--device", default="auto", help=device_help)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (tiny problems run fastest on one)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"extra training override for {models}, e.g. optim.lr=5e-4 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs in --out")


def parse_with_budget(p: argparse.ArgumentParser, d: BenchDefaults, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``args.epochs`` is ``d.epochs`` when neither ``--epochs`` nor ``--budget`` was given."""
    args = p.parse_args(argv)
    if args.epochs is None and args.budget is None:
        args.epochs = d.epochs
    return args


@dataclass(frozen=True)
class RunStart:
    """What :func:`start_run` set up.

    Attributes:
        out: the prepared output folder.
        command: the command line that reproduces the run.
        t_start: ``time.perf_counter()`` at the start.
    """

    out: Path
    command: str
    t_start: float


def start_run(script: str, args: argparse.Namespace, argv: Sequence[str] | None) -> RunStart:
    """Set the threads, print the command line and prepare ``args.out`` (see :func:`prepare_out`)."""
    t_start = time.perf_counter()
    set_threads(args.threads)
    cmd = command_line(script, argv)
    print(f"$ {cmd}", flush=True)
    return RunStart(prepare_out(args.out, args.overwrite), cmd, t_start)


def simulate_from_args(args: argparse.Namespace, root: Path, accels: Sequence[int], views: Sequence[str],
                       **sim_fields) -> dict[str, list[Path]]:
    """:func:`simulate_split` of the subjects, size, frames, coils, SNR and seed given on the command line.

    ``sim_fields`` are further :class:`~cinerecon.data.simulate.SimConfig` fields (e.g. ``view``).
    """
    counts = SplitCounts.from_total(args.subjects, args.test_subjects)
    sim = SimConfig(frames=args.frames, coils=args.coils, size=tuple(args.size), snr_db=args.snr_db, seed=args.seed,
                    **sim_fields)
    return simulate_split(root, counts, sim, accels, views, args.overwrite)


# ----------------------------------------------------------------------------- model sizes


#: PromptMR at small widths with the authors' constructor keywords (the widths of
#: ``shared/reference/promptmr_golden.pt``); the cascade count is set per run.
PROMPTMR_TINY_ORIGINAL = {
    "num_adj_slices": 5, "n_feat0": 8, "feature_dim": [12, 16, 20], "prompt_dim": [4, 8, 8],
    "sens_n_feat0": 4, "sens_feature_dim": [6, 8, 10], "sens_prompt_dim": [2, 4, 4],
    "len_prompt": [3, 3, 3], "prompt_size": [8, 4, 2],
}


@dataclass(frozen=True)
class TinySizes:
    """Small widths of the faithful deep baselines; all get the same number of cascades.

    Each model is the variant the paper's Table 1 row compares with, at a small width:
    CRUNet-MR as published; CRNN-MRI ``preset="original"`` (the authors' function: no
    per-cascade normalisation, zero states through their convolutions) with unshared
    weights per iteration (the paper's 1.49 M count); 3D UNet-MR ``preset="paper"`` (the
    4.00 M layout); CineNet with complex-valued convolutions (the original CINENet's);
    PromptMR ``preset="original"`` (the authors' function) at :data:`PROMPTMR_TINY_ORIGINAL`.

    Attributes:
        cascades: unrolled cascades (iterations) of every model.
        crunet_chans: CRUNet-MR feature channels (paper: 64).
        unet3d_chans: 3D UNet-MR feature channels (paper: 64).
        crnn_nf: CRNN-MRI feature channels (paper: 64).
        crnn_layers: CRNN-MRI layers per iteration (paper: 5).
        cinenet_chans: CineNet first-level complex channels of the plane U-Nets (a complex
            channel carries two real weights per connection: 6 complex ~ 8.5 real).
        cinenet_cg_iters: CG iterations of CineNet's data consistency.
    """

    cascades: int = 3
    crunet_chans: int = 8
    unet3d_chans: int = 8
    crnn_nf: int = 16
    crnn_layers: int = 5
    cinenet_chans: int = 6
    cinenet_cg_iters: int = 3

    def kwargs(self, name: str) -> dict:
        """Builder keyword arguments of model ``name`` (one of :data:`DEEP_MODELS`)."""
        c = self.cascades
        table = {
            "crunet": {"chans": self.crunet_chans, "cascades": c},
            "unet3d": {"preset": "paper", "chans": self.unet3d_chans, "cascades": c},
            "crnn": {"preset": "original", "share_weights": False, "nf": self.crnn_nf, "layers": self.crnn_layers,
                     "cascades": c},
            "cinenet": {"chans": self.cinenet_chans, "cascades": c, "cg_iters": self.cinenet_cg_iters,
                        "complex_conv": True},
            "promptmr": {"preset": "original", "num_cascades": c, **PROMPTMR_TINY_ORIGINAL},
        }
        if name not in table:
            raise ConfigError(f"no tiny size for model {name!r}; known: {sorted(table)}")
        return table[name]


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SplitCounts:
    """Subjects per split (each subject gives one slice per view)."""

    train: int
    val: int
    test: int

    @classmethod
    def from_total(cls, subjects: int, test: int, val: int = 1) -> "SplitCounts":
        """``subjects`` in total, ``test`` and ``val`` of them held out; at least one trains."""
        counts = cls(subjects - test - val, val, test)
        if counts.train < 1 or test < 1 or val < 0:
            raise ConfigError(f"need at least one training and one test subject: subjects={subjects}, "
                              f"test={test}, val={val}")
        return counts


def simulate_split(root: Path, counts: SplitCounts, sim_cfg: SimConfig, accels: Sequence[int],
                   views: Sequence[str], overwrite: bool) -> dict[str, list[Path]]:
    """Simulate ``counts`` subjects into ``root`` and write train/val/test lists (subjects in order).

    Args:
        root: output folder of the HDF5 files.
        counts: subjects per split.
        sim_cfg: :class:`cinerecon.data.simulate.SimConfig` (its seed is the base seed).
        accels: stored equispaced + ACS masks (``R04`` ...).
        views: views per subject.
        overwrite: replace existing files.

    Returns:
        {"train": [...], "val": [...], "test": [...]} file lists.
    """
    from cinerecon.data.h5 import write_split
    from cinerecon.data.simulate import simulate_dataset

    n = counts.train + counts.val + counts.test
    written = [p for p in simulate_dataset(root, n, sim_cfg, accels=tuple(int(a) for a in accels),
                                           overwrite=overwrite, views=tuple(views)) if p.suffix == ".h5"]
    by_subject = [[p for p in written if p.name.startswith(f"sim{i:04d}_")] for i in range(n)]
    bounds = {"train": (0, counts.train), "val": (counts.train, counts.train + counts.val),
              "test": (counts.train + counts.val, n)}
    split = {s: [p for i in range(lo, hi) for p in by_subject[i]] for s, (lo, hi) in bounds.items()}
    write_split(root, split, overwrite=True)  # replaces simulate_dataset's random split in our own folder
    return split


def epochs_for(n_train: int, epochs: int | None, budget: int | None) -> int:
    """Epochs of the training budget: ``epochs`` as given, or ``ceil(budget steps / n_train)`` (batch 1)."""
    if (epochs is None) == (budget is None):
        raise ConfigError("give exactly one of --epochs and --budget")
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {epochs}")
        return int(epochs)
    if budget < 1:
        raise ConfigError(f"--budget must be >= 1 step, got {budget}")
    return max(1, math.ceil(budget / max(n_train, 1)))


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainedModel:
    """One training run of a benchmark.

    Attributes:
        name: label of the run (the model name, or e.g. ``crunet_mixed``).
        model: registered model name.
        run_dir: run directory written by ``fit``.
        checkpoint: checkpoint used for testing (``best.pt``: best validation PSNR).
        parameters: number of model parameters.
        epochs: epochs trained.
        steps: optimiser steps (batch size 1: training items seen).
        seconds: wall time of ``fit``.
        final_loss: mean training loss of the last epoch.
        best_val_psnr: best validation PSNR (dB), or None without validation.
        val_psnr_zf: zero-filled validation PSNR (dB) of the last epoch, or None.
    """

    name: str
    model: str
    run_dir: Path
    checkpoint: Path
    parameters: int
    epochs: int
    steps: int
    seconds: float
    final_loss: float
    best_val_psnr: float | None
    val_psnr_zf: float | None


def train_one(label: str, model: str, kwargs: dict, data_root: Path, run_dir: Path, epochs: int, seed: int,
              device: str, overwrite: bool, mask_key: str | None = "R08", masks: Sequence[MaskSpec] = (),
              overrides: Sequence[str] = ()) -> TrainedModel:
    """Train one model with the shared settings of :data:`TRAIN_CONFIG`.

    Args:
        label: run label.
        model: registered model name.
        kwargs: builder keyword arguments.
        data_root: folder of HDF5 files with train.txt / val.txt.
        run_dir: run directory.
        epochs: epochs (the budget).
        seed: seed of initialisation, data order and on-the-fly masks.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        overwrite: allow a non-empty ``run_dir``.
        mask_key: stored training mask when ``masks`` is empty.
        masks: on-the-fly masks (mixed-mask training with several).
        overrides: extra ``a.b=value`` training overrides, applied last.

    Returns:
        :class:`TrainedModel`.
    """
    from cinerecon.train.config import ModelConfig, load_config, with_overrides
    from cinerecon.train.loop import fit

    cfg = load_config(TRAIN_CONFIG)
    cfg = dataclasses.replace(
        cfg, model=ModelConfig(model, dict(kwargs)),
        data=dataclasses.replace(cfg.data, root=str(data_root), mask_key=mask_key, masks=list(masks)),
        epochs=int(epochs), seed=int(seed), device=device, out=str(run_dir), overwrite=overwrite)
    if overrides:
        cfg = with_overrides(cfg, list(overrides))
    t0 = time.perf_counter()
    run = fit(cfg)
    seconds = time.perf_counter() - t0
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines() if s.strip()]
    vals = [r["val_psnr"] for r in lines if r.get("val_psnr") is not None]
    ckpt = run / "best.pt"
    return TrainedModel(label, model, run, ckpt, count_parameters(ckpt), len(lines),
                        _steps(run), seconds, float(lines[-1]["loss"]), max(vals) if vals else None,
                        lines[-1].get("val_psnr_zf"))


def _steps(run: Path) -> int:
    from cinerecon.train.checkpoints import read_checkpoint

    return int(read_checkpoint(run / "last.pt").step)


def count_parameters(checkpoint: Path) -> int:
    """Parameters of the model stored in ``checkpoint``."""
    from cinerecon.train.checkpoints import load_model

    model, _ = load_model(checkpoint, "cpu")
    return sum(p.numel() for p in model.parameters())


def training_table(runs: Sequence[TrainedModel]) -> str:
    """Markdown table of the training runs (same budget for every row)."""
    def opt(x: float | None) -> str:
        return "–" if x is None else f"{x:.2f}"

    rows = [[r.name, f"{r.parameters:,}", str(r.epochs), str(r.steps), f"{r.seconds:.1f}", f"{r.final_loss:.4f}",
             opt(r.best_val_psnr), opt(r.val_psnr_zf)] for r in runs]
    return markdown_table(["Model", "Params", "Epochs", "Steps", "Train s", "Final loss", "Best val PSNR",
                           "Val PSNR zero-filled"], rows)


# ----------------------------------------------------------------------------- small helpers


def prepare_out(out: Path, overwrite: bool) -> Path:
    """Create ``out``; refuse a non-empty folder unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out} is not empty; pass --overwrite to replace the study outputs in it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def set_threads(threads: int | None) -> None:
    """Set torch intra-op threads (None keeps torch's default)."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces this run (repository-relative script path)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([".venv/bin/python", f"benchmarks/{script}", *args])


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation; NaN for no values."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std())


def json_ready(obj: object) -> object:
    """Plain JSON values: :func:`cinerecon.train.config.to_dict` (dataclasses, paths, tuples), NaN and inf as None."""
    from cinerecon.train.config import to_dict

    return _finite_or_none(to_dict(obj))


def _finite_or_none(x: object) -> object:
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite_or_none(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x
