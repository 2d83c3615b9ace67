"""Model registry: a plain dict from name to builder.

Builders are registered with :func:`register` in the module that defines them; the
modules are imported here so that ``MODELS`` is complete after ``import cinerecon.models``.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ..errors import ConfigError

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder (class or function) to :data:`MODELS` under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ConfigError(f"model {name!r} registered twice")
        MODELS[name] = fn
        return fn

    return deco


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. ``build_model("crunet", chans=64, cascades=5)``.

    The model is called as ``model(kspace, mask, sens_maps)`` with k-space (B, C, T, H, W)
    complex, mask broadcastable to it, maps (B, C, 1, H, W) complex, and returns the
    image (B, T, H, W) complex.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {sorted(MODELS)}")
    return MODELS[name](**kwargs)


def _import_all() -> None:
    import importlib

    for mod in ("crunet", "crnn", "unet3d", "cinenet", "promptmr"):
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as e:  # a model file not written yet
            if e.name != f"{__name__}.{mod}":
                raise


_import_all()
