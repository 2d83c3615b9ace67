"""Subcommands of the ``cinerecon`` CLI, one module each (``add_parser`` and ``run``)."""

from __future__ import annotations

from ..errors import ConfigError


def check_device(text: str, flag: str = "--device") -> str:
    """``text`` if it names a torch device that exists on this machine, else ConfigError naming ``flag``.

    ``cpu`` always exists; ``cuda`` / ``cuda:N`` need that many CUDA devices; ``mps`` needs MPS.
    """
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{flag} {text!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return text
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise ConfigError(f"{flag} {text!r}: this machine has {n} CUDA device(s); use cpu"
                              + (f" or cuda:0..cuda:{n - 1}" if n else ""))
        return text
    if dev.type == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return text
    raise ConfigError(f"{flag} {text!r}: no such device available here; use cpu or cuda")
