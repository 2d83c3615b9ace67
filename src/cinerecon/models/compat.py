"""Loading the CRUNet-MR authors' checkpoints into :class:`cinerecon.models.crunet.CRUNet`.

Our module tree mirrors the authors' names (``cascades.{i}.conv0``, ``d_crnn1``, ``conv11``,
``d_conv``, ...), so the mapping renames only three kinds of path segment:

================================  ============================
authors' segment                  ours
================================  ============================
``CRNN_model``                    ``cell``      (CRNN-TI unit)
``conv2d``, ``convTranspose2d``   ``spatial``   (Conv(2+1)D)
``conv1d``, ``convTranspose1d``   ``temporal``  (Conv(2+1)D)
================================  ============================

and drops the unused ``pp`` tensors. Weight layouts are unchanged. Leading ``module.``
(DataParallel) and ``model.`` / ``net.`` prefixes are stripped, and checkpoints that wrap
the state dict under ``state_dict`` / ``model`` / ``model_state_dict`` / ``net`` are unwrapped.

Dilations and temporal padding cannot be read from the weights; they default to the
paper's (1, 2, 4) and circular and may be overridden.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import DataError, WeightsNotFoundError

SEGMENT_RENAMES: dict[str, str] = {
    "CRNN_model": "cell",
    "conv2d": "spatial",
    "convTranspose2d": "spatial",
    "conv1d": "temporal",
    "convTranspose1d": "temporal",
}
_REVERSE_CONV = {"spatial": "conv2d", "temporal": "conv1d"}
_REVERSE_UP = {"spatial": "convTranspose2d", "temporal": "convTranspose1d"}
UNUSED_SEGMENTS = ("pp",)
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "params")
STRIP_PREFIXES = ("module.", "model.", "net.")
_AUTHORS_KEY = re.compile(r"^cascades\.\d+\.\w+\.CRNN_model\.(i2h|h2h|ih2ih)\.")
_CASCADE = re.compile(r"^cascades\.(\d+)\.")


def _is_tensor_dict(d: Any) -> bool:
    return isinstance(d, Mapping) and len(d) > 0 and all(torch.is_tensor(v) for v in d.values())


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in STRIP_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the tensor state dict inside a checkpoint object and strip wrapper prefixes.

    Args:
        obj: a state dict, or a dict holding one under a key in :data:`WRAPPER_KEYS`.
        source: name used in error messages (e.g. the file path).

    Returns:
        {key without ``module.``/``model.``/``net.`` prefixes: tensor}.

    Raises:
        DataError: when no state dict is found.
    """
    seen = 0
    while not _is_tensor_dict(obj):
        if not isinstance(obj, Mapping) or seen > 3:
            raise DataError(f"{source}: no state dict of tensors found (looked under {WRAPPER_KEYS})")
        inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            tensors = {k: v for k, v in obj.items() if torch.is_tensor(v)}
            if tensors and any(_AUTHORS_KEY.match(_strip(k)) for k in tensors):
                obj = tensors  # a state dict mixed with non-tensor entries
                break
            raise DataError(f"{source}: no state dict of tensors found; top-level keys "
                            f"{sorted(map(str, obj))[:10]} (looked under {WRAPPER_KEYS})")
        obj, seen = inner, seen + 1
    return {_strip(k): v for k, v in obj.items()}


def is_authors_state_dict(sd: Any) -> bool:
    """True when ``sd`` (or the state dict it wraps) uses the authors' CRUNet-MR naming."""
    try:
        sd = unwrap_state_dict(sd)
    except DataError:
        return False
    return any(_AUTHORS_KEY.match(k) for k in sd)


def authors_config(sd: Mapping[str, torch.Tensor]) -> dict:
    """Infer ``build_model("crunet", ...)`` keyword arguments from the authors' weights.

    chans from ``conv0.weight``, cascades from the largest cascade index, side_branches
    from the presence of ``conv11``, iteration_recurrence from ``ih2ih``. Dilations and
    temporal padding cannot be inferred and take the paper's (1, 2, 4) and "circular".

    Raises:
        DataError: when the weights are not a CRUNet-MR state dict.
    """
    sd = unwrap_state_dict(sd)
    key = "cascades.0.conv0.weight"
    if key not in sd or sd[key].ndim != 4:
        raise DataError(f"not a CRUNet-MR state dict: key {key!r} (4-D) missing; "
                        f"first keys {list(sd)[:5]}")
    idx = {int(m.group(1)) for k in sd if (m := _CASCADE.match(k))}
    return dict(
        chans=int(sd[key].shape[0]),
        cascades=max(idx) + 1,
        dilations=(1, 2, 4),
        side_branches=any(re.match(r"^cascades\.\d+\.conv11\.weight$", k) for k in sd),
        temporal_padding="circular",
        iteration_recurrence=any(".ih2ih." in k for k in sd),
    )


def authors_to_ours(key: str) -> str | None:
    """Map one authors' parameter name to ours; None for tensors to ignore (``pp``)."""
    parts = _strip(key).split(".")
    if parts[-1] in UNUSED_SEGMENTS:
        return None
    return ".".join(SEGMENT_RENAMES.get(p, p) for p in parts)


def ours_to_authors(key: str) -> str:
    """Inverse of :func:`authors_to_ours` for CRUNet parameter names."""
    parts = key.split(".")
    out = []
    for i, p in enumerate(parts):
        if p == "cell":
            out.append("CRNN_model")
        elif p in _REVERSE_CONV and i > 0:
            out.append((_REVERSE_UP if parts[i - 1] == "u_conv" else _REVERSE_CONV)[p])
        else:
            out.append(p)
    return ".".join(out)


def to_authors_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our CRUNet's weights under the authors' names (without ``pp``)."""
    return {ours_to_authors(k): v for k, v in model.state_dict().items()}


def load_authors_state_dict(model: nn.Module, sd: Mapping[str, Any], source: str = "state dict") -> nn.Module:
    """Copy the authors' weights into our CRUNet (strict, ``pp`` ignored).

    Args:
        model: a CRUNet built with a matching configuration (see :func:`authors_config`).
        sd: the authors' state dict (possibly wrapped, see :func:`unwrap_state_dict`).
        source: name used in error messages.

    Returns:
        ``model`` with the weights loaded.

    Raises:
        DataError: on missing or unexpected keys or on shape mismatches, naming them.
    """
    sd = unwrap_state_dict(sd, source)
    mapped = {}
    for k, v in sd.items():
        ours = authors_to_ours(k)
        if ours is not None:
            mapped[ours] = v
    target = model.state_dict()
    missing = [k for k in target if k not in mapped]
    unexpected = [ours_to_authors(k) for k in mapped if k not in target]
    shapes = [f"{ours_to_authors(k)}: file {tuple(v.shape)} vs model {tuple(target[k].shape)}"
              for k, v in mapped.items() if k in target and v.shape != target[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys (authors' names), e.g. "
                        f"{[ours_to_authors(k) for k in missing[:5]]}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys, e.g. {unexpected[:5]}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches, e.g. {shapes[:3]}")
    if problems:
        raise DataError(f"{source}: weights do not match the model ({'; '.join(problems)}); "
                        f"inferred config {authors_config(sd) if 'cascades.0.conv0.weight' in sd else '?'}")
    model.load_state_dict(mapped, strict=True)
    return model


def _read(path: Path, trusted: bool) -> Any:
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint file {path} not found; the authors' CRUNet-MR weights "
                                   "must be downloaded by hand and passed as a local path")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as e:
        raise DataError(f"{path}: cannot be read as weights only ({e}); if you trust the file, "
                        "pass trusted=True to unpickle it fully") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise DataError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None


def load_authors_checkpoint(path_or_sd: str | Path | Mapping[str, Any], trusted: bool = False,
                            **overrides: Any) -> nn.Module:
    """Build a CRUNet from an authors' checkpoint and load its weights.

    Args:
        path_or_sd: a path to a ``torch.save`` file, or a (possibly wrapped) state dict.
        trusted: allow full unpickling of the file (only for files you trust).
        **overrides: ``build_model("crunet", ...)`` arguments that replace the inferred ones
            (e.g. ``dilations=(1, 3, 5)``, ``temporal_padding="zero"``).

    Returns:
        The model in eval mode, on the CPU. ``model.config_dict()`` gives its configuration.
    """
    from .crunet import build_crunet

    if isinstance(path_or_sd, (str, Path)):
        source = str(path_or_sd)
        obj = _read(Path(path_or_sd), trusted)
    else:
        source, obj = "state dict", path_or_sd
    sd = unwrap_state_dict(obj, source)
    cfg = {**authors_config(sd), **overrides}
    model = build_crunet(**cfg)
    load_authors_state_dict(model, sd, source)
    return model.eval()
