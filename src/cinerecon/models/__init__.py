"""Model registry: a plain dict from name to builder.

Builders are registered with :func:`register` in the module that defines them; the
modules are imported here so that ``MODELS`` is complete after ``import cinerecon.models``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from ..errors import ConfigError, WeightsNotFoundError

MODELS: dict[str, Callable[..., nn.Module]] = {}

#: Weights shipped with the package (see the ``.md`` file beside each for how they were trained).
PRETRAINED: dict[str, Path] = {"crunet": Path(__file__).resolve().parents[1] / "assets" / "crunet_real.pt"}


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


#: Model kwargs that leave the weights (their names and shapes) alone: a run started from a
#: checkpoint may set them differently, and two checkpoints that differ only in them pair.
WEIGHT_FREE_KWARGS = ("checkpoint_cascades", "initial_image")


def full_kwargs(name: str, kwargs: dict) -> dict:
    """Every keyword argument of model ``name`` as ``build_model(name, **kwargs)`` resolves it (tuples as lists).

    The builder's defaults fill in what ``kwargs`` leaves out, so that two descriptions of one
    architecture compare equal (``{}`` and ``{"chans": 64}`` for CRUNet-MR). The model is
    built on the meta device (no memory); kwargs that do not build are returned as given.
    """
    import dataclasses
    import inspect

    import torch

    def plain(v):  # noqa: ANN001, ANN202 - YAML and dataclass values
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return [plain(x) for x in v] if isinstance(v, (tuple, list)) else v

    try:
        with torch.device("meta"):
            model = build_model(name, **kwargs)
    except Exception:  # noqa: BLE001 - any failure: nothing to resolve against
        return {k: plain(v) for k, v in kwargs.items()}
    config = getattr(model, "config", None)
    if hasattr(model, "config_dict") or (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        # the model's config: every field, as resolved (nested configs as dicts)
        fields = model.config_dict() if hasattr(model, "config_dict") else dataclasses.asdict(config)
        resolved = {**kwargs, **fields}
        if "preset" not in fields:  # a preset only names field values, which are all listed
            resolved.pop("preset", None)
    else:
        params = inspect.signature(MODELS[name]).parameters.values()
        resolved = {**{p.name: p.default for p in params if p.default is not inspect.Parameter.empty}, **kwargs}
    return {k: plain(v) for k, v in resolved.items()}


def architecture_change(name: str, stored: dict, asked: dict, keys: Any = None,
                        free: tuple[str, ...] = WEIGHT_FREE_KWARGS) -> tuple[str, Any, Any] | None:
    """The first key of ``keys`` (default: all) whose value differs between two kwargs of model ``name``
    once :func:`full_kwargs` fills both in, with both values (None: one architecture); keys in ``free``
    never count, and a ``preset`` among ``keys`` stands for all the fields it sets."""
    a, b = full_kwargs(name, stored), full_kwargs(name, asked)
    if keys is None or ("preset" in keys and "preset" not in b):
        keys = set(a) | set(b)
    k = next((k for k in sorted(keys) if k not in free and a.get(k) != b.get(k)), None)
    return None if k is None else (k, a.get(k), b.get(k))


def load_pretrained(name: str = "crunet", device: str = "cpu") -> nn.Module:
    """The shipped model ``name`` in eval mode, called like every model.

    ``load_pretrained("crunet")`` is the CRUNet-MR trained on real anatomy (issue 11):
    ``model(kspace (B, C, T, H, W), mask, maps (B, C, 1, H, W)) -> (B, T, H, W)`` on any
    H, W, T (a single frame too) and coil count. How it was trained: ``assets/crunet_real.md``.

    Raises:
        ConfigError: no shipped weights for ``name``.
        WeightsNotFoundError: the weights file is missing from this installation.
    """
    if name not in PRETRAINED:
        raise ConfigError(f"no shipped weights for {name!r}; available: {sorted(PRETRAINED)}")
    path = PRETRAINED[name]
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: shipped weights for {name!r} are missing from this installation")
    from ..train.checkpoints import load_model

    return load_model(path, device)[0].eval()


def _import_all() -> None:
    import importlib

    for mod in ("crunet", "crnn", "unet3d", "cinenet", "promptmr"):
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as e:  # a model file not written yet
            if e.name != f"{__name__}.{mod}":
                raise


_import_all()
