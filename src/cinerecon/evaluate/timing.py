"""Parameter counts and inference time per slice (Table 2 of the paper)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class TimingConfig:
    """Attributes:
        warmup: untimed calls before measuring.
        runs: timed calls; the median is reported.
    """

    warmup: int = 1
    runs: int = 3


@dataclass(frozen=True)
class TimingResult:
    """Inference time of one method.

    Attributes:
        method: method name.
        parameters: number of trainable + frozen parameters (0 for classical methods).
        median_s: median seconds per call (one slice).
        times_s: every timed call.
        device: device the inputs lived on.
    """

    method: str
    parameters: int
    median_s: float
    times_s: tuple[float, ...]
    device: str


def count_parameters(method: object) -> int:
    """Number of parameters of an ``nn.Module`` (or of a callable's ``model`` / bound module), else 0."""
    for obj in (method, getattr(method, "model", None), getattr(method, "__self__", None)):
        if isinstance(obj, torch.nn.Module):
            return sum(p.numel() for p in obj.parameters())
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[..., object], *args: torch.Tensor, cfg: TimingConfig = TimingConfig(),
              name: str = "", device: torch.device | str | None = None) -> TimingResult:
    """Median wall time of ``fn(*args)`` after warm-up; synchronises CUDA around every call.

    Args:
        fn: callable (e.g. a reconstruction method).
        args: its tensor arguments (their device is used unless ``device`` is given).
        cfg: warm-up and run counts.
        name: label for the result.
        device: device to synchronise.
    """
    if cfg.runs < 1 or cfg.warmup < 0:
        raise ConfigError(f"timing needs runs >= 1 and warmup >= 0, got {cfg}")
    dev = torch.device(device) if device is not None else (args[0].device if args else torch.device("cpu"))
    with torch.no_grad():
        for _ in range(cfg.warmup):
            fn(*args)
        _sync(dev)
        times = []
        for _ in range(cfg.runs):
            _sync(dev)
            t0 = time.perf_counter()
            fn(*args)
            _sync(dev)
            times.append(time.perf_counter() - t0)
    return TimingResult(name, count_parameters(fn), statistics.median(times), tuple(times), str(dev))
