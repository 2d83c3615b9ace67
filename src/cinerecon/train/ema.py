"""An exponential moving average (EMA) of a model's weights during training.

After every optimiser step ``update`` moves each floating-point parameter and buffer of the
average towards the trained model's::

    ema <- d * ema + (1 - d) * w,    d = min(decay, (1 + n) / (10 + n))

where n counts the updates before this one; a tensor shared by several layers is averaged
once. The warm-up term keeps the first, barely trained weights from dominating short runs
(after 1,000 updates d is 0.991, so a run of a few thousand steps averages over its last few
hundred). Integer buffers are copied. The average is what a
run validates and saves as its weights when ``optim.ema_decay`` is set (see
:mod:`cinerecon.train.loop`); the trained weights travel beside it in ``last.pt`` for resuming.
:func:`trained_weights` writes them as a checkpoint of their own (to compare, or to use them)::

    python -m cinerecon.train.ema RUN/last.pt TRAINED.pt
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import DataError
from ..files import check_writable
from .checkpoints import Checkpoint, atomic_torch_save, build_from_checkpoint, read_checkpoint, run_checkpoint_tool


class WeightEMA:
    """The moving average of one model's weights.

    Args:
        model: the trained model (wrappers such as DDP are unwrapped by the caller); the
            average starts as a copy of it, in eval mode and without gradients.
        decay: the largest per-update decay d, in (0, 1).

    Attributes:
        model: the averaged model (same class and device as ``model``).
        decay: see Args.
        updates: updates done so far (n).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    def current_decay(self) -> float:
        """The d of the next update."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model``'s current weights (same architecture)."""
        weight = 1.0 - self.current_decay()
        # named_parameters / named_buffers list a tensor shared between layers once (a state dict
        # lists it under every name, and averaging it once per name would compound the decay)
        theirs = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        avgs, news = [], []
        for key, avg in [*self.model.named_parameters(), *self.model.named_buffers()]:
            new = theirs[key]
            if avg.is_floating_point() or avg.is_complex():
                avgs.append(avg.data)
                news.append(new.detach())
            else:
                avg.copy_(new)
        if avgs:  # one fused kernel per dtype on CUDA instead of one launch per tensor
            torch._foreach_lerp_(avgs, news, weight)
        self.updates += 1

    def load(self, state_dict: dict, updates: int) -> None:
        """Restore the average's weights and update count (resuming a run)."""
        self.model.load_state_dict(state_dict)
        self.updates = int(updates)


def trained_weights(src: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``out``: ``src``'s trained weights (not their moving average) as a weights-only checkpoint.

    Args:
        src: a ``last.pt`` of a run with ``optim.ema_decay`` (it holds ``trained_state_dict``).
        out: the file to write (atomically); an existing file is refused unless ``overwrite``.

    Raises:
        DataError: ``src`` is unreadable or holds no trained weights beside an average.
        OutputExistsError: ``out`` exists and ``overwrite`` is False (checked first).
    """
    out = Path(out)
    check_writable([out], overwrite)
    ck = read_checkpoint(src)
    if ck.trained_state_dict is None:
        raise DataError(f"{src}: holds no trained weights beside a moving average (a run without "
                        "optim.ema_decay, or a best.pt): its weights are the trained ones")
    weights = Checkpoint(model_name=ck.model_name, model_kwargs=ck.model_kwargs, state_dict=ck.trained_state_dict,
                         config=ck.config, epoch=ck.epoch, step=ck.step)
    build_from_checkpoint(weights, f"{src} (trained weights)")  # fits (strict) before anything is written
    return atomic_torch_save(weights.to_dict(), out, overwrite=overwrite)


def main(argv: list[str] | None = None) -> int:
    return run_checkpoint_tool(argv, "python -m cinerecon.train.ema RUN/last.pt TRAINED.pt [--overwrite]", 2,
                               trained_weights)


if __name__ == "__main__":
    sys.exit(main())
