"""Training configuration: nested dataclasses, YAML files and ``a.b=value`` overrides.

Every default is written once, in the dataclasses below; they describe the paper's
training of CRUNet-MR (AdamW, lr 3e-4, weight decay 0.01, 10 warm-up epochs then cosine
to 1e-4; loss 0.25 k-space MSE + 0.5 image (L1 + MSE) + 1.0 SSIM). YAML files under
``configs/`` only state what differs. Resolution order::

    dataclass defaults -> preset (e.g. "finetune") -> YAML (its ``base`` first) -> overrides

A YAML file may hold two extra top-level keys: ``base`` (a path, relative to the file, of a
YAML applied first) and ``preset`` (a name in :data:`PRESETS`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..data.realistic import RealCineConfig
from ..errors import ConfigError
from ..masks import MaskSpec


@dataclass
class ModelConfig:
    """Which registered model to build and its keyword arguments.

    Attributes:
        name: a name in ``cinerecon.models.MODELS`` (``crunet``, ``unet3d``, ``crnn``, ...).
        kwargs: keyword arguments of the builder; the builder's own defaults apply to
            everything not given (e.g. ``chans``, ``cascades``, ``dilations`` for crunet).
    """

    name: str = "crunet"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where the training data lie and how items are drawn.

    Attributes:
        kind: ``"h5"`` (our HDF5 files under ``root``) or ``"real_cine"`` (items made on the
            fly from the real magnitude series ``*.npz`` under ``root`` and from phantoms,
            see :mod:`cinerecon.data.realistic`; settings in ``real``).
        root: directory of our HDF5 files (with optional train.txt / val.txt / test.txt),
            or of ``.npz`` series for ``kind="real_cine"``.
        mask_key: stored mask used for undersampling (``R04``, ``R08``, ``R10``, ``R24``);
            unused when ``masks`` is non-empty (training and validation then draw those).
        masks: on-the-fly masks; several specs give mixed-mask training (one drawn per item).
        frames_window: None trains on full sequences; e.g. 5 trains on random windows of
            5 adjacent frames (circular in time). Validation always uses full sequences.
        augment: random exact flips / time reversal / time shift of training items
            (fully sampled files only; see CineH5Dataset).
        batch_size: items per batch per process (items in a batch need equal shapes).
        num_workers: DataLoader worker processes; None (the default) chooses: none on the CPU
            (the model's threads use the cores), up to 4 per process on CUDA, where batches
            are also collated into pinned memory and copied asynchronously.
        val_fraction: share of files held out for validation when the root has no
            ``train.txt`` (the last files in sorted order; at least one when there are two
            or more files).
        max_val_items: validate on at most this many items (None: all).
        real: settings of ``kind="real_cine"`` (crop, frames, masks, held-out series, ...).
    """

    kind: Literal["h5", "real_cine"] = "h5"
    root: str = ""
    mask_key: str | None = "R08"
    masks: list[MaskSpec] = field(default_factory=list)
    frames_window: int | None = None
    augment: bool = False
    batch_size: int = 1
    num_workers: int | None = None
    val_fraction: float = 0.1
    max_val_items: int | None = None
    real: RealCineConfig = field(default_factory=RealCineConfig)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size (--batch-size) must be >= 1, got {self.batch_size}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0 (or null: automatic), got {self.num_workers}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.frames_window is not None and self.frames_window < 1:
            raise ConfigError(f"data.frames_window must be >= 1 or null (whole series), got {self.frames_window}")
        if self.max_val_items is not None and self.max_val_items < 1:
            raise ConfigError(f"data.max_val_items must be >= 1 or null (all), got {self.max_val_items}")


@dataclass
class OptimConfig:
    """AdamW and the warm-up + cosine schedule (see :mod:`cinerecon.train.schedule`).

    Attributes:
        lr: peak learning rate, reached at the end of the warm-up.
        weight_decay: AdamW decoupled weight decay.
        betas: AdamW betas.
        warmup_epochs: epochs of linear warm-up.
        min_lr: learning rate reached at the last epoch by the cosine decay.
        schedule_per: ``"epoch"`` (one scheduler step per epoch) or ``"step"`` (per batch,
            warm-up and decay measured in fractional epochs).
        grad_clip: clip the global gradient norm to this value (None: no clipping).
        ema_decay: keep an exponential moving average of the weights with this largest
            per-step decay (e.g. 0.999; warmed up as min(decay, (1 + n) / (10 + n)), see
            :mod:`cinerecon.train.ema`); the average is validated and saved as the run's
            weights (``best.pt``, ``last.pt``), the trained weights are kept in ``last.pt``
            for resuming. None: no average.
    """

    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: int = 10
    min_lr: float = 1e-4
    schedule_per: Literal["epoch", "step"] = "epoch"
    grad_clip: float | None = None
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        values = {"lr": self.lr, "weight_decay": self.weight_decay, "min_lr": self.min_lr,
                  "betas[0]": self.betas[0], "betas[1]": self.betas[1]}
        if self.grad_clip is not None:
            values["grad_clip"] = self.grad_clip
        for name, v in values.items():
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"optim.{name} must be a finite number >= 0, got {v}")
        if self.lr <= 0 or self.warmup_epochs < 0:
            raise ConfigError(f"optim.lr must be > 0 and optim.warmup_epochs >= 0, got {self.lr}, "
                              f"{self.warmup_epochs}")
        for i, b in enumerate(self.betas):
            if not b < 1:
                raise ConfigError(f"optim.betas[{i}] must be in [0, 1), got {b}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"optim.grad_clip must be > 0 or null (no clipping), got {self.grad_clip}")
        if self.ema_decay is not None and not (math.isfinite(self.ema_decay) and 0 < self.ema_decay < 1):
            raise ConfigError(f"optim.ema_decay must be in (0, 1) or null (no average), got {self.ema_decay}")


@dataclass
class LossConfig:
    """Weights of the paper's loss terms (zero a weight to ablate a term).

    total = w_kspace * MSE(F S x, F S y)
          + w_image * (image_l1 * L1(x, y) + image_mse * MSE(x, y))
          + w_ssim * (1 - SSIM), SSIM averaged over the real and imaginary channels.

    Attributes:
        w_kspace: weight of the coil k-space MSE.
        w_image: weight of the image-domain term.
        image_l1: weight of L1 inside the image term.
        image_mse: weight of MSE inside the image term.
        w_ssim: weight of the SSIM loss.
        ssim_window: side of the uniform SSIM window.
        ssim_k1: SSIM constant k1.
        ssim_k2: SSIM constant k2.
    """

    w_kspace: float = 0.25
    w_image: float = 0.5
    image_l1: float = 1.0
    image_mse: float = 1.0
    w_ssim: float = 1.0
    ssim_window: int = 7
    ssim_k1: float = 0.01
    ssim_k2: float = 0.03

    def __post_init__(self) -> None:
        weights = {"w_kspace": self.w_kspace, "w_image": self.w_image, "image_l1": self.image_l1,
                   "image_mse": self.image_mse, "w_ssim": self.w_ssim}
        for name, v in weights.items():
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"loss.{name} must be a finite number >= 0, got {v}")
        image = self.w_image > 0 and (self.image_l1 > 0 or self.image_mse > 0)
        if not (self.w_kspace > 0 or self.w_ssim > 0 or image):
            raise ConfigError(f"the loss is identically zero: loss.w_kspace, loss.w_ssim or loss.w_image (with "
                              f"loss.image_l1 or loss.image_mse) must be > 0, got {weights}")
        if self.ssim_window < 3 or self.ssim_window % 2 == 0:
            raise ConfigError(f"loss.ssim_window must be an odd integer >= 3, got {self.ssim_window}")
        for name, v in (("ssim_k1", self.ssim_k1), ("ssim_k2", self.ssim_k2)):
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"loss.{name} must be a finite number > 0, got {v}")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved resolved beside every checkpoint.

    Attributes:
        model: model name and kwargs.
        data: data source and batching.
        optim: optimiser and schedule.
        loss: loss weights.
        epochs: number of epochs.
        seed: seed of model initialisation, data order and on-the-fly masks.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        amp: bf16 autocast of the model's forward pass (meant for CUDA; CPU autocast works
            but is only fast on CPUs with bf16 support). The loss is computed in float32.
        checkpoint_cascades: activation checkpointing of each cascade (when the model
            supports it) to save memory.
        log_every: TensorBoard scalars, the progress bar's loss and the non-finite loss check
            every this many optimiser steps (the only host synchronisations of a training
            step; a non-finite loss stops the run at the next check, naming its epoch and step).
        tf32: let CUDA matmuls and cuDNN convolutions use TensorFloat-32 (faster on Ampere and
            later, ~1e-3 relative precision); False computes in full float32. No effect on the CPU.
        progress: show tqdm progress bars.
        out: run directory (checkpoints, resolved config, TensorBoard logs).
        init: checkpoint whose weights initialise the model (fine-tuning); its
            architecture replaces ``model`` (only ``checkpoint_cascades`` and ``initial_image``
            may differ; another explicitly named model or kwarg value is refused).
        resume: continue from ``out/last.pt``.
        overwrite: allow writing into a non-empty ``out`` without resuming. Both are
            run-control flags of one command: ``config.yaml`` records them as false and the
            CLI takes them from its own flags only, so re-running a saved config never
            replaces a run unasked.
        time_budget_min: wall-clock minutes for this run (None: no limit). After the first
            epoch the epoch count is cut to what fits (the learning-rate schedule follows the
            new count and the cut is saved in ``config.yaml``); training stops cleanly between
            steps (mid-epoch if needed) before the budget would overrun, validates and keeps
            ``best.pt`` and ``last.pt``.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 100
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    checkpoint_cascades: bool = False
    log_every: int = 10
    tf32: bool = True
    progress: bool = True
    out: str = "runs/train"
    init: str | None = None
    resume: bool = False
    overwrite: bool = False
    time_budget_min: float | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed}")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be >= 1, got {self.log_every}")
        if self.time_budget_min is not None and not (math.isfinite(self.time_budget_min)
                                                     and self.time_budget_min > 0):
            raise ConfigError(f"time_budget_min must be a positive number of minutes, got {self.time_budget_min}")


# The paper's fine-tuning on another vendor's data: 32 epochs, lr 1e-4, 5 warm-up epochs,
# cosine to 5e-5.
PRESETS: dict[str, tuple[str, ...]] = {
    "paper": (),
    "finetune": ("epochs=32", "optim.lr=1e-4", "optim.warmup_epochs=5", "optim.min_lr=5e-5"),
}

_YAML_EXTRA_KEYS = ("base", "preset")


# --------------------------------------------------------------------------- coercion

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type ``tp``; raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            if type(None) in args:
                return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: cannot interpret {value!r} as {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, key)
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        (a,) = args or (Any,)
        return [_coerce(v, a, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)  # also "3e-4", which YAML 1.1 reads as a string
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported field type {_type_name(tp)}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, values: dict, key: str) -> Any:
    """Instantiate dataclass ``cls`` from a (partial) mapping; unknown keys raise."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]!r}; valid keys: {names}")
    kwargs = {k: _coerce(v, hints[k], f"{key}.{k}" if key else k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{key or 'config'}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"{key or 'config'}: {e}") from None


# --------------------------------------------------------------------------- merging

def to_dict(cfg: Any) -> Any:
    """Plain nested dict/list/str/number form of a config (YAML- and torch.load-safe)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def from_dict(values: dict, source: str = "config") -> TrainConfig:
    """Build a :class:`TrainConfig` from a (partial) nested mapping; unknown keys raise ConfigError."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping at top level, got {type(values).__name__}")
    try:
        return _build(TrainConfig, values, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _merge(base: dict, update: dict) -> dict:
    """Recursive dict update; mappings merge key by key except ``model.kwargs``-style leaves."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _apply_override(values: dict, text: str) -> dict:
    """Apply one ``a.b=value`` to a nested dict (value parsed as YAML), checking the key path."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip().lstrip("-")
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: cannot parse value: {e}") from None
    # Walk the dataclass types to reject unknown keys early; below a dict field anything goes.
    cls: Any = TrainConfig
    for i, p in enumerate(parts):
        if cls is None:
            break
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"override {text!r}: {'.'.join(parts[:i])} has no sub-keys")
        names = [f.name for f in dataclasses.fields(cls)]
        if p not in names:
            raise ConfigError(f"override {text!r}: unknown key {'.'.join(parts[:i + 1])!r}; "
                              f"valid keys there: {names}")
        tp = _hints(cls)[p]
        cls = tp if dataclasses.is_dataclass(tp) else (None if (tp is dict or typing.get_origin(tp) is dict) else tp)
    out = dict(values)
    node = out
    for p in parts[:-1]:
        child = node.get(p)
        child = dict(child) if isinstance(child, dict) else {}
        node[p] = child
        node = child
    node[parts[-1]] = value
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict, str | None]:
    """Read a YAML config and its ``base`` chain; return (values, preset name or None)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.resolve() in seen:
        raise ConfigError(f"config file {path}: circular 'base' chain")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path}: invalid YAML: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path}: expected a mapping at top level")
    values = dict(values)
    base = values.pop("base", None)
    preset = values.pop("preset", None)
    merged: dict = {}
    if base is not None:
        merged, base_preset = _read_yaml(path.parent / str(base), seen + (path.resolve(),))
        preset = preset or base_preset
    return _merge(merged, values), preset


def apply_preset(values: dict, preset: str) -> dict:
    """Apply the overrides of a named preset (see :data:`PRESETS`) to a nested dict."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; available: {sorted(PRESETS)}")
    for o in PRESETS[preset]:
        values = _apply_override(values, o)
    return values


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                preset: str | None = None) -> TrainConfig:
    """Resolve a :class:`TrainConfig`.

    Args:
        path: YAML file (may name a ``base`` YAML and a ``preset``), or None for defaults.
        overrides: ``a.b=value`` strings applied last (values parsed as YAML, then typed by
            the dataclass field, e.g. ``optim.lr=1e-4``, ``data.frames_window=5``,
            ``model.kwargs.chans=32``).
        preset: preset applied before the YAML when the YAML names none (e.g. ``finetune``).

    Returns:
        The resolved config.

    Raises:
        ConfigError: unknown keys, bad values or a missing file, naming the key and file.
    """
    file_values: dict = {}
    source = "config"
    if path is not None:
        file_values, file_preset = _read_yaml(Path(path))
        preset = file_preset or preset
        source = str(path)
    values: dict = {}
    if preset is not None:
        values = apply_preset(values, preset)
    values = _merge(values, file_values)
    cfg = from_dict(values, source)  # validate the file before the overrides
    for o in overrides:
        values = _apply_override(values, o)
    return from_dict(values, "overrides") if overrides else cfg


def with_overrides(cfg: TrainConfig, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
    """A copy of ``cfg`` with ``a.b=value`` overrides applied."""
    values = to_dict(cfg)
    for o in overrides:
        values = _apply_override(values, o)
    return from_dict(values, "overrides")


def dump_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
