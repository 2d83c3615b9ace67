"""Training samples made on the fly from real magnitude cines and from the phantom simulator.

:class:`RealCineDataset` turns each item index into one fully consistent multi-coil
sample: a source (a real series, or a phantom with probability ``phantom_fraction``),
augmented (:mod:`cinerecon.data.augment`), given coils (:mod:`cinerecon.data.coil_geometry`),
noise and a mask drawn from a weighted list (CMRxRecon2023 equispaced + 24 ACS, CMRxRecon2024
16 ACS, time-varying lines, no ACS). ACS widths are given for a ``ref_size``-wide image and
scaled to the crop width, so a 64-pixel crop covers the same k-space band as 24 lines of a
128-pixel image. Items depend only on (seed, epoch, index): training is reproducible and
resumes exactly.

From Python::

    ds = RealCineDataset(RealCineConfig(), ["../shared/data/real_cine/subj1_sax_EC.npz"], seed=0)
    sample = ds[0]                           # CineSample, kspace (C, T, h, w) masked

From the command line (``data.kind=real_cine``, files found under DATA_DIR, held-out series
named by ``data.real.val_series``)::

    cinerecon train ../shared/data --config configs/crunet_real.yaml --out runs/crunet_real
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ..masks import MaskSpec, make_mask
from .augment import AugmentConfig, add_phase, augment_magnitude
from .coil_geometry import random_coil_maps
from .sample import CineSample, SampleMeta
from .simulate import SimConfig, image_to_sample, load_real_cine_npz, noise_sigma, real_cine_to_sample, simulate_phantom

MIN_FRAMES = 3


@dataclass(frozen=True)
class WeightedMask:
    """A mask pattern and its relative frequency among training items.

    Attributes:
        spec: the pattern; ``spec.acs`` is in lines of a ``ref_size``-wide image.
        weight: relative frequency (> 0).
    """

    spec: MaskSpec
    weight: float = 1.0


def default_masks() -> list[WeightedMask]:
    """CMRxRecon2023 R = 4, 8, 10, 24 with 24 ACS, CMRxRecon2024-like 16 ACS, time-varying, none."""
    eq = [(4, 1.5), (8, 2.5), (10, 2.0), (24, 1.0)]
    out = [WeightedMask(MaskSpec("equispaced_acs", r, 24), w) for r, w in eq]
    out += [WeightedMask(MaskSpec("equispaced_acs", r, 16), 0.5) for r in (4, 8, 10)]
    out += [WeightedMask(MaskSpec("time_varying", r, 0), w) for r, w in ((4, 0.5), (8, 1.0), (10, 0.5))]
    out += [WeightedMask(MaskSpec("time_varying_acs", 8, 24), 0.5), WeightedMask(MaskSpec("uniform", 8, 0), 0.3)]
    return out


@dataclass(frozen=True)
class RealCineConfig:
    """How :class:`RealCineDataset` makes items.

    Attributes:
        size: (h, w) crop of every training item.
        frames: T of every item.
        items_per_epoch: dataset length (items are drawn afresh every epoch).
        phantom_fraction: probability that an item comes from the phantom simulator.
        coils: inclusive range of coil counts.
        snr_db: range of the added-noise SNR.
        masks: weighted mask patterns.
        p_cropped_maps: probability that the maps are cut to the body (like ESPIRiT's
            crop), so the model also sees targets that are zero outside the object.
        val_series: file stems held out for validation (never used for training).
        val_masks: masks of the validation items (full image, ``ref_size`` square).
        val_coils: coils of the validation items.
        augment: ranges of the augmentation.
    """

    size: tuple[int, int] = (64, 64)
    frames: int = 12
    items_per_epoch: int = 200
    phantom_fraction: float = 0.2
    coils: tuple[int, int] = (8, 16)
    snr_db: tuple[float, float] = (25.0, 42.0)
    masks: list[WeightedMask] = field(default_factory=default_masks)
    p_cropped_maps: float = 0.15
    val_series: list[str] = field(default_factory=list)
    val_masks: list[MaskSpec] = field(default_factory=lambda: [MaskSpec("equispaced_acs", 8, 24),
                                                               MaskSpec("equispaced_acs", 10, 24),
                                                               MaskSpec("time_varying", 8, 0)])
    val_coils: int = 10
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.frames < MIN_FRAMES or min(self.size) < 16:
            raise ConfigError(f"real-cine data: need frames >= {MIN_FRAMES} and size >= 16, got frames="
                              f"{self.frames}, size={self.size}")
        if not 0 <= self.phantom_fraction <= 1 or self.items_per_epoch < 1:
            raise ConfigError(f"real-cine data: phantom_fraction must be in [0, 1] and items_per_epoch >= 1, "
                              f"got {self.phantom_fraction}, {self.items_per_epoch}")
        if not self.masks or any(m.weight <= 0 for m in self.masks):
            raise ConfigError("real-cine data: masks must be a non-empty list with positive weights")


def find_series(root: str | Path) -> list[Path]:
    """Every ``.npz`` under ``root`` (recursively), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"real-cine data root {root} is not a directory")
    files = sorted(root.rglob("*.npz"))
    if not files:
        raise DataError(f"no .npz real cine series found under {root}")
    return files


def load_series(path: Path) -> np.ndarray:
    """Frames (T, H, W) float32 of a real series, refused in one line with file, key and shape when unusable.

    :func:`~cinerecon.data.simulate.load_real_cine_npz` refuses files that are not readable .npz
    archives, and ``frames`` that are not (T, H, W) with H, W >= 8, complex, negative or
    non-finite; here also fewer than ``MIN_FRAMES`` frames and all-zero series.
    """
    frames, _ = load_real_cine_npz(path)
    if frames.shape[0] < MIN_FRAMES:
        raise DataError(f"{path}: key 'frames' has shape {frames.shape}: need at least {MIN_FRAMES} frames")
    if not float(frames.max()) > 0:
        raise DataError(f"{path}: key 'frames' {frames.shape} is all zero")
    return frames


def split_series(files: list[Path], val_series: list[str]) -> tuple[list[Path], list[Path]]:
    """(train, val) files: val are those whose stem is in ``val_series`` (each must exist)."""
    stems = {p.stem for p in files}
    missing = [s for s in val_series if s not in stems]
    if missing:
        raise ConfigError(f"data.real.val_series names {missing[0]!r}, not among {sorted(stems)}")
    val = [p for p in files if p.stem in val_series]
    train = [p for p in files if p.stem not in val_series]
    if not train:
        raise ConfigError("every real series is held out for validation; nothing is left to train on")
    return train, val


def scaled_acs(spec: MaskSpec, width: int, ref_size: int) -> MaskSpec:
    """``spec`` with its ACS lines scaled from a ``ref_size``-wide image to ``width``."""
    if spec.acs == 0 or spec.kind in ("uniform", "time_varying"):
        return spec
    return replace(spec, acs=max(2, int(round(spec.acs * width / ref_size))))


class RealCineDataset(Dataset):
    """Augmented multi-coil training items from real magnitude cines and phantoms.

    Args:
        cfg: item settings.
        files: real series (``.npz`` with ``frames`` (T, H, W)); may be empty when
            ``cfg.phantom_fraction`` is 1.
        seed: base seed; item i of epoch e uses the generator seeded by (seed, e, i).

    Items are :class:`CineSample` s with masked k-space (C, T, h, w), mask, true maps and
    target = S^H F^-1 (full noisy k-space); C varies between items (batches pad coils with
    zeros, see :func:`cinerecon.data.sample.collate`).
    """

    pad_coils = True

    def __init__(self, cfg: RealCineConfig, files: list[Path] | list[str], seed: int = 0) -> None:
        self.cfg = cfg
        self.files = [Path(f) for f in files]
        if not self.files and cfg.phantom_fraction < 1:
            raise ConfigError("real-cine data: no real series given and phantom_fraction < 1")
        self.series = [load_series(p) for p in self.files]
        self.seed = int(seed)
        self.epoch = 0
        w = np.array([m.weight for m in cfg.masks], dtype=np.float64)
        self._mask_p = w / w.sum()

    def set_epoch(self, epoch: int) -> None:
        """Draw different items in every epoch (called by the training loop)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.cfg.items_per_epoch

    def _image(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        cfg = self.cfg
        if not self.series or rng.uniform() < cfg.phantom_fraction:
            seed = int(rng.integers(2 ** 31))
            view = "sax" if rng.uniform() < 0.5 else "lax"
            sim = SimConfig(frames=cfg.frames, size=cfg.size, view=view, seed=seed,
                            phase_rad=rng.uniform(*cfg.augment.phase_rad))
            return simulate_phantom(sim).image, f"phantom_{view}_{seed}"
        k = int(rng.integers(len(self.series)))
        mag = augment_magnitude(self.series[k], cfg.frames, cfg.size, rng, cfg.augment)
        return add_phase(mag, rng, cfg.augment), self.files[k].stem

    def __getitem__(self, index: int) -> CineSample:
        cfg = self.cfg
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        image, name = self._image(rng)
        maps, gain = random_coil_maps(cfg.size, rng, cfg.coils)
        if gain is not None:
            image = image * gain.numpy()
        if rng.uniform() < cfg.p_cropped_maps:
            maps = maps * torch.from_numpy(body_mask(np.abs(image).mean(axis=0)))
        sigma = noise_sigma(image, rng.uniform(*cfg.snr_db))
        full = image_to_sample(image, maps, sigma, rng, SampleMeta(name=f"{name}#e{self.epoch}i{index}"))
        spec = cfg.masks[int(rng.choice(len(cfg.masks), p=self._mask_p))].spec
        spec = scaled_acs(spec, cfg.size[1], cfg.augment.ref_size)
        mask = make_mask(spec, cfg.frames, cfg.size[1], seed=int(rng.integers(2 ** 31)), height=cfg.size[0])
        return full.with_mask(mask, accel=float(spec.accel), acs=0 if spec.kind == "kt_radial" else spec.acs)


def body_mask(mag: np.ndarray, rel: float = 0.08, smooth: float = 2.0) -> np.ndarray:
    """Soft object support (H, W) in [0, 1]: dilated threshold of a magnitude, blurred."""
    from scipy import ndimage

    m = mag > rel * float(mag.max() or 1.0)
    m = ndimage.binary_fill_holes(ndimage.binary_dilation(m, iterations=3))
    return np.clip(ndimage.gaussian_filter(m.astype(np.float32), smooth), 0, 1).astype(np.float32)[None, None]


def validation_samples(cfg: RealCineConfig, files: list[Path], seed: int = 0) -> list[CineSample]:
    """Fixed validation items: each held-out series at ``ref_size`` square under each val mask.

    Series are resampled to ``min(cfg.frames, T0)`` frames evenly over the cycle, given
    ``cfg.val_coils`` birdcage coils and 35 dB noise (the setting of the real-anatomy
    benchmark), with masks as written (24 ACS lines of a ``ref_size`` image).
    """
    out = []
    n = cfg.augment.ref_size
    for i, path in enumerate(files):
        frames = load_series(path)
        t = min(cfg.frames, frames.shape[0])
        base = real_cine_to_sample(path, coils=cfg.val_coils, snr_db=35.0, seed=seed + i, size=(n, n), n_frames=t)
        for j, spec in enumerate(cfg.val_masks):
            mask = make_mask(spec, t, n, seed=1000 * i + j, height=n)
            s = base.with_mask(mask, accel=float(spec.accel), acs=0 if spec.kind == "kt_radial" else spec.acs)
            out.append(CineSample(s.kspace, s.mask, s.maps, s.target,
                                  replace(s.meta, name=f"{path.stem}/{spec.kind}_R{spec.accel}")))
    return out

