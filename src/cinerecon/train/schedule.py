"""Linear warm-up followed by a cosine decay to a minimum learning rate.

With W warm-up units and N units in total (units are epochs, or optimiser steps when
stepping per batch), the multiplier of the peak learning rate at scheduler position i is

    (i + 1) / (W + 1)                                   for i < W   (linear warm-up)
    m + (1 - m) * (1 + cos(pi * (i - W) / (N - 1 - W))) / 2   for i >= W  (cosine)

with m = min_lr / lr: the peak is reached at i = W and the minimum at the last position
i = N - 1. Positions past the end stay at the minimum.

The warm-up takes at most a quarter of the run (:data:`MAX_WARMUP_FRACTION`): W is
``min(warmup_epochs * steps_per_epoch, floor(N / 4))``, so a short run (a fine-tuning of a few
epochs, a run cut by its time budget) still reaches its peak learning rate and decays; the
paper's schedules (10 warm-up epochs of hundreds, 5 of the 32 fine-tuning epochs) are as
written. :func:`warmup_note` says when the cap applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError

MAX_WARMUP_FRACTION = 0.25  # the warm-up takes at most this share of the scheduler positions


@dataclass
class WarmupCosine:
    """Learning-rate multiplier for :class:`torch.optim.lr_scheduler.LambdaLR`.

    A plain (non-frozen) dataclass so that ``LambdaLR.state_dict`` saves its fields.

    Attributes:
        warmup: warm-up length W in scheduler positions.
        total: total length N in scheduler positions.
        min_factor: min_lr / peak lr.
    """

    warmup: int
    total: int
    min_factor: float

    def __call__(self, i: int) -> float:
        if i < self.warmup:
            return (i + 1) / (self.warmup + 1)
        span = max(self.total - 1 - self.warmup, 1)
        p = min((i - self.warmup) / span, 1.0)
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * p))


def warmup_cosine(lr: float, min_lr: float, warmup_epochs: int, epochs: int,
                  steps_per_epoch: int = 1) -> WarmupCosine:
    """The multiplier for a schedule measured in epochs, stepped ``steps_per_epoch`` times each.

    Args:
        lr: peak learning rate.
        min_lr: final learning rate.
        warmup_epochs: warm-up epochs.
        epochs: total epochs.
        steps_per_epoch: 1 to step the scheduler once per epoch, else batches per epoch.
    """
    if lr <= 0 or min_lr < 0 or min_lr > lr:
        raise ConfigError(f"need 0 <= min_lr <= lr and lr > 0, got lr={lr}, min_lr={min_lr}")
    if epochs < 1 or warmup_epochs < 0 or steps_per_epoch < 1:
        raise ConfigError(f"bad schedule lengths: epochs={epochs}, warmup={warmup_epochs}, "
                         f"steps_per_epoch={steps_per_epoch}")
    total = epochs * steps_per_epoch
    return WarmupCosine(min(warmup_epochs * steps_per_epoch, int(MAX_WARMUP_FRACTION * total)), total, min_lr / lr)


def warmup_note(warmup_epochs: int, epochs: int, steps_per_epoch: int = 1) -> str | None:
    """A line saying that :data:`MAX_WARMUP_FRACTION` shortened the warm-up, or None when it did not.

    Args:
        warmup_epochs: the configured warm-up epochs.
        epochs: total epochs.
        steps_per_epoch: scheduler positions per epoch (1 when stepping per epoch).
    """
    total = epochs * steps_per_epoch
    capped = int(MAX_WARMUP_FRACTION * total)
    if warmup_epochs * steps_per_epoch <= capped:
        return None
    unit = "steps" if steps_per_epoch > 1 else "epochs"
    what = f"shortened to {capped} of {total} {unit}" if capped else f"dropped (the run has {total} {unit})"
    return (f"warm-up {what}: it takes at most a quarter of the run, and optim.warmup_epochs={warmup_epochs} of "
            f"{epochs} epochs would leave too little at the peak learning rate")


def make_scheduler(optimizer: torch.optim.Optimizer, lr: float, min_lr: float, warmup_epochs: int,
                   epochs: int, steps_per_epoch: int = 1) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR applying :func:`warmup_cosine` to every parameter group of ``optimizer``.

    The optimiser's groups must have ``lr`` equal to the peak learning rate when this is called.
    """
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(lr, min_lr, warmup_epochs, epochs, steps_per_epoch))
