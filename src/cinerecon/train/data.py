"""Datasets and loaders for training: HDF5 splits, train/val datasets, seeded loaders.

The loop accepts any ``torch.utils.data.Dataset`` whose items are
:class:`~cinerecon.data.sample.CineSample`; :func:`build_datasets` builds the usual
ones from our HDF5 files with :class:`cinerecon.data.h5.CineH5Dataset`.
"""

from __future__ import annotations

from pathlib import Path

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

    Training draws masks on the fly when ``cfg.masks`` is set (mixed-mask training), else
    uses the stored ``cfg.mask_key``; ``cfg.frames_window`` applies to training only.
    """
    from ..data.h5 import CineH5Dataset

    if not cfg.root:
        raise ConfigError("data.root is empty: give the directory of HDF5 files")
    train_files, val_files = split_files(Path(cfg.root), cfg.val_fraction)
    specs = list(cfg.masks) or None
    key = None if specs else cfg.mask_key
    train = CineH5Dataset(train_files, mask_key=key, mask_spec=specs, frames_window=cfg.frames_window, seed=seed,
                          augment=cfg.augment)
    val = None
    if val_files:
        val = CineH5Dataset(val_files, mask_key=key, mask_spec=specs, frames_window=None, seed=seed + 1)
        if cfg.max_val_items is not None and len(val) > cfg.max_val_items:
            val = Subset(val, range(cfg.max_val_items))
    return train, val


def train_loader(dataset: Dataset, cfg: DataConfig, seed: int, dist: DistInfo) -> tuple[DataLoader, DistributedSampler]:
    """A shuffling loader whose order depends only on (seed, epoch); call ``sampler.set_epoch``.

    The same :class:`DistributedSampler` serves single-process training (one replica), so
    the order is reproducible when resuming.
    """
    if len(dataset) == 0:
        raise DataError("the training dataset is empty")
    sampler = DistributedSampler(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                 seed=seed, drop_last=False)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        collate_fn=collate, drop_last=False, persistent_workers=False)
    return loader, sampler


def val_loader(dataset: Dataset, cfg: DataConfig, dist: DistInfo) -> DataLoader:
    """Sequential loader over this process's share (every ``world_size``-th item, no padding)."""
    shard = dataset if dist.world_size == 1 else Subset(dataset, range(dist.rank, len(dataset), dist.world_size))
    return DataLoader(shard, batch_size=1, shuffle=False, num_workers=cfg.num_workers, collate_fn=collate)
