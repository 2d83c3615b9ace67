"""The training loop: ``fit(cfg) -> run directory``.

One epoch = one pass over the training set (AdamW, the paper's loss, optional bf16
autocast on CUDA, optional gradient clipping), then validation on the val split
(magnitude PSNR of the reconstruction and of the zero-filled input), then ``last.pt``
(every epoch, with optimiser, scheduler and RNG states for exact resumption) and
``best.pt`` (weights of the best validation PSNR; the lowest training loss without a
validation set). The run directory also holds ``config.yaml`` (the resolved config),
``metrics.jsonl`` (one line per epoch) and ``tb/`` (TensorBoard scalars).

With ``optim.ema_decay`` a moving average of the weights (:mod:`cinerecon.train.ema`) is
updated after every optimiser step; it is what validation scores (the trained weights are
scored too, ``val_psnr_trained``) and what ``best.pt`` and ``last.pt`` hold as their weights,
``last.pt`` keeping the trained weights beside it for resuming. (Without a validation set
``best.pt`` is still chosen by the training loss, which the trained weights produced.)

With a time budget (``time_budget_min``, ``--time-budget``) the epoch count is fitted to
the measured time after every epoch, and the clock is also read after every step (no
device synchronisation): when the next step (plus the expected validation) would overrun,
the epoch ends there, is validated and saved (``metrics.jsonl`` gives ``partial_steps``
of ``steps_per_epoch``), and the run is finished, its ``config.yaml`` saying so in
``epochs``. Resuming is bit-exact from any epoch end of an unchanged config (a crash, a
kill); resuming a finished run says so and trains nothing; a larger ``--epochs`` continues
it from the next epoch (a changed config: the rest of a shortened epoch is not replayed).

Run with ``torchrun --nproc_per_node N`` for DistributedDataParallel (see
:mod:`cinerecon.train.distributed`); only rank 0 logs and saves.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from ..data.sample import CineBatch
from ..errors import ConfigError, DataError
from ..files import atomic_write_text
from ..models import WEIGHT_FREE_KWARGS, architecture_change, full_kwargs
from ..operators import SenseOp
from ..runtime import configure_cuda
from .checkpoints import (DISCARDED_RUN_PREFIX, PREVIOUS_RUN_PREFIX, load_model, prepare_run_dir, read_checkpoint,
                          save_checkpoint, unwrap)
from .config import ModelConfig, TrainConfig, dump_yaml
from .data import build_datasets, train_loader, val_loader
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed, resolve_device, wrap_model
from .ema import WeightEMA
from .stop import check as stop_requested
from .losses import LossTerms, reconstruction_loss
from .schedule import make_scheduler, warmup_cosine, warmup_note

RUN_FILES = ("last.pt", "best.pt", "config.yaml", "metrics.jsonl")
TB_DIR = "tb"


@dataclass(frozen=True)
class EpochResult:
    """Means over one epoch (all ranks) of the loss terms, and validation results.

    Attributes:
        epoch: 1-based epoch number.
        lr: learning rate at the end of the epoch's training.
        loss, kspace, l1, mse, ssim: mean training loss terms.
        val_psnr: mean validation PSNR (dB) of the reconstruction, or None.
        val_psnr_zf: mean validation PSNR of the zero-filled input, or None.
        val_loss: mean validation loss, or None.
        val_psnr_trained: with a moving average of the weights (``optim.ema_decay``), the
            validation PSNR of the trained weights (``val_psnr`` is the average's), else None.
    """

    epoch: int
    lr: float
    loss: float
    kspace: float
    l1: float
    mse: float
    ssim: float
    val_psnr: float | None = None
    val_psnr_zf: float | None = None
    val_loss: float | None = None
    val_psnr_trained: float | None = None


def magnitude_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) of magnitude series with the data range max |target| per series.

    Args:
        pred: (B, T, H, W) complex.
        target: (B, T, H, W) complex.

    Returns:
        (B,) PSNR values.
    """
    p, t = pred.abs().flatten(1), target.abs().flatten(1)
    mse = ((p - t) ** 2).mean(dim=1).clamp_min(torch.finfo(p.dtype).tiny)
    return 10.0 * torch.log10(t.amax(dim=1) ** 2 / mse)


def saved_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` as ``config.yaml`` records it: without the run-control flags ``overwrite`` and ``resume``.

    Re-running a saved config must not replace a run (its own or another) without being asked.
    """
    return dataclasses.replace(cfg, overwrite=False, resume=False)


def _check_init_architecture(cfg: TrainConfig, name: str, kwargs: dict) -> None:
    """Refuse a config that asks for another model than the ``init`` checkpoint holds (it would be ignored)."""
    asked = cfg.model
    if asked.name != name and asked != ModelConfig():  # a model named on purpose (not the default)
        raise ConfigError(f"--init {cfg.init} holds model {name!r}; the config asks for {asked.name!r} (drop --model "
                          "or model.name: the checkpoint's architecture is used)")
    change = architecture_change(name, kwargs, asked.kwargs, keys=asked.kwargs) if asked.kwargs else None
    if change is not None:
        k, have, want = change
        raise ConfigError(f"--init {cfg.init} holds {name} with {k}={have!r}; the config asks for "
                          f"model.kwargs.{k}={want!r} (the checkpoint's architecture is used: drop the override)")


def _build_model(cfg: TrainConfig, announce: bool = True) -> tuple[nn.Module, TrainConfig]:
    """Build the model of ``cfg`` (or the architecture and weights of ``cfg.init``).

    With ``cfg.init``, a weight-free option (``initial_image``, ...) that the config sets to
    another value than the checkpoint's is used, and said on stderr when ``announce``: it
    changes what the weights see (e.g. the start of a second weight set's items).
    """
    from ..models import build_model

    if cfg.init and not cfg.resume:
        init_model, info = load_model(cfg.init, "cpu")
        arch = info.get("model", {})
        name, kwargs = arch.get("name", cfg.model.name), dict(arch.get("kwargs", {}))
        _check_init_architecture(cfg, name, kwargs)
        stored = full_kwargs(name, kwargs)
        for key in WEIGHT_FREE_KWARGS:  # options that leave the weights' shapes alone
            if key in cfg.model.kwargs:
                kwargs[key] = cfg.model.kwargs[key]
                if announce and stored.get(key) != full_kwargs(name, kwargs).get(key):
                    print(f"train: --init {cfg.init} was trained with {key}={stored.get(key)!r}; this run uses the "
                          f"config's model.kwargs.{key}={cfg.model.kwargs[key]!r}", file=sys.stderr, flush=True)
        cfg = dataclasses.replace(cfg, model=ModelConfig(name, kwargs))
        model = build_model(name, **kwargs)
        model.load_state_dict(init_model.state_dict())
    else:
        model = build_model(cfg.model.name, **cfg.model.kwargs)
    if cfg.checkpoint_cascades:
        if hasattr(model, "checkpoint_cascades"):
            model.checkpoint_cascades = True
        else:
            warnings.warn(f"model {cfg.model.name!r} does not support activation checkpointing; ignored")
    return model.train(), cfg


def _forward(model: nn.Module, batch: CineBatch, amp: bool, device: torch.device) -> torch.Tensor:
    ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp else nullcontext()
    with ctx:
        pred = model(batch.kspace, batch.mask, batch.maps)
    # a magnitude-output model (PromptMR's original function) stays real: the loss compares magnitudes
    return pred.to(torch.complex64) if pred.is_complex() else pred.float()


def _require_target(batch: CineBatch) -> torch.Tensor:
    if batch.target is None:
        names = ", ".join(m.source or m.name for m in batch.meta)
        raise DataError(f"training needs fully sampled targets; missing in {names}")
    return batch.target


@torch.no_grad()
def validate(model: nn.Module, loader: Any, cfg: TrainConfig, device: torch.device,
             info: DistInfo) -> tuple[float, float, float] | None:
    """Mean (PSNR, zero-filled PSNR, loss) over the validation set (all ranks), or None if empty."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for batch in loader:
        stop_requested()
        batch = batch.to(device)
        target = _require_target(batch)
        pred = _forward(model, batch, cfg.amp, device)
        zf = SenseOp(batch.maps, batch.mask.to(batch.kspace.real.dtype)).adjoint(batch.kspace)
        loss = reconstruction_loss(pred, target, batch.maps, cfg.loss).total
        n = pred.shape[0]
        sums += torch.stack([magnitude_psnr(pred, target).sum().double(), magnitude_psnr(zf, target).sum().double(),
                             loss.double() * n, torch.tensor(float(n), dtype=torch.float64, device=device)])
    model.train(was_training)
    sums = all_reduce_sum(sums, info)
    if sums[3] == 0:
        return None
    return float(sums[0] / sums[3]), float(sums[1] / sums[3]), float(sums[2] / sums[3])


class _RunStart:
    """What a new run (not a resumed one) must undo if it fails before saving its first epoch.

    ``set_aside`` moves a previous run's files and ``tb/`` (``--overwrite``) into a hidden folder
    of the run directory; ``drop`` deletes them once the new run has saved its first epoch;
    ``restore`` (the new run failed before that, e.g. on a validation file that cannot be read,
    or was refused) removes what the new run wrote, puts the previous files back and removes a
    run directory that this run created and left empty. So a refused or failed start never
    costs the old checkpoints, nor leaves an empty folder behind.

    Args:
        run: the run directory.
        active: False for a resumed run and for the ranks that write nothing (then every
            method does nothing).
    """

    def __init__(self, run: Path, active: bool) -> None:
        self.run = run
        self.active = active
        self.created = active and not os.path.lexists(run)
        self.claimed = False  # the run files in ``run`` are this run's (set by ``set_aside``)
        self.folder: Path | None = None

    def set_aside(self, overwrite: bool) -> None:
        """Called once every check that can refuse the run has passed, before it writes anything."""
        if not self.active:
            return
        names = [n for n in (*RUN_FILES, TB_DIR) if os.path.lexists(self.run / n)] if overwrite else []
        if names:
            self.folder = Path(tempfile.mkdtemp(prefix=PREVIOUS_RUN_PREFIX, dir=self.run))
            for n in names:
                os.replace(self.run / n, self.folder / n)
        self.claimed = True

    def drop(self) -> None:
        # the run has saved: nothing to undo any more, even if the deletion below is interrupted
        folder, self.folder, self.active = self.folder, None, False
        if folder is not None:
            # renamed first, so that what a failed or interrupted deletion leaves is never taken for
            # a set-aside previous run (which the next start would refuse to train over)
            gone = folder.with_name(DISCARDED_RUN_PREFIX + folder.name[len(PREVIOUS_RUN_PREFIX):])
            os.replace(folder, gone)
            shutil.rmtree(gone, ignore_errors=True)
            if gone.exists():
                print(f"train: could not delete the previous run's files in {gone}; delete that folder",
                      file=sys.stderr)

    def restore(self) -> None:
        if not self.active or not self.run.is_dir():
            return
        for n in (*RUN_FILES, TB_DIR):
            new = self.run / n
            if self.claimed:  # before set_aside has finished, the run files there are not this run's
                if new.is_dir() and not new.is_symlink():
                    shutil.rmtree(new, ignore_errors=True)
                elif os.path.lexists(new):
                    new.unlink()
            if self.folder is not None and os.path.lexists(self.folder / n) and not os.path.lexists(new):
                os.replace(self.folder / n, new)
        if self.folder is not None:
            if any(self.folder.iterdir()):  # could not be put back: never delete a previous run's files
                print(f"train: the previous run's files are kept in {self.folder}", file=sys.stderr)
            else:
                self.folder.rmdir()
        self.folder, self.active = None, False
        if self.created and not any(self.run.iterdir()):
            self.run.rmdir()


def _writer(run: Path, info: DistInfo) -> Any:
    if not info.is_main:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed
        warnings.warn("tensorboard is not installed; no TensorBoard logs are written")
        return None
    return SummaryWriter(log_dir=str(run / TB_DIR))


def fit(cfg: TrainConfig, train_set: Dataset | None = None, val_set: Dataset | None = None) -> Path:
    """Train a model as configured and return the run directory.

    Args:
        cfg: resolved training config (see :func:`cinerecon.train.config.load_config`).
        train_set: any Dataset of CineSample; built from ``cfg.data`` when None.
        val_set: validation Dataset of CineSample; built from ``cfg.data`` when both
            datasets are None, otherwise no validation when None.

    Returns:
        The run directory ``cfg.out`` (``last.pt``, ``best.pt``, ``config.yaml``,
        ``metrics.jsonl``, ``tb/``).

    Raises:
        OutputExistsError: ``cfg.out`` is non-empty and neither ``resume`` nor ``overwrite`` is set.
        ConfigError / DataError: bad configuration or data.
    """
    info = init_distributed(cfg.device)
    try:
        return _fit(cfg, train_set, val_set, info)
    finally:
        cleanup(info)


def _fit(cfg: TrainConfig, train_set: Dataset | None, val_set: Dataset | None, info: DistInfo) -> Path:
    if cfg.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {cfg.epochs}")
    device = resolve_device(cfg.device, info)
    if device.type == "cuda":
        configure_cuda(cfg.tf32, benchmark=True)
    run = Path(cfg.out)
    start = _RunStart(run, info.is_main and not cfg.resume)
    try:
        return _start(cfg, train_set, val_set, info, device, run, start)
    except BaseException:
        start.restore()
        raise


def _start(cfg: TrainConfig, train_set: Dataset | None, val_set: Dataset | None, info: DistInfo,
           device: torch.device, run: Path, start: "_RunStart") -> Path:
    """:func:`fit` from the run directory on; ``start`` is undone by the caller if this raises first."""
    if info.is_main or cfg.resume:  # resuming only reads; every rank checks
        prepare_run_dir(run, cfg.resume, cfg.overwrite)
    barrier(info)

    resume_ck = read_checkpoint(run / "last.pt") if cfg.resume else None
    if resume_ck is not None and resume_ck.model_name != cfg.model.name:
        raise ConfigError(f"{run / 'last.pt'} holds model {resume_ck.model_name!r}, the config asks for "
                          f"{cfg.model.name!r}")
    change = None if resume_ck is None else architecture_change(
        resume_ck.model_name, resume_ck.model_kwargs, cfg.model.kwargs, free=("checkpoint_cascades",))
    if change is not None:
        k, have, want = change
        raise ConfigError(f"{run / 'last.pt'} holds {resume_ck.model_name} with {k}={have!r}; the config asks for "
                          f"model.kwargs.{k}={want!r}: a run resumes with the architecture it started with "
                          "(resume without --config or that override: the run's config.yaml holds it)")
    if resume_ck is not None and resume_ck.epoch >= cfg.epochs:
        _say_finished(run, resume_ck, cfg, info)
        return run
    if train_set is None and val_set is None:
        train_set, val_set = build_datasets(cfg.data, cfg.seed)
    if train_set is None:
        raise ConfigError("a training dataset is needed")

    torch.manual_seed(cfg.seed)
    model, cfg = _build_model(cfg, announce=info.is_main)
    if resume_ck is not None:  # the trained weights (state_dict holds their moving average when kept)
        trained = resume_ck.trained_state_dict
        unwrap(model).load_state_dict(trained if trained is not None else resume_ck.state_dict)
    model.to(device)
    ema = None
    if cfg.optim.ema_decay is not None:
        ema = WeightEMA(unwrap(model), cfg.optim.ema_decay)
        if resume_ck is not None and resume_ck.trained_state_dict is not None:
            ema.load(resume_ck.state_dict, resume_ck.ema_updates or 0)

    loader, sampler = train_loader(train_set, cfg.data, cfg.seed, info, device)
    vloader = val_loader(val_set, cfg.data, info, device) if val_set is not None else None
    budget = _Budget(time.monotonic(), cfg.epochs, [], device,
                     math.inf if cfg.time_budget_min is None else 60.0 * cfg.time_budget_min)
    step_s = _probe_step(model, loader, cfg, device, info, budget)
    # a first guess at validation's time (twice over with a moving average: it is scored too)
    budget.tail_s = (len(vloader) if vloader is not None else 0) * step_s * (1 if cfg.optim.ema_decay is None else 2)
    per_step = cfg.optim.schedule_per == "step"
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas,
                                  weight_decay=cfg.optim.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.optim.lr, cfg.optim.min_lr, cfg.optim.warmup_epochs, cfg.epochs,
                               len(loader) if per_step else 1)
    note = warmup_note(cfg.optim.warmup_epochs, cfg.epochs, len(loader) if per_step else 1)
    if note and info.is_main:
        print(f"train: {note}", file=sys.stderr, flush=True)
    start_epoch, step, best = 0, 0, None
    if resume_ck is not None:
        if resume_ck.optimizer is None or resume_ck.scheduler is None:
            raise DataError(f"{run / 'last.pt'} has no optimiser/scheduler state to resume from")
        optimizer.load_state_dict(_optimizer_state_by_name(resume_ck, model, run / "last.pt"))
        # load_state_dict updates the schedule objects in place: keep copies of the config's
        schedule = [copy.copy(fn) for fn in scheduler.lr_lambdas]
        scheduler.load_state_dict(resume_ck.scheduler)
        # The config is the truth: a changed epoch count, lr or schedule applies from here on
        # (an unchanged config resumes exactly).
        scheduler.lr_lambdas = schedule
        scheduler.base_lrs = [cfg.optim.lr for _ in optimizer.param_groups]
        for group, fn in zip(optimizer.param_groups, schedule):
            group["initial_lr"] = cfg.optim.lr
            group["lr"] = cfg.optim.lr * fn(scheduler.last_epoch)
        start_epoch, step, best = resume_ck.epoch, resume_ck.step, resume_ck.best
        rng = resume_ck.rng_state()
        if rng is not None:
            rng.restore()
    # Every check that can refuse the run before training is behind us: --overwrite now sets the
    # previous run's files aside, and deletes them only once this run has saved its first epoch.
    start.set_aside(cfg.overwrite)
    if info.is_main:
        atomic_write_text(run / "config.yaml", dump_yaml(saved_config(cfg)), fsync=True)
    _announce(cfg, model, train_set, val_set, loader, device, info, step_s, budget,
              resumed_from=None if resume_ck is None else start_epoch)
    return _train_epochs(_Training(cfg, run, model, ema, optimizer, scheduler, loader, sampler, vloader, train_set,
                                   budget, device, info, start), start_epoch, step, best)


@dataclass(frozen=True)
class _Training:
    """What :func:`_start` builds for the epochs of a run.

    Attributes:
        cfg: the resolved config (its ``epochs`` may be refitted by the time budget).
        run: the run directory.
        model: the trained model (DDP-unwrapped); ``ema`` its moving average, or None.
        optimizer, scheduler: AdamW and its learning-rate schedule.
        loader, sampler, vloader: training loader and its sampler; validation loader or None.
        train_set: the training dataset (``set_epoch`` called when it has one).
        budget: the time budget's clock.
        device, info: where the run computes; its process group.
        start: the previous run set aside by ``--overwrite``, dropped once the first epoch is saved.
    """

    cfg: TrainConfig
    run: Path
    model: nn.Module
    ema: WeightEMA | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loader: DataLoader
    sampler: DistributedSampler
    vloader: DataLoader | None
    train_set: Dataset
    budget: _Budget
    device: torch.device
    info: DistInfo
    start: _RunStart


def _train_epochs(t: _Training, start_epoch: int, step: int, best: float | None) -> Path:
    """The epochs of :func:`fit` (see there).

    Args:
        t: what :func:`_start` built.
        start_epoch: epochs done (0, or a resumed run's).
        step: optimiser steps done.
        best: the best validation score so far (None before the first epoch).

    Returns:
        The run directory.
    """
    cfg, run, model, ema, optimizer, scheduler = t.cfg, t.run, t.model, t.ema, t.optimizer, t.scheduler
    loader, sampler, vloader, train_set, budget = t.loader, t.sampler, t.vloader, t.train_set, t.budget
    device, info, start = t.device, t.info, t.start
    per_step = cfg.optim.schedule_per == "step"
    n_steps = len(loader)
    ddp_model = wrap_model(model, info, device)
    watch = _FiniteWatch(device)
    writer = _writer(run, info)
    show = info.is_main and cfg.progress
    try:
        for epoch in range(start_epoch, cfg.epochs):
            sampler.set_epoch(epoch)
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            sums = torch.zeros(6, dtype=torch.float64, device=device)
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show, leave=False,
                       file=sys.stderr, dynamic_ncols=True)
            done, cut = 0, False  # steps of this epoch; whether the time budget ended it early
            for batch in bar:
                batch = batch.to(device, non_blocking=True)
                target = _require_target(batch)
                pred = _forward(ddp_model, batch, cfg.amp, device)
                terms = reconstruction_loss(pred, target, batch.maps, cfg.loss)
                watch.record(terms.total, epoch + 1, step + 1, batch.meta)  # no host sync
                optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                if cfg.optim.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                if ema is not None:
                    ema.update(unwrap(model))
                step += 1
                stop_requested()  # a SIGTERM whose exception a callback swallowed ends the run here
                lr = optimizer.param_groups[0]["lr"]
                if per_step:
                    scheduler.step()
                vals = torch.stack([t.detach().double() for t in terms])
                sums[:5] += vals
                sums[5] += 1
                if step % max(cfg.log_every, 1) == 0:  # the step's only host synchronisations
                    watch.check(info)
                    if writer is not None or show:
                        host = vals.tolist()
                        bar.set_postfix(loss=f"{host[0]:.4g}", lr=f"{lr:.2e}")
                        if writer is not None:
                            for name, v in zip(LossTerms._fields, host):
                                writer.add_scalar(f"train/{name}", v, step)
                            writer.add_scalar("train/lr", lr, step)
                done += 1
                if (cfg.time_budget_min is not None and done < n_steps
                        and budget.out_of_time(done, n_steps, step, cfg.log_every, info)):
                    cut = True
                    break
            bar.close()
            if cut and info.is_main:
                print(f"train: stopping in epoch {epoch + 1} after {done} of {n_steps} steps: the next step would "
                      f"overrun the time budget of {cfg.time_budget_min:g} min; the run ends with this epoch",
                      file=sys.stderr, flush=True)
            watch.check(info)  # before anything is saved
            sums = all_reduce_sum(sums, info)
            means = (sums[:5] / sums[5].clamp_min(1)).tolist()
            lr = optimizer.param_groups[0]["lr"]
            if not per_step:
                scheduler.step()
            weights = unwrap(model) if ema is None else ema.model  # the run's weights: the average when kept
            val = validate(weights, vloader, cfg, device, info) if vloader is not None else None
            val_trained = validate(unwrap(model), vloader, cfg, device, info) \
                if vloader is not None and ema is not None else None
            for name, v in (("", val), (" of the trained weights", val_trained)):
                if v is not None and not v[0] > -math.inf:  # NaN or -inf: the weights give non-finite images
                    raise DataError(f"validation PSNR{name} is {v[0]} after epoch {epoch + 1}: the model's images "
                                    "are not finite (diverged training? lower optim.lr or set optim.grad_clip); "
                                    "nothing of this epoch is saved")
            stop = False
            if cut:  # the run ends with this shortened epoch: it is the last one
                cfg, stop = _set_epochs(cfg, epoch + 1, scheduler, n_steps if per_step else 1, run, info), True
            elif cfg.time_budget_min is not None:
                cfg, stop = _fit_budget(cfg, epoch + 1, budget, scheduler, n_steps if per_step else 1, run, info,
                                        done)
            result = EpochResult(epoch + 1, lr, *means, *(val if val is not None else (None, None, None)),
                                 val_psnr_trained=None if val_trained is None else val_trained[0])
            score = result.val_psnr if result.val_psnr is not None else -result.loss
            improved = best is None or (math.isfinite(score) and score > best)
            if improved:
                best = score
            if info.is_main:
                _log_epoch(writer, result, run, show,
                           {"partial_steps": done, "steps_per_epoch": n_steps} if cut else None)
                saved = saved_config(cfg)
                if improved:
                    save_checkpoint(run / "best.pt", weights, None, None, epoch + 1, saved, step, best, rng=False)
                save_checkpoint(run / "last.pt", weights, optimizer, scheduler, epoch + 1, saved, step, best,
                                trained=None if ema is None else model,
                                ema_updates=None if ema is None else ema.updates)
                start.drop()
            barrier(info)
            if stop or epoch + 1 >= cfg.epochs:
                break
    finally:
        if writer is not None:
            writer.close()
    return run


def _idle_parameters(model: nn.Module, batch: CineBatch) -> list[str]:
    """Names of the trainable parameters without a gradient after a backward pass on ``batch``.

    A model with a second weight set for masks without calibration (``uncalibrated_cascades``)
    routes each item to one set (:meth:`~cinerecon.models.unrolled.Unrolled.main_weight_items`),
    so a batch of one kind leaves the other set idle: that set, and only that one, is excused
    (DDP is then built with ``find_unused_parameters``). A set that the batch's items were
    routed to must have gradients everywhere.
    """
    idle = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if getattr(model, "uncalibrated_cascades", None) is not None:
        main = model.main_weight_items(batch.kspace, batch.mask)
        unused = "uncalibrated_cascades." if all(main) else "cascades." if not any(main) else None
        if unused is not None:
            idle = [n for n in idle if not n.startswith(unused)]
    return idle


def _probe_step(model: nn.Module, loader: Any, cfg: TrainConfig, device: torch.device,
                info: DistInfo | None = None, budget: "_Budget | None" = None) -> float:
    """Seconds of one training step: loading a batch, forward and backward (no optimiser step).

    Leaves the weights, the optimiser and the data order untouched; raises ConfigError when
    ``cfg.time_budget_min`` cannot fit even this one step (after the start-up time already
    spent, when ``budget`` is given), or, in a multi-process run, when some parameter gets no
    gradient (DistributedDataParallel would fail at its second step).
    """
    dataset = loader.dataset
    t0 = time.monotonic()
    items = [dataset[i] for i in range(min(cfg.data.batch_size, len(dataset)))]
    batch = loader.collate_fn(items).to(device)
    pred = _forward(model, batch, cfg.amp, device)
    reconstruction_loss(pred, _require_target(batch), batch.maps, cfg.loss).total.backward()
    idle = _idle_parameters(unwrap(model), batch)
    model.zero_grad(set_to_none=True)
    if idle and info is not None and info.enabled:
        raise ConfigError(f"model {cfg.model.name!r}: {len(idle)} parameter(s) get no gradient, e.g. {idle[:3]}; "
                          "multi-process (DDP) training needs every parameter to act")
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # once: the probe's time is the work's, not its launch's
    end = time.monotonic()
    seconds, spent = end - t0, 0.0
    if budget is not None:
        budget.epoch_start = end
        spent = end - budget.start
        if info is not None and info.enabled and cfg.time_budget_min is not None:  # every rank decides alike
            both = torch.tensor([seconds, spent], dtype=torch.float64, device=budget.device)
            seconds, spent = (all_reduce_sum(both, info) / info.world_size).tolist()
        budget.step_s = seconds
    if cfg.time_budget_min is not None and spent + seconds > 60.0 * cfg.time_budget_min:
        setup = f"; {spent:.1f} s of the budget spent on start-up and this probe step" if spent else ""
        raise ConfigError(f"time budget of {cfg.time_budget_min:g} min cannot fit one training step "
                          f"({seconds:.1f} s for a batch of {len(items)}, loading included{setup}); "
                          "nothing was trained or removed")
    return seconds


def _announce(cfg: TrainConfig, model: nn.Module, train_set: Dataset, val_set: Dataset | None, loader: Any,
              device: torch.device, info: DistInfo, step_s: float, budget: "_Budget | None" = None,
              resumed_from: int | None = None) -> None:
    """Print the start-up line: model, device, parameters (and weight sets), initial image, data and masks,
    the epoch a resumed run continues after, steps and seconds per step."""
    if not info.is_main:
        return
    net = unwrap(model)
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    what = f"{n_params:,} trainable parameters"
    second = getattr(net, "uncalibrated_cascades", None)
    if second is not None:
        n_second = sum(p.numel() for p in second.parameters() if p.requires_grad)
        what += (f" in two weight sets (main {n_params - n_second:,}: items whose mask has a calibration block; "
                 f"k-t {n_second:,}: the others; each set trains on its own items only)")
    start = full_kwargs(cfg.model.name, cfg.model.kwargs).get("initial_image")
    if start is not None:
        what += f", initial image {start}"
    if cfg.data.kind == "real_cine":
        masks = f"{len(cfg.data.real.masks)} mask patterns drawn per item"
    elif cfg.data.masks:
        masks = f"{len(cfg.data.masks)} mask pattern(s) drawn per item"
    else:
        masks = f"stored mask {cfg.data.mask_key}"
    extra = "" if resumed_from is None else f"; resuming after epoch {resumed_from}"
    if cfg.optim.ema_decay is not None:
        extra += f", weights averaged (EMA, decay {cfg.optim.ema_decay:g})"
    if cfg.time_budget_min is not None:
        extra += f", time budget {cfg.time_budget_min:g} min"
        if budget is not None and budget.epoch_start is not None and step_s > 0:
            fit = max(0, int((60.0 * cfg.time_budget_min - (budget.epoch_start - budget.start)) // step_s))
            room = fit / max(len(loader), 1)
            extra += (f" (about {fit} steps, {room:.3g} epochs)" if room < cfg.epochs
                      else f" (room for the {cfg.epochs} epochs asked)")
    print(f"train: {cfg.model.name} on {device} ({torch.get_num_threads()} threads, {info.world_size} "
          f"process(es)), {what}; {len(train_set)} training items "
          f"({cfg.data.kind}: {cfg.data.root}, {masks}), {0 if val_set is None else len(val_set)} validation items; "
          f"{len(loader)} steps per epoch, {cfg.epochs} epochs; about {step_s:.2f} s per step{extra}",
          file=sys.stderr, flush=True)


def _say_finished(run: Path, ck: Any, cfg: TrainConfig, info: DistInfo) -> None:
    """Tell that a resumed run has nothing left to train (its epochs are done, e.g. cut by its time budget)."""
    if not info.is_main:
        return
    why = ""
    if ck.config.get("time_budget_min") is not None:
        why = f"; its time budget ({ck.config['time_budget_min']:g} min) set its epoch count"
    print(f"train: {run} is finished: last.pt holds epoch {ck.epoch} and the config asks for {cfg.epochs} "
          f"epochs{why}; nothing to train (pass a larger --epochs to continue it)", file=sys.stderr, flush=True)


class _FiniteWatch:
    """Detects a non-finite training loss without a host synchronisation per step.

    :meth:`record` keeps, on the device, the first step whose loss was NaN or Inf;
    :meth:`check` (every ``log_every`` steps and at the end of every epoch, before anything
    is saved) reads it once, all ranks together, and raises DataError naming the epoch, the
    step and its items. Steps between the bad one and the check have run on NaN weights;
    they are never saved.

    Args:
        device: the training device.
    """

    def __init__(self, device: torch.device) -> None:
        self.first_bad = torch.zeros((), dtype=torch.int64, device=device)
        self.pending: dict[int, tuple[int, list]] = {}  # step -> (epoch, items' metadata) since the last check

    def record(self, loss: torch.Tensor, epoch: int, step: int, meta: list) -> None:
        """Remember ``step`` (1-based, counted over all epochs) if ``loss`` is not finite and no earlier one was."""
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad == 0)
        self.first_bad = torch.where(bad, step, self.first_bad)
        self.pending[step] = (epoch, meta)

    def check(self, info: DistInfo) -> None:
        """Raise DataError if a recorded loss was not finite on this or any other rank."""
        if not self.pending:
            return
        first, last = min(self.pending), max(self.pending)
        flags = torch.stack([self.first_bad, (self.first_bad > 0).to(torch.int64)])
        flags[1:] = all_reduce_sum(flags[1:], info)
        bad, anywhere = flags.tolist()
        pending, self.pending = self.pending, {}
        if bad:
            epoch, meta = pending[bad]
            names = ", ".join(m.source or m.name for m in meta)
            raise DataError(f"non-finite training loss at epoch {epoch}, step {bad} ({names}); found by the "
                            f"check after steps {first}-{last}")
        if anywhere:
            epoch = pending[first][0]
            raise DataError(f"non-finite training loss in another process between steps {first} and {last} "
                            f"(epoch {epoch}); that process names the items")


def _optimizer_state_by_name(ck: Any, model: nn.Module, source: Path) -> dict:
    """The checkpoint's optimiser state, matched to ``model``'s parameters by name.

    The state is stored by parameter position; when the model holds fewer parameters than
    the one that wrote the checkpoint (e.g. CRUNet-MR before its idle first-cascade ih2ih
    weights were dropped), positions are re-mapped through the stored weights' names.
    """
    state = ck.optimizer
    names = [n for n, _ in model.named_parameters()]
    groups = state.get("param_groups", [])
    if len(groups) != 1 or len(groups[0]["params"]) == len(names):
        return state
    idle = getattr(model, "idle_weights", dict)()
    stored = [k for k in ck.state_dict if k in set(names) or k in idle]
    if len(stored) != len(groups[0]["params"]) or not set(names) <= set(stored):
        raise DataError(f"{source}: the optimiser state holds {len(groups[0]['params'])} parameters, the model "
                        f"{len(names)}, and they cannot be matched by name")
    old = {name: pos for name, pos in zip(stored, groups[0]["params"])}
    inner = state.get("state", {})
    return {"state": {i: inner[old[n]] for i, n in enumerate(names) if old[n] in inner},
            "param_groups": [{**groups[0], "params": list(range(len(names)))}]}


@dataclass
class _Budget:
    """Wall-clock bookkeeping of a time-budgeted run (this session only).

    Attributes:
        start: ``time.monotonic()`` at the start of the session.
        max_epochs: the epoch count asked for (the budget never raises it above this).
        marks: elapsed seconds at the end of each epoch of this session.
        device: the training device (where the ranks' clocks are summed; NCCL needs CUDA).
        limit_s: the budget in seconds.
        step_s: seconds per step: the start-up probe's (loading included), then the latest measured mean.
        epoch_start: clock when this epoch's steps began (the probe's end, then each epoch's end mark).
        first_read: clock after this epoch's first step, or None (the origin of the mean step time: the
            first step also pays for the start of an epoch or of the session).
        last_read: clock after the latest step of this epoch that read it, or None.
        last_read_steps: steps of this epoch done at ``last_read``.
        tail_s: estimated seconds from an epoch's last step to its end (validation, logging).
    """

    start: float
    max_epochs: int
    marks: list[float]
    device: torch.device
    limit_s: float = math.inf
    step_s: float = 0.0
    epoch_start: float | None = None
    first_read: float | None = None
    last_read: float | None = None
    last_read_steps: int = 0
    tail_s: float = 0.0

    def out_of_time(self, done: int, total: int, step: int, log_every: int, info: DistInfo) -> bool:
        """After step ``done`` of ``total`` in this epoch: would the next one overrun the budget?

        One ``time.monotonic()`` read, no device synchronisation: the step time is the mean of
        this epoch's steps after its first (loading included; the first step's own time also
        holds the epoch's or the session's start), and the estimated validation time of the
        epoch's end is kept in reserve. With several processes the ranks decide together every
        ``log_every`` steps (where the loop synchronises anyway), looking that many steps ahead.
        """
        now = time.monotonic()
        if self.first_read is None:  # done == 1: every step of an epoch but its last reads the clock
            self.first_read = now
        else:
            self.step_s = (now - self.first_read) / (done - 1)
        self.last_read, self.last_read_steps = now, done
        limit, mean = self.limit_s, self.step_s
        if not info.enabled:
            return now - self.start + mean + self.tail_s > limit
        every = max(log_every, 1)
        if step % every:
            return False
        ahead = min(every, total - done)
        want = torch.tensor([float(now - self.start + ahead * mean + self.tail_s > limit)], dtype=torch.float64,
                            device=self.device)
        return float(all_reduce_sum(want, info)[0]) > 0

    def end_epoch(self, now: float, steps: int) -> None:
        """Learn the tail of an epoch of ``steps`` steps that ended at ``now``; the next epoch starts."""
        if self.epoch_start is not None:
            if self.last_read is not None:
                self.tail_s = max(0.0, now - self.last_read - (steps - self.last_read_steps) * self.step_s)
            else:
                self.tail_s = max(0.0, now - self.epoch_start - steps * self.step_s)
        self.epoch_start, self.first_read, self.last_read, self.last_read_steps = now, None, None, 0


def _set_epochs(cfg: TrainConfig, epochs: int, scheduler: Any, steps_per_epoch: int, run: Path,
                info: DistInfo) -> TrainConfig:
    """``cfg`` with ``epochs`` epochs: the cosine schedule is rebuilt for them and ``config.yaml`` rewritten."""
    if epochs == cfg.epochs:
        return cfg
    cfg = dataclasses.replace(cfg, epochs=epochs)
    o = cfg.optim
    before = getattr(scheduler.lr_lambdas[0], "warmup", None)
    scheduler.lr_lambdas = [warmup_cosine(o.lr, o.min_lr, o.warmup_epochs, cfg.epochs, steps_per_epoch)
                            for _ in scheduler.lr_lambdas]
    after = scheduler.lr_lambdas[0].warmup
    # the warm-up cap follows the new length; said while it can still matter (the warm-up not yet over)
    if before is not None and after != before and scheduler.last_epoch < max(before, after) and info.is_main:
        unit = "steps" if steps_per_epoch > 1 else "epochs"
        print(f"train: warm-up now {after} {unit} instead of {before} for {epochs} epochs (at most a quarter of "
              "the run)", file=sys.stderr, flush=True)
    if info.is_main:
        atomic_write_text(run / "config.yaml", dump_yaml(saved_config(cfg)), fsync=True)
    return cfg


def _fit_budget(cfg: TrainConfig, epochs_done: int, budget: _Budget, scheduler: Any, steps_per_epoch: int,
                run: Path, info: DistInfo, steps: int = 1) -> tuple[TrainConfig, bool]:
    """Fit the epoch count to the time budget after every epoch; say whether to stop.

    The time per epoch is the mean of this session's last three epochs (mean over ranks, so
    every rank decides alike), so a slow start (a busy machine, first-call overheads) is
    corrected later. When the count changes, the cosine schedule is rebuilt for the new
    length and ``config.yaml`` is rewritten. (Within an epoch, :meth:`_Budget.out_of_time`
    stops before a step that would overrun.)
    """
    now = time.monotonic()
    budget.end_epoch(now, steps)
    mine = torch.tensor([now - budget.start], dtype=torch.float64, device=budget.device)
    elapsed = float(all_reduce_sum(mine, info)[0]) / info.world_size
    budget.marks.append(elapsed)
    recent = ([0.0] + budget.marks)[-4:]
    per_epoch = (recent[-1] - recent[0]) / (len(recent) - 1)
    limit = 60.0 * cfg.time_budget_min
    fits = min(budget.max_epochs, max(epochs_done, epochs_done + int((limit - elapsed) // per_epoch)))
    if fits != cfg.epochs:
        cfg = _set_epochs(cfg, fits, scheduler, steps_per_epoch, run, info)
        if info.is_main:
            print(f"train: {per_epoch:.0f} s per epoch: {cfg.epochs} epochs fit the time budget of "
                  f"{cfg.time_budget_min:g} min (schedule adjusted)", file=sys.stderr, flush=True)
    stop = epochs_done < cfg.epochs and elapsed + per_epoch > limit
    if stop and info.is_main:
        print(f"train: stopping after epoch {epochs_done}: the next epoch would overrun the time budget",
              file=sys.stderr, flush=True)
    return cfg, stop


def _log_epoch(writer: Any, r: EpochResult, run: Path, show: bool, extra: dict | None = None) -> None:
    d = dataclasses.asdict(r)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({**d, **(extra or {})}) + "\n")
    if writer is not None:
        for k, v in d.items():
            if k != "epoch" and v is not None:
                prefix = "val" if k.startswith("val_") else "epoch"
                writer.add_scalar(f"{prefix}/{k.removeprefix('val_')}", v, r.epoch)
        writer.flush()
    if show:
        msg = f"epoch {r.epoch}: loss {r.loss:.4g} lr {r.lr:.2e}"
        if r.val_psnr is not None:
            msg += f" | val PSNR {r.val_psnr:.2f} dB (zero-filled {r.val_psnr_zf:.2f} dB)"
        if r.val_psnr_trained is not None:
            msg += f", trained weights before averaging {r.val_psnr_trained:.2f} dB"
        tqdm.write(msg, file=sys.stderr)
