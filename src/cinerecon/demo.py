"""The end-to-end demo: simulate, train CRUNet-MR briefly, compare with classical methods.

``run_demo(DemoConfig(out=...))`` does, in ``out``:

1. ``data/``: simulates a small seeded set of multi-coil short-axis cines with
   :func:`cinerecon.data.simulate.simulate_dataset` (subjects split into train/val/test);
2. ``run/``: trains a small CRUNet-MR at acceleration R with the training loop
   (:func:`cinerecon.train.loop.fit`) for a wall-clock budget, or loads ``checkpoint``;
3. reconstructs the held-out test series with zero-filling, CG-SENSE, GRAPPA, L+S and the
   trained CRUNet-MR;
4. scores them (PSNR, SSIM, NMSE, HaarPSI; the paper's protocol and the global one) and
   writes ``demo_table.md``;
5. writes ``demo_figure.png``: target, each reconstruction, magnified error maps and the
   x-t profile through the heart.

The training loop has no time limit of its own: the demo trains one epoch, measures it and
resumes the run for as many more epochs as fit in the budget (see :func:`train_crunet`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from .errors import ConfigError, DataError, OutputExistsError

#: The CRUNet-MR shipped with the package (trained on real anatomy, see ``assets/crunet_real.md``);
#: ``cinerecon demo --pretrained`` uses it.
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "crunet_real.pt"
#: The real series held out from the shipped model's training; the demo shows it when present.
DEFAULT_REAL_SERIES = Path("../shared/data/real_cine_extra/rat_sax_8fr.npz")
#: How the demo turns a real magnitude series into k-space (as benchmarks/real_anatomy.py).
REAL_SIZE, REAL_COILS, REAL_SNR_DB, REAL_ACS = 128, 10, 35.0, 24

DATA_DIR = "data"
RUN_DIR = "run"
FIGURE_NAME = "demo_figure.png"
TABLE_NAME = "demo_table.md"
#: Everything the demo writes in ``out`` (removed first with ``overwrite``).
OUTPUT_NAMES = (DATA_DIR, RUN_DIR, FIGURE_NAME, TABLE_NAME)

#: Classical methods of :data:`cinerecon.classical.CLASSICAL` in table order, with display names.
CLASSICAL_LABELS = {"zero_filled": "Zero-filled", "cg_sense": "CG-SENSE", "grappa": "GRAPPA", "lplus_s": "L+S"}
MODEL_KEY = "crunet"
MODEL_LABEL = "CRUNet-MR"
PROTOCOL_NAMES = ("paper", "global")
PROTOCOL_NOTES = {
    "paper": "each frame of reconstruction and target scaled by its own maximum, 7x7 uniform SSIM; "
             "mean over frames (comparable with the paper)",
    "global": "data range = maximum of the target series, Gaussian SSIM; PSNR and NMSE pooled over "
              "frames, SSIM and HaarPSI mean over frames",
}
Log = Callable[[str], None]
PANEL_INCHES = 1.9
FIGURE_DPI = 130


@dataclass(frozen=True)
class DemoConfig:
    """Settings of :func:`run_demo`.

    Attributes:
        out: output folder (refused when it exists and is not empty, unless ``overwrite``).
        subjects: simulated subjects (>= 2; split into train / val / test by the simulator).
        frames: cardiac phases T per series.
        coils: receive coils C.
        size: image size (H, W); W is the phase-encoding axis.
        accel: nominal acceleration R (equispaced lines plus the simulator's ACS block).
        seed: seed of the simulation, the model initialisation and the data order.
        chans: CRUNet-MR feature channels.
        cascades: CRUNet-MR cascades.
        train_minutes: wall-clock budget of the training (the calibration step included).
        epochs: train exactly this many epochs instead of filling the budget.
        lr: constant AdamW learning rate (higher than the paper's 3e-4: the run is short).
        frames_window: train on random windows of this many adjacent frames (circular in time);
            None, or a window not shorter than the series, trains on whole series. Short
            windows make steps cheaper: within a few CPU minutes, 3 cascades trained on
            5-frame windows reach a higher test PSNR than 5 cascades on whole series.
        checkpoint: a trained checkpoint (ours or the authors') to use instead of training.
        real_series: with ``checkpoint``, reconstruct this real magnitude series (``.npz``, made
            into 10-coil k-space at 128 x 128) instead of a simulated one.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
        error_gain: magnification of the |error| maps in the figure.
        overwrite: replace the demo's previous outputs in ``out``.
        progress: show training progress bars.
    """

    out: Path = Path("demo_out")
    subjects: int = 8
    frames: int = 12
    coils: int = 8
    size: tuple[int, int] = (64, 64)
    accel: int = 8
    seed: int = 0
    chans: int = 16
    cascades: int = 3
    train_minutes: float = 3.0
    epochs: int | None = None
    lr: float = 1e-3
    frames_window: int | None = 5
    checkpoint: Path | None = None
    real_series: Path | None = None
    device: str = "auto"
    error_gain: float = 3.0
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        from .data.simulate import MIN_SIM_SIZE

        # Messages name the ``cinerecon demo`` flags (the CLI is the usual way in).
        if self.subjects < 2:
            raise ConfigError(f"--subjects must be >= 2 (one held out for testing), got {self.subjects}")
        for flag, value in (("--frames", self.frames), ("--coils", self.coils), ("--accel", self.accel),
                            ("--chans", self.chans), ("--cascades", self.cascades)):
            if value < 1:
                raise ConfigError(f"{flag} must be >= 1, got {value}")
        if len(self.size) != 2 or min(self.size) < MIN_SIM_SIZE:
            raise ConfigError(f"--size must be two integers H W, both >= {MIN_SIM_SIZE}, got {' '.join(map(str, self.size))}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")
        if not (math.isfinite(self.train_minutes) and self.train_minutes > 0):
            raise ConfigError(f"--train-minutes must be a positive number, got {self.train_minutes}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a finite number > 0, got {self.lr}")
        if self.frames_window is not None and self.frames_window < 1:
            raise ConfigError(f"--frames-window must be >= 1 (or 0: whole series), got {self.frames_window}")
        if not (math.isfinite(self.error_gain) and self.error_gain > 0):
            raise ConfigError(f"--error-gain must be a finite number > 0, got {self.error_gain}")
        if self.real_series is not None and self.checkpoint is None:
            raise ConfigError("a real series needs trained weights (--pretrained or --checkpoint): the demo trains "
                              "on simulated data only")


@dataclass(frozen=True)
class Scores:
    """Series metrics of one reconstruction under one protocol.

    Attributes:
        protocol: ``"paper"`` or ``"global"`` (see :mod:`cinerecon.evaluate.metrics`).
        psnr: dB.
        ssim: structural similarity.
        nmse: normalised mean squared error.
        haarpsi: HaarPSI, or None for images smaller than 16 pixels.
    """

    protocol: str
    psnr: float
    ssim: float
    nmse: float
    haarpsi: float | None


@dataclass(frozen=True)
class MethodResult:
    """One reconstruction of the test series.

    Attributes:
        key: method key (``"zero_filled"``, ..., ``"crunet"``).
        label: display name.
        scores: one :class:`Scores` per protocol, in :data:`PROTOCOL_NAMES` order.
        seconds: wall time of the reconstruction.
    """

    key: str
    label: str
    scores: tuple[Scores, ...]
    seconds: float

    def score(self, protocol: str) -> Scores:
        """The scores under ``protocol``."""
        for s in self.scores:
            if s.protocol == protocol:
                return s
        raise ConfigError(f"no scores for protocol {protocol!r}; have {[s.protocol for s in self.scores]}")


@dataclass(frozen=True)
class TrainingSummary:
    """How the CRUNet-MR weights were obtained.

    Attributes:
        checkpoint: the weights used.
        trained: True when the demo trained them, False when loaded from ``--checkpoint``.
        run_dir: training run directory (None when loaded).
        epochs: epochs trained (0 when loaded).
        steps: optimiser steps (0 when loaded).
        epoch_seconds: measured wall time of the last training epoch (None when loaded).
        seconds: wall time of the training (0 when loaded).
        train_items: training series per epoch (0 when loaded).
        parameters: number of model parameters.
    """

    checkpoint: Path
    trained: bool
    run_dir: Path | None = None
    epochs: int = 0
    steps: int = 0
    epoch_seconds: float | None = None
    seconds: float = 0.0
    train_items: int = 0
    parameters: int = 0


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes:
        out: output folder.
        data_dir: simulated dataset, or the folder of the real series.
        test_file: the held-out series that was reconstructed.
        mask_key: stored mask used (``R08``).
        accel: nominal acceleration.
        effective_accel: fully sampled over sampled phase-encode lines.
        acs: central fully sampled lines.
        training: how the model weights were obtained.
        methods: one entry per method in table order.
        frame: frame shown in the figure.
        profile_point: (row, col) the x-t profile passes through (vertical line at col).
        table: the Markdown table text.
        table_path: ``out/demo_table.md``.
        figure_path: ``out/demo_figure.png``.
    """

    out: Path
    data_dir: Path
    test_file: Path
    mask_key: str
    accel: int
    effective_accel: float
    acs: int
    training: TrainingSummary
    methods: tuple[MethodResult, ...]
    frame: int
    profile_point: tuple[int, int]
    table: str
    table_path: Path
    figure_path: Path


# ----------------------------------------------------------------------------- small helpers


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; other names as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}: {e}") from None


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create ``out``; refuse a non-empty one unless ``overwrite`` (then remove only the demo's outputs).

    Raises:
        OutputExistsError: ``out`` is a file, or a non-empty folder and ``overwrite`` is False.
    """
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"demo output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"demo output folder {out} exists and is not empty; pass --overwrite to "
                                    f"replace the demo's outputs there ({', '.join(OUTPUT_NAMES)})")
        for p in _own_outputs(out):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _own_outputs(out: Path) -> list[Path]:
    """The files a previous demo wrote in ``out``: its figure and table, the simulator's slices and split
    lists in ``data/``, the training run's files in ``run/``; anything else there is the user's and stays."""
    from .train.loop import RUN_FILES, TB_DIR

    mine = [out / FIGURE_NAME, out / TABLE_NAME]
    data, run = out / DATA_DIR, out / RUN_DIR
    for folder, ok in ((data, lambda p: re.fullmatch(r"sim\d{4}_[a-z]+\.h5|(train|val|test)\.txt", p.name)),
                       (run, lambda p: p.name in (*RUN_FILES, TB_DIR))):
        if folder.is_symlink():  # a link where the demo makes its folder: the link goes, never what it points to
            mine.append(folder)
        elif folder.is_dir():
            mine += [p for p in sorted(folder.iterdir()) if ok(p)]
    return [p for p in mine if os.path.lexists(p)]


def heart_centre(target: torch.Tensor, percentile: float = 90.0) -> tuple[int, int]:
    """(row, col) of the moving heart: centroid of the pixels whose temporal std of |x| is highest.

    Args:
        target: (T, H, W) complex or real series.
        percentile: pixels at or above this percentile of the temporal std map count.

    Returns:
        Integer (row, col) inside the image.
    """
    from .evaluate.dynamic import dynamic_mask, temporal_std

    if target.ndim != 3:
        raise DataError(f"heart_centre expects a (T, H, W) series, got shape {tuple(target.shape)}")
    std = temporal_std(target).double()
    weight = std * dynamic_mask(target, percentile)
    if float(weight.sum()) <= 0:  # a static series: use the image centre
        return target.shape[-2] // 2, target.shape[-1] // 2
    rows = torch.arange(std.shape[0], dtype=std.dtype)[:, None]
    cols = torch.arange(std.shape[1], dtype=std.dtype)[None, :]
    total = weight.sum()
    return int(round(float((weight * rows).sum() / total))), int(round(float((weight * cols).sum() / total)))


def most_dynamic_frame(target: torch.Tensor) -> int:
    """Index of the frame farthest (L2 of magnitudes) from the temporal mean: e.g. end-systole."""
    mag = target.abs().double()
    dev = (mag - mag.mean(dim=0, keepdim=True)).flatten(1).norm(dim=1)
    return int(dev.argmax())


# ----------------------------------------------------------------------------- steps


def simulate(cfg: DemoConfig, data_dir: Path) -> list[Path]:
    """Simulate the demo dataset into ``data_dir`` (HDF5 files and split lists)."""
    from .data.simulate import SimConfig, simulate_dataset

    sim = SimConfig(frames=cfg.frames, coils=cfg.coils, size=(int(cfg.size[0]), int(cfg.size[1])), view="sax",
                    seed=cfg.seed)
    return simulate_dataset(data_dir, cfg.subjects, sim, accels=(cfg.accel,), overwrite=cfg.overwrite)


def train_config(cfg: DemoConfig, data_dir: Path, run_dir: Path, epochs: int, resume: bool = False):
    """The :class:`cinerecon.train.config.TrainConfig` of the demo's training run.

    The learning rate is constant (no warm-up, no decay), so that the run can be extended
    epoch by epoch with ``resume`` without changing the schedule of the epochs already done.
    """
    from .train.config import DataConfig, ModelConfig, OptimConfig, TrainConfig

    window = cfg.frames_window if cfg.frames_window is not None and cfg.frames_window < cfg.frames else None
    return TrainConfig(
        model=ModelConfig("crunet", {"chans": cfg.chans, "cascades": cfg.cascades}),
        data=DataConfig(root=str(data_dir), mask_key=f"R{cfg.accel:02d}", frames_window=window,
                        batch_size=1, max_val_items=1),
        optim=OptimConfig(lr=cfg.lr, min_lr=cfg.lr, warmup_epochs=0),
        epochs=epochs, seed=cfg.seed, device=cfg.device, progress=cfg.progress, out=str(run_dir),
        resume=resume, overwrite=not resume, log_every=1)


def train_crunet(cfg: DemoConfig, data_dir: Path, run_dir: Path, log: Log) -> TrainingSummary:
    """Train CRUNet-MR with :func:`cinerecon.train.loop.fit` within ``cfg.train_minutes``.

    The loop has no time limit of its own, so the demo trains one epoch, measures it, and
    resumes the run (``resume=True`` with a larger epoch count) for as many further epochs
    as the measured epoch time says fit in the budget left; it stops when not one more
    fits. At least one epoch is trained. ``cfg.epochs`` fixes the count instead.
    """
    from .train.data import build_datasets
    from .train.loop import fit

    start = time.perf_counter()
    probe = train_config(cfg, data_dir, run_dir, 1)
    train_set, val_set = build_datasets(probe.data, probe.seed)
    n_train = len(train_set)
    budget = cfg.train_minutes * 60.0
    done, todo, epoch_s = 0, cfg.epochs or 1, None
    while todo > 0:
        log(f"training CRUNet-MR (chans={cfg.chans}, cascades={cfg.cascades}, R={cfg.accel}): epochs "
            f"{done + 1}-{done + todo} on {n_train} series in {run_dir} ...")
        t0 = time.perf_counter()
        fit(train_config(cfg, data_dir, run_dir, done + todo, resume=done > 0), train_set, val_set)
        epoch_s = (time.perf_counter() - t0) / todo
        done += todo
        if cfg.epochs is not None:
            break
        todo = int((budget - (time.perf_counter() - start)) // epoch_s)
    best = run_dir / "best.pt"
    ck = best if best.is_file() else run_dir / "last.pt"
    return TrainingSummary(ck, True, run_dir, done, done * n_train, epoch_s, time.perf_counter() - start, n_train)


def load_crunet(path: Path, device: torch.device) -> nn.Module:
    """Load a checkpoint (ours or the authors') for inference."""
    from .train.checkpoints import load_model

    model, _ = load_model(path, device=device)
    return model


def reconstruct_all(methods: dict[str, tuple[str, object]], kspace: torch.Tensor, mask: torch.Tensor,
                    maps: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]]:
    """Run each ``fn(kspace, mask, maps)``; return key -> ((T, H, W) complex on CPU, seconds).

    Args:
        methods: key -> (label, callable) in table order.
        kspace: (1, C, T, H, W) undersampled k-space.
        mask: broadcastable mask (1, 1, T|1, 1, W).
        maps: (1, C, 1, H, W).
    """
    out = {}
    b, _, t, h, w = kspace.shape
    for key, (label, fn) in methods.items():
        start = time.perf_counter()
        with torch.no_grad():
            rec = fn(kspace, mask, maps)
        if kspace.device.type == "cuda":
            torch.cuda.synchronize(kspace.device)
        seconds = time.perf_counter() - start
        if not isinstance(rec, torch.Tensor) or tuple(rec.shape) != (b, t, h, w):
            shape = tuple(rec.shape) if isinstance(rec, torch.Tensor) else type(rec).__name__
            raise DataError(f"{label}: expected an image (B, T, H, W) = {(b, t, h, w)}, got {shape}")
        out[key] = (rec[0].detach().to(torch.complex64).cpu(), seconds)
    return out


def score(rec: torch.Tensor, target: torch.Tensor) -> tuple[Scores, ...]:
    """:class:`Scores` of a (T, H, W) reconstruction under every protocol of :data:`PROTOCOL_NAMES`."""
    from .evaluate.metrics import HAARPSI_MIN_SIZE, series_metrics

    with_hp = min(target.shape[-2:]) >= HAARPSI_MIN_SIZE
    out = []
    for p in PROTOCOL_NAMES:
        m = series_metrics(rec, target, p, with_haarpsi=with_hp)
        out.append(Scores(p, float(m.psnr), float(m.ssim), float(m.nmse),
                          None if m.haarpsi is None else float(m.haarpsi)))
    return tuple(out)


def _fmt(x: float | None, digits: int) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def table_markdown(res_methods: tuple[MethodResult, ...], header: str) -> str:
    """The demo table: a header paragraph, then one Markdown table per protocol."""
    from .evaluate.report import markdown_table

    parts = [header]
    for p in PROTOCOL_NAMES:
        rows = []
        for m in res_methods:
            s = m.score(p)
            rows.append([m.label, _fmt(s.psnr, 2), _fmt(s.ssim, 4), _fmt(s.nmse, 4), _fmt(s.haarpsi, 4),
                         f"{m.seconds:.2f}"])
        parts.append(f"## {p.capitalize()} protocol\n\n{PROTOCOL_NOTES[p]}.\n\n"
                     + markdown_table(["Method", "PSNR (dB)", "SSIM", "NMSE", "HaarPSI", "Time (s)"], rows))
    return "\n\n".join(parts) + "\n"


def demo_figure(target: torch.Tensor, recons: dict[str, torch.Tensor], labels: dict[str, str],
                subtitles: dict[str, str], mask: torch.Tensor, frame: int, point: tuple[int, int],
                path: Path, title: str, error_gain: float) -> Path:
    """The paper-style comparison figure.

    Columns: target, then each reconstruction. Rows: frame ``frame``; its |error| x gain;
    the x-t profile (the column through ``point``, position down, frame to the right); its
    |error| x gain. The target column shows the profile line, the k-t sampling pattern and
    the temporal standard deviation used to find the heart.

    Args:
        target: (T, H, W) complex.
        recons: key -> (T, H, W) complex.
        labels: key -> column title.
        subtitles: key -> second title line (metrics).
        mask: sampling mask broadcastable to (1, T, 1, W).
        frame: frame index shown.
        point: (row, col) of the profile line.
        path: output PNG.
        title: figure title.
        error_gain: error magnification.
    """
    from .evaluate.dynamic import temporal_std
    from .evaluate.figures import error_map, xt_profile  # also selects matplotlib's Agg backend

    import matplotlib.pyplot as plt

    gt = target.abs().double().numpy()
    t_frames, h, w = gt.shape
    col = point[1]
    vmax = float(gt[frame].max()) or 1.0
    ref_prof = xt_profile(gt, point, "vertical")
    pmax = float(ref_prof.max()) or 1.0
    keys = list(recons)
    ncol = 1 + len(keys)
    fig, ax = plt.subplots(4, ncol, figsize=(PANEL_INCHES * ncol, PANEL_INCHES * 4.1),
                           squeeze=False, layout="constrained")
    img_kw = dict(cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
    prof_kw = dict(cmap="gray", vmin=0, vmax=pmax, aspect="auto", interpolation="nearest")
    err_kw = dict(cmap="inferno", vmin=0, interpolation="nearest")

    ax[0, 0].imshow(gt[frame], **img_kw)
    ax[0, 0].axvline(col, color="yellow", lw=0.8, ls="--")
    ax[0, 0].set_title("Ground truth\n(fully sampled)", fontsize=9)
    lines = mask.reshape(-1, mask.shape[-1]).expand(t_frames, -1).cpu().numpy()
    ax[1, 0].imshow(lines, cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax[1, 0].set_title("sampling mask\n($k_y$ across, frame down)", fontsize=9)
    ax[2, 0].imshow(ref_prof, **prof_kw)
    ax[2, 0].set_title("x-t profile", fontsize=9)
    std = temporal_std(target).double().numpy()
    ax[3, 0].imshow(std, cmap="viridis", interpolation="nearest")
    ax[3, 0].axvline(col, color="yellow", lw=0.8, ls="--")
    ax[3, 0].set_title("temporal std\n(profile line)", fontsize=9)
    for j, key in enumerate(keys, start=1):
        r = recons[key].abs().double().numpy()
        ax[0, j].imshow(r[frame], **img_kw)
        ax[0, j].set_title(f"{labels[key]}\n{subtitles[key]}", fontsize=9)
        ax[1, j].imshow(error_map(r[frame], gt[frame], error_gain), vmax=vmax, **err_kw)
        prof = xt_profile(r, point, "vertical")
        ax[2, j].imshow(prof, **prof_kw)
        ax[3, j].imshow(error_map(prof, ref_prof, error_gain), vmax=pmax, aspect="auto", **err_kw)
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
        a.set_box_aspect(1)  # square panels whatever the image's aspect (x-t profiles, mask)
    row_names = (f"frame {frame + 1} of {t_frames}", f"|error| x{error_gain:g}",
                 f"x-t profile (column {col})\nposition down, frame across", f"x-t |error| x{error_gain:g}")
    for i, name in enumerate(row_names):
        ax[i, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- the demo


def _quiet(message: str) -> None:
    """The default ``log`` of :func:`run_demo`: say nothing."""


def real_test_sample(cfg: DemoConfig):
    """(CineSample undersampled at ``cfg.accel`` with 24 ACS lines, mask name) of ``cfg.real_series``."""
    from .data.realistic import load_series
    from .data.simulate import real_cine_to_sample
    from .masks import MaskSpec, make_mask

    path = Path(cfg.real_series)
    t0 = load_series(path).shape[0]
    full = real_cine_to_sample(path, coils=REAL_COILS, snr_db=REAL_SNR_DB, seed=cfg.seed,
                               size=(REAL_SIZE, REAL_SIZE), n_frames=min(cfg.frames, t0))
    spec = MaskSpec("equispaced_acs", cfg.accel, REAL_ACS)
    mask = make_mask(spec, full.shape[1], REAL_SIZE, seed=cfg.seed)
    return full.with_mask(mask, accel=float(cfg.accel), acs=REAL_ACS), f"R{cfg.accel:02d}"


def run_demo(cfg: DemoConfig, log: Log = _quiet) -> DemoResult:
    """Run the whole demo (see the module docstring) and return what it produced.

    Args:
        cfg: settings.
        log: called with one line per step (e.g. ``print``).

    Raises:
        OutputExistsError: ``cfg.out`` is not empty and ``cfg.overwrite`` is False.
        WeightsNotFoundError / DataError: ``cfg.checkpoint`` is missing or unreadable.
        ConfigError: bad settings.
    """
    from .classical import CLASSICAL
    from .data.h5 import read_h5, read_split
    from .masks import acs_lines, effective_acceleration

    out = Path(cfg.out)
    device = resolve_device(cfg.device)
    model = None
    if cfg.checkpoint is not None:  # fail before writing anything
        ck = Path(cfg.checkpoint).resolve()
        if cfg.overwrite and any(ck.is_relative_to((out / n).resolve()) for n in OUTPUT_NAMES):
            raise ConfigError(f"--checkpoint {cfg.checkpoint} lies in the demo outputs that --overwrite would "
                              f"delete; copy it elsewhere first")
        model = load_crunet(Path(cfg.checkpoint), device)
    prepare_out(out, cfg.overwrite)
    data_dir, run_dir = out / DATA_DIR, out / RUN_DIR
    if cfg.real_series is not None:
        sample, mask_key = real_test_sample(cfg)
        data_dir, test_file = Path(cfg.real_series).parent, Path(cfg.real_series)
        training = TrainingSummary(Path(cfg.checkpoint), False)
        log(f"using CRUNet-MR weights from {cfg.checkpoint} (no training) on the real series {test_file}")
        what = (f"real magnitude series made into {REAL_COILS}-coil k-space (smooth synthetic phase, birdcage maps, "
                f"{REAL_SNR_DB:g} dB noise), held out from the shipped model's training")
    else:
        log(f"simulating {cfg.subjects} subjects (T={cfg.frames}, C={cfg.coils}, {cfg.size[0]}x{cfg.size[1]}) "
            f"into {data_dir} ...")
        simulate(cfg, data_dir)
        if model is None:
            training = train_crunet(cfg, data_dir, run_dir, log)
            model = load_crunet(training.checkpoint, device)
        else:
            log(f"using CRUNet-MR weights from {cfg.checkpoint} (no training)")
            training = TrainingSummary(Path(cfg.checkpoint), False)
        test_files = read_split(data_dir)["test"]
        if not test_files:
            raise DataError(f"{data_dir}: the simulator left no test series (test.txt is empty)")
        test_file = test_files[0]
        mask_key = f"R{cfg.accel:02d}"
        sample = read_h5(test_file, mask_key=mask_key)
        what = "simulated short axis, held out from training"
    training = dataclasses.replace(training, parameters=sum(p.numel() for p in model.parameters()))
    if sample.target is None:
        raise DataError(f"{test_file}: no 'target' to score against")
    target = sample.target
    k, m, s = (sample.kspace[None].to(device), sample.mask[None].to(device), sample.maps[None].to(device))

    methods: dict[str, tuple[str, object]] = {key: (label, CLASSICAL[key]) for key, label in CLASSICAL_LABELS.items()}
    methods[MODEL_KEY] = (MODEL_LABEL, model)
    log(f"reconstructing {test_file.name} at R={cfg.accel} with {', '.join(lab for lab, _ in methods.values())} ...")
    recons = reconstruct_all(methods, k, m, s)
    results = tuple(MethodResult(key, methods[key][0], score(rec, target), sec) for key, (rec, sec) in recons.items())

    r_eff = effective_acceleration(sample.mask)
    n_acs = acs_lines(sample.mask)
    c, t, h, w = sample.shape
    if training.trained:
        how = (f"trained here for {training.epochs} epoch(s) = {training.steps} steps on {training.train_items} "
               f"simulated series in {training.seconds:.0f} s")
    else:
        how = f"loaded from {training.checkpoint}"
    header = (f"# cinerecon demo\n\nTest series `{sample.meta.name}` ({test_file.name}): T={t} frames, C={c} coils, "
              f"{h}x{w}, {what}.\n\n"
              f"Acceleration R={cfg.accel} (mask `{mask_key}`: equispaced + {n_acs} ACS lines), "
              f"effective acceleration {r_eff:.2f} (phase-encode lines / sampled lines).\n\n"
              f"{MODEL_LABEL}: {training.parameters:,} parameters, {how}.")
    table = table_markdown(results, header)
    table_path = out / TABLE_NAME
    table_path.write_text(table)

    frame = most_dynamic_frame(target)
    point = heart_centre(target)
    subtitles = {}
    for r in results:
        sc = r.score("paper")
        subtitles[r.key] = f"{sc.psnr:.2f} dB / {sc.ssim:.3f}"
    labels = {r.key: r.label for r in results}
    labels["zero_filled"] = "Zero-filled\n(undersampled)"
    fig_title = (f"{sample.meta.name}, R={cfg.accel} (effective {r_eff:.1f}); PSNR / SSIM (paper protocol)")
    figure_path = demo_figure(target, {key: rec for key, (rec, _) in recons.items()}, labels, subtitles,
                              sample.mask, frame, point, out / FIGURE_NAME, fig_title, cfg.error_gain)
    return DemoResult(out, data_dir, test_file, mask_key, cfg.accel, r_eff, n_acs, training, results, frame, point,
                      table, table_path, figure_path)
