"""Checkpoints: atomic saves, loading for inference, resuming training.

Our checkpoint is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``)
holding a :class:`Checkpoint`: the model's registry name and kwargs, its state dict,
optimiser and scheduler state, the epoch and step counters, the best validation value,
the RNG states and the resolved training config. :func:`load_model` also accepts the
authors' checkpoints of CRUNet-MR, CRNN-MRI (``crnn_mri_d5_c5.pth``) and PromptMR (state
dict or Lightning ``.ckpt``), dispatched to :func:`cinerecon.models.compat.load_authors_checkpoint`,
which builds the model with the authors' preset read from the file.
"""

from __future__ import annotations

import dataclasses
import pickle
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np
import torch
import torch.nn as nn

from ..errors import CineReconError, ConfigError, DataError, OutputExistsError, WeightsNotFoundError
from ..files import atomic_output
from .config import TrainConfig, to_dict

FORMAT = "cinerecon-checkpoint"
#: The newest format version this code reads and writes. Version 2 adds ``trained_state_dict``
#: (runs with a moving average of the weights); only such checkpoints are written as version 2, so
#: that an older cinerecon refuses them instead of resuming from the average. Others stay version 1.
VERSION = 2
PLAIN_VERSION = 1


@dataclass
class RngState:
    """Global RNG states (Python, NumPy, torch CPU and CUDA) in torch.load-safe types."""

    python: tuple
    numpy: tuple
    torch_cpu: torch.Tensor
    torch_cuda: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def capture(cls) -> "RngState":
        name, keys, pos, has_gauss, cached = np.random.get_state()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return cls(random.getstate(), (name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                       int(has_gauss), float(cached)), torch.get_rng_state(), cuda)

    def restore(self) -> None:
        random.setstate(_to_tuple(self.python))
        name, keys, pos, has_gauss, cached = self.numpy
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(self.torch_cpu)
        if self.torch_cuda and torch.cuda.is_available() and len(self.torch_cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(self.torch_cuda)


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


@dataclass
class Checkpoint:
    """Contents of one of our checkpoints.

    Attributes:
        model_name: registry name (``cinerecon.models.build_model``).
        model_kwargs: builder kwargs.
        state_dict: model weights.
        config: resolved :class:`TrainConfig` as a dict.
        epoch: epochs completed.
        step: optimiser steps completed.
        optimizer: optimiser state (None in weights-only checkpoints).
        scheduler: scheduler state.
        best: best validation value so far (for best.pt selection) or None.
        rng: :class:`RngState` as a dict, or None.
        trained_state_dict: with a moving average of the weights (``optim.ema_decay``),
            ``state_dict`` holds the average and this the trained weights that the optimiser
            state belongs to (``last.pt`` only; resuming continues from them); else None.
        ema_updates: updates of that average so far, or None.
        format: :data:`FORMAT`.
        version: :data:`PLAIN_VERSION`, or :data:`VERSION` when ``trained_state_dict`` is set.
    """

    model_name: str
    model_kwargs: dict
    state_dict: dict
    config: dict
    epoch: int = 0
    step: int = 0
    optimizer: dict | None = None
    scheduler: dict | None = None
    best: float | None = None
    rng: dict | None = None
    trained_state_dict: dict | None = None
    ema_updates: int | None = None
    format: str = FORMAT
    version: int = PLAIN_VERSION

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict, source: str = "checkpoint") -> "Checkpoint":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in d]
        if missing:
            raise DataError(f"{source}: checkpoint lacks keys {missing}")
        return cls(**{k: v for k, v in d.items() if k in names})

    def rng_state(self) -> RngState | None:
        return None if self.rng is None else RngState(**self.rng)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel wrappers."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def _atomic_write(path: str | Path, mode: str, write: Callable[[IO], Any], overwrite: bool = True) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync, then rename it to ``path``.

    Goes through :func:`cinerecon.files.atomic_output`: the file gets the umask's mode, a
    crash or an exception during the write leaves any previous file at ``path`` intact, and
    an exception leaves no temporary file behind. ``overwrite=False`` refuses an existing
    ``path`` (OutputExistsError).
    """
    path = Path(path)
    with atomic_output(path, overwrite=overwrite, fsync=True) as tmp:
        with open(tmp, mode) as f:
            write(f)
    return path


def atomic_torch_save(obj: Any, path: str | Path, overwrite: bool = True) -> Path:
    """``torch.save`` to a temporary file in the same directory, fsync, then rename (see :func:`_atomic_write`)."""
    return _atomic_write(path, "wb", lambda f: torch.save(obj, f), overwrite)


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    scheduler: Any, epoch: int, cfg: TrainConfig | dict, step: int = 0,
                    best: float | None = None, rng: bool = True,
                    model_kwargs: dict | None = None, trained: nn.Module | None = None,
                    ema_updates: int | None = None) -> Path:
    """Save a checkpoint atomically.

    Args:
        path: destination file (e.g. ``RUN/last.pt``).
        model: the model whose weights are the checkpoint's (wrappers such as DDP are
            unwrapped): the moving average of the weights when a run keeps one.
        optimizer: its state is saved when given.
        scheduler: its ``state_dict()`` is saved when given.
        epoch: epochs completed.
        cfg: the resolved config (dataclass or dict); model name and kwargs are taken
            from ``cfg.model`` unless ``model_kwargs`` is given.
        step: optimiser steps completed.
        best: best validation value so far.
        rng: also save the global RNG states (for exact resumption).
        model_kwargs: kwargs the model was built with, when they differ from ``cfg.model.kwargs``.
        trained: the trained model when ``model`` is its moving average (saved as
            ``trained_state_dict``, for resuming).
        ema_updates: the moving average's update count (with ``trained``).

    Returns:
        ``path``.
    """
    cfg_dict = to_dict(cfg)
    ck = Checkpoint(
        model_name=cfg_dict["model"]["name"],
        model_kwargs=dict(cfg_dict["model"]["kwargs"] if model_kwargs is None else model_kwargs),
        state_dict=unwrap(model).state_dict(),
        config=cfg_dict,
        epoch=int(epoch),
        step=int(step),
        optimizer=None if optimizer is None else optimizer.state_dict(),
        scheduler=None if scheduler is None else scheduler.state_dict(),
        best=None if best is None else float(best),
        rng=dataclasses.asdict(RngState.capture()) if rng else None,
        trained_state_dict=None if trained is None else unwrap(trained).state_dict(),
        ema_updates=None if ema_updates is None else int(ema_updates),
        version=PLAIN_VERSION if trained is None else VERSION,
    )
    return atomic_torch_save(ck.to_dict(), path)


def run_checkpoint_tool(argv: list[str] | None, usage: str, n_paths: int, tool: Callable[..., Path]) -> int:
    """``main`` of a ``python -m`` checkpoint tool: ``n_paths`` path arguments and ``--overwrite``.

    Calls ``tool(*paths, overwrite=...)``, prints the file written; a usage line (exit 2) or one
    error line (exit 1) otherwise.
    """
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    overwrite = "--overwrite" in args
    args = [a for a in args if a != "--overwrite"]
    if len(args) != n_paths:
        print(f"usage: {usage}", file=sys.stderr)
        return 2
    try:
        print(f"wrote {tool(*args, overwrite=overwrite)}")
    except (CineReconError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _refuse_folder(path: Path) -> None:
    """One line for a run folder given where its checkpoint file was meant."""
    if path.is_dir():
        hint = next((f" (e.g. {path / n})" for n in ("best.pt", "last.pt") if (path / n).is_file()), "")
        raise WeightsNotFoundError(f"checkpoint {path} is a folder; give the checkpoint file{hint}")


def _torch_load(path: Path, weights_only: bool = True) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except FileNotFoundError:
        raise WeightsNotFoundError(f"checkpoint {path} does not exist") from None


def _check_torch_file(path: Path) -> None:
    """Raise DataError unless ``path`` starts like a ``torch.save`` file (zip archive or legacy pickle)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise DataError(f"{path}: not a PyTorch checkpoint (the file starts with {head!r}, not a torch.save archive); "
                        "expected our last.pt / best.pt or an authors' CRUNet-MR, CRNN-MRI or PromptMR checkpoint")


def _refusal(path: Path, e: Exception) -> DataError:
    """One-line error for a file that holds pickled objects beyond tensors (never unpickled)."""
    m = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(e))
    what = f"a pickled {m.group(1)}" if m else "pickled Python objects"
    return DataError(f"{path}: holds {what} besides tensors; cinerecon reads weights only and never unpickles "
                     "code from a checkpoint. If you trust the file, re-save its state dict in Python "
                     "(torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pt')) and pass that")


def _load_weights(path: Path) -> Any:
    """``torch.load(weights_only=True)`` of ``path`` with every failure turned into one DataError line."""
    _check_torch_file(path)
    try:
        return _torch_load(path, weights_only=True)
    except WeightsNotFoundError:
        raise
    except pickle.UnpicklingError as e:
        raise _refusal(path, e) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, ... on damaged archives
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(f"{path}: not a readable PyTorch checkpoint (truncated or damaged: "
                        f"{type(e).__name__}: {first[:200]})") from None


def _check_version(obj: dict, path: Path) -> None:
    v = obj.get("version", 0)
    try:
        v = int(v)
    except (TypeError, ValueError):
        raise DataError(f"{path}: checkpoint format version {v!r} is not a number") from None
    if v > VERSION:
        raise DataError(f"{path}: checkpoint format version {v} is newer than the version {VERSION} this cinerecon "
                        "reads; update cinerecon to load it")


def check_finite_weights(state_dict: dict, source: str) -> None:
    """Raise DataError naming the first weight with NaN or Inf values (a diverged or damaged checkpoint)."""
    for k, v in state_dict.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise DataError(f"{source}: weight {k!r} {tuple(v.shape)} holds {bad} NaN/Inf values; the checkpoint "
                            "is damaged or from a diverged run")


def is_our_checkpoint(obj: Any) -> bool:
    """Whether a loaded object is one of our checkpoints."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load one of our checkpoints (``weights_only``) for resuming or inspection."""
    path = Path(path)
    _refuse_folder(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint {path} does not exist")
    obj = _load_weights(path)
    if not is_our_checkpoint(obj):
        raise DataError(f"{path}: not a cinerecon checkpoint (no format={FORMAT!r} key)")
    _check_version(obj, path)
    return Checkpoint.from_dict(obj, str(path))


def build_from_checkpoint(ck: Checkpoint, source: str = "checkpoint", **extra_kwargs) -> nn.Module:
    """Build the registered model named in ``ck`` and load its weights (strict)."""
    from ..models import build_model

    kwargs = {**ck.model_kwargs, **extra_kwargs}
    _check_shapes(ck, kwargs, source)
    model = build_model(ck.model_name, **kwargs)
    try:
        model.load_state_dict(ck.state_dict)
    except RuntimeError as e:
        raise DataError(f"{source}: weights do not fit model {ck.model_name!r} "
                        f"with kwargs {ck.model_kwargs}: {' '.join(str(e).split())[:400]}") from None
    return model


def _check_shapes(ck: Checkpoint, kwargs: dict, source: str) -> None:
    """Build the model on the meta device (no memory) and compare its weights' shapes with the state dict.

    Catches a checkpoint whose kwargs would allocate absurd sizes, or that do not build at
    all, before any real allocation.
    """
    from ..models import build_model

    if not isinstance(ck.state_dict, dict) or not isinstance(ck.model_kwargs, dict):
        raise DataError(f"{source}: 'state_dict' and 'model_kwargs' must be dicts")
    try:
        with torch.device("meta"):
            probe = build_model(ck.model_name, **kwargs)
    except (CineReconError, TypeError, ValueError, RuntimeError, NotImplementedError) as e:
        raise DataError(f"{source}: cannot build model {ck.model_name!r} from the checkpoint's kwargs "
                        f"{ck.model_kwargs}: {' '.join(str(e).split())[:300]}") from None
    want = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in ck.state_dict.items() if isinstance(v, torch.Tensor)}
    wrong = [f"{k} {have[k]} vs {want[k]}" for k in want if k in have and have[k] != want[k]]
    missing = [k for k in want if k not in have]
    if wrong or missing:
        parts = ([f"{len(wrong)} shape mismatches (stored vs model), e.g. {wrong[:2]}"] if wrong else []) + \
                ([f"{len(missing)} missing weights, e.g. {missing[:3]}"] if missing else [])
        raise DataError(f"{source}: weights do not fit model {ck.model_name!r} with kwargs {ck.model_kwargs}: "
                        + "; ".join(parts))


def _load_authors(obj: Any, path: Path) -> tuple[nn.Module, dict]:
    """An authors' checkpoint: CRUNet-MR, CRNN-MRI or PromptMR (a state dict, possibly wrapped
    as in Lightning files), built by :func:`cinerecon.models.compat.load_authors_checkpoint`
    with the preset of the authors' function (``"original"`` for CRNN-MRI and PromptMR).

    Errors name ``path``; a file of a known layout whose tensors do not fit names the first
    mismatching key and both shapes.
    """
    from ..models import compat

    try:
        kind = compat.authors_layout(compat.unwrap_state_dict(obj, str(path)))
    except DataError:
        kind = None
    if kind is None:
        keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"{path}: neither a cinerecon checkpoint (format={FORMAT!r}) nor an authors' "
                        f"{', '.join(compat.LAYOUT_NAMES.values())} state dict (found {keys})")
    model = compat.load_authors_checkpoint(obj, source=str(path))
    return model, {"model": {"name": kind, "kwargs": model.config_dict()}, "source": str(path)}


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a model for inference.

    Args:
        path: one of our checkpoints (``last.pt`` / ``best.pt``) or an authors' checkpoint
            of CRUNet-MR, CRNN-MRI or PromptMR (state dict or Lightning ``.ckpt``).
        device: where to put the model.

    Returns:
        (model in eval mode, config dict). For our checkpoints the dict is the resolved
        training config (``cfg["model"]`` names the architecture); for the authors' ones it
        holds at least ``{"model": {"name": "crunet" | "crnn" | "promptmr", "kwargs": ...}}``. The model's
        ``source_checkpoint`` attribute is ``str(path)``.

    Raises:
        WeightsNotFoundError: the file does not exist.
        DataError: the file is not a checkpoint we can read: not a torch file, pickled
            objects besides tensors (never unpickled), a format version newer than
            :data:`VERSION`, kwargs that do not build or do not fit the weights, NaN/Inf weights.
        ConfigError: the model cannot be moved to ``device``.
    """
    path = Path(path)
    _refuse_folder(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint {path} does not exist; pass a local file "
                                   f"(our last.pt/best.pt or an authors' CRUNet-MR, CRNN-MRI or PromptMR checkpoint)")
    obj = _load_weights(path)
    if is_our_checkpoint(obj):
        _check_version(obj, path)
        ck = Checkpoint.from_dict(obj, str(path))
        model = build_from_checkpoint(ck, str(path), **_inference_kwargs(ck))
        cfg = dict(ck.config)
    else:
        model, cfg = _load_authors(obj, path)
    check_finite_weights(model.state_dict(), str(path))
    model.source_checkpoint = str(path)  # named by callers whose outputs turn out non-finite
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as e:
        reason = " ".join(str(e).split())[:200]
        raise ConfigError(f"--device {device}: cannot move the model there ({reason})") from None
    return model.eval(), cfg


def _inference_kwargs(ck: Checkpoint) -> dict:
    """Training-only switches turned off for inference (activation checkpointing)."""
    return {"checkpoint_cascades": False} if "checkpoint_cascades" in ck.model_kwargs else {}


#: Folder (inside a run directory) where ``--overwrite`` keeps the previous run's files until the
#: new run has saved its first epoch (see :class:`cinerecon.train.loop._RunStart`).
PREVIOUS_RUN_PREFIX = ".previous-run-"
#: What that folder is renamed to before it is deleted, once the new run has saved.
DISCARDED_RUN_PREFIX = ".discarded-run-"


def prepare_run_dir(out: str | Path, resume: bool, overwrite: bool) -> Path:
    """Create or validate a run directory.

    A non-empty directory is only used when resuming (it must hold ``last.pt``) or with
    ``overwrite`` (then our previous outputs there are replaced; other files are kept).

    Raises:
        OutputExistsError: non-empty directory without ``resume`` or ``overwrite``.
        ConfigError: ``resume`` without ``last.pt``.
    """
    out = Path(out)
    stranded = sorted(out.glob(f"{PREVIOUS_RUN_PREFIX}*")) if out.is_dir() else []
    if stranded:  # a run stopped (killed) while --overwrite had the previous run's files set aside
        raise OutputExistsError(f"{stranded[0]} holds the files of an earlier run that an interrupted --overwrite "
                                f"set aside: move them back into {out} (or delete that folder) before training there")
    if resume:
        if not (out / "last.pt").is_file():
            raise ConfigError(f"cannot resume: {out / 'last.pt'} does not exist")
        return out
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"run directory {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"run directory {out} is not empty; use --resume to continue "
                                f"or --overwrite to start again there")
    out.mkdir(parents=True, exist_ok=True)
    return out
