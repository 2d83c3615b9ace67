"""Datasets and loaders for training: HDF5 splits, train/val datasets, seeded loaders.

The loop accepts any ``torch.utils.data.Dataset`` whose items are
:class:`~cinerecon.data.sample.CineSample`; :func:`build_datasets` builds the usual
ones from our HDF5 files with :class:`cinerecon.data.h5.CineH5Dataset`.
"""

from __future__ import annotations

import math
import os
import sys
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ..data.sample import collate
from ..errors import ConfigError, DataError
from .config import DataConfig
from .distributed import DistInfo


def split_files(root: Path, val_fraction: float) -> tuple[list[Path], list[Path]]:
    """(train files, val files) from ``train.txt``/``val.txt`` under ``root`` or a held-out tail.

    Without ``train.txt`` the files are sorted and the last ``val_fraction`` of them (at
    least one when there are two or more) validate.
    """
    from ..data.h5 import read_split

    if not root.is_dir():
        raise ConfigError(f"data root {root} is not a directory")
    split = read_split(root)
    if split.get("train"):
        return list(split["train"]), list(split.get("val", []))
    files = sorted({p for v in split.values() for p in v})
    if not files:
        raise DataError(f"no training files found under {root}")
    n_val = int(round(len(files) * val_fraction))
    if len(files) >= 2 and val_fraction > 0:
        n_val = max(n_val, 1)
    n_val = min(n_val, len(files) - 1)
    return files[:len(files) - n_val], files[len(files) - n_val:]


def build_datasets(cfg: DataConfig, seed: int) -> tuple[Dataset, Dataset | None]:
    """Train and validation datasets of CineSample from ``cfg.root``.

    Training and validation draw masks on the fly when ``cfg.masks`` is set (mixed-mask
    training; validation items get fixed draws, seeded by ``seed + 1``), else both use the
    stored ``cfg.mask_key``; ``cfg.frames_window`` applies to training only.
    With ``cfg.kind == "real_cine"`` the items are made from the ``.npz`` series under
    ``cfg.root`` (see :mod:`cinerecon.data.realistic`); ``cfg.real.val_series`` validate.
    """
    from ..data.h5 import CineH5Dataset

    if not cfg.root:
        what = ".npz real cine series" if cfg.kind == "real_cine" else "HDF5 files"
        raise ConfigError(f"data.root is empty: give the directory of {what}")
    if cfg.kind == "real_cine":
        return _real_cine_datasets(cfg, seed)
    train_files, val_files = split_files(Path(cfg.root), cfg.val_fraction)
    specs = list(cfg.masks) or None
    key = None if specs else cfg.mask_key
    # the files are opened lazily; train_loader / val_loader check their structure at start-up
    train = CineH5Dataset(train_files, mask_key=key, mask_spec=specs, frames_window=cfg.frames_window, seed=seed,
                          augment=cfg.augment)
    val = None
    if cfg.max_val_items is not None:
        val_files = val_files[:cfg.max_val_items]
    if val_files:
        val = CineH5Dataset(val_files, mask_key=key, mask_spec=specs, frames_window=None, seed=seed + 1)
    return train, val


def check_files(dataset: Dataset, split: str) -> None:
    """Start-up check of a dataset's files, for datasets that have one (``check_files()``, e.g.
    :meth:`~cinerecon.data.h5.CineH5Dataset.check_files`: every file has the stored mask it applies,
    read from the HDF5 structure only), so that a bad file is refused before training, not mid-epoch
    (training) or after a whole epoch (validation). DataError names ``split`` (``training data: ...``).
    """
    check = getattr(dataset, "check_files", None)
    if not callable(check):
        return
    try:
        check()
    except DataError as e:
        raise DataError(f"{split} data: {e}") from e


def _real_cine_datasets(cfg: DataConfig, seed: int) -> tuple[Dataset, Dataset | None]:
    from ..data.realistic import RealCineDataset, find_series, split_series, validation_samples

    train_files, val_files = split_series(find_series(cfg.root), list(cfg.real.val_series))
    val = validation_samples(cfg.real, val_files, seed=seed + 1) if val_files else None
    if val is not None and cfg.max_val_items is not None:
        val = val[:cfg.max_val_items]
    return RealCineDataset(cfg.real, train_files, seed=seed), val


def loader_workers(cfg: DataConfig, dist: DistInfo, device: torch.device | None) -> int:
    """``cfg.num_workers``, or when None: 0 on the CPU, else up to 4 per process (the cores shared by the ranks)."""
    if cfg.num_workers is not None:
        return cfg.num_workers
    if device is None or device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores // max(dist.world_size, 1) - 1))


def check_batchable(dataset: Dataset, batch_size: int) -> None:
    """Refuse (DataError, at start-up) training items of different sizes when batches hold several.

    Decided from the file structure only, for datasets that know their items' (C, T, H, W)
    (``item_shapes()``, e.g. :class:`~cinerecon.data.h5.CineH5Dataset`); others are not checked
    here (:func:`~cinerecon.data.sample.collate` refuses such a batch when it meets one).
    """
    shapes_of = getattr(dataset, "item_shapes", None)
    if not callable(shapes_of):
        return
    shapes = list(shapes_of())
    pad = bool(getattr(dataset, "pad_coils", False))  # collate pads the coil axis then
    key = (lambda s: tuple(s[1:])) if pad else (lambda s: tuple(s))
    if len({key(s) for s in shapes}) <= 1:
        return
    files = getattr(dataset, "files", None) or [f"item {i}" for i in range(len(shapes))]
    other = next(i for i, s in enumerate(shapes) if key(s) != key(shapes[0]))
    n = len({key(s) for s in shapes})
    hint = ""
    if len({(s[0], s[2], s[3]) for s in shapes}) == 1:  # the frame counts alone differ
        hint = f", or data.frames_window={min(s[1] for s in shapes)} (windows of that many frames)"
    raise DataError(f"data.batch_size={batch_size}: cannot batch the training items, which have {n} different "
                    f"(C, T, H, W): {files[0]} is {tuple(shapes[0])}, {files[other]} is {tuple(shapes[other])}; "
                    f"use data.batch_size=1 (--batch-size 1){hint}")


def train_loader(dataset: Dataset, cfg: DataConfig, seed: int, dist: DistInfo,
                 device: torch.device | None = None) -> tuple[DataLoader, DistributedSampler]:
    """A shuffling loader whose order depends only on (seed, epoch); call ``sampler.set_epoch``.

    The same :class:`DistributedSampler` serves single-process training (one replica), so
    the order is reproducible when resuming. On CUDA, batches are collated by worker
    processes (:func:`loader_workers`) into pinned memory, so that ``batch.to(device,
    non_blocking=True)`` copies asynchronously.
    """
    if len(dataset) == 0:
        raise DataError("the training dataset is empty")
    check_files(dataset, "training")
    per_rank = math.ceil(len(dataset) / max(dist.world_size, 1))  # DistributedSampler pads to this
    if cfg.batch_size > per_rank and dist.is_main:
        share = f" ({per_rank} per process)" if dist.world_size > 1 else ""
        print(f"train: note: data.batch_size={cfg.batch_size} but there are only {len(dataset)} training items"
              f"{share}: batches hold {per_rank}", file=sys.stderr)
    if min(cfg.batch_size, per_rank) > 1:
        check_batchable(dataset, cfg.batch_size)
    sampler = DistributedSampler(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                 seed=seed, drop_last=False)
    workers = loader_workers(cfg, dist, device)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=partial(collate, pad_coils=getattr(dataset, "pad_coils", False)),
                        drop_last=False, persistent_workers=workers > 0,
                        pin_memory=device is not None and device.type == "cuda")
    return loader, sampler


def val_loader(dataset: Dataset, cfg: DataConfig, dist: DistInfo, device: torch.device | None = None) -> DataLoader:
    """Sequential loader over this process's share (every ``world_size``-th item, no padding).

    Every process checks every file first (:func:`check_files`), so all refuse alike.
    """
    check_files(dataset, "validation")
    shard = dataset if dist.world_size == 1 else Subset(dataset, range(dist.rank, len(dataset), dist.world_size))
    return DataLoader(shard, batch_size=1, shuffle=False, num_workers=loader_workers(cfg, dist, device),
                      collate_fn=collate, pin_memory=device is not None and device.type == "cuda")
