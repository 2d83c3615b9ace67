"""Loading the authors' checkpoints: CRUNet-MR, CRNN-MRI and PromptMR.

Each supported model has a *layout*: a map from every one of our parameter names to the
authors' name (and, where the layouts differ, the authors' tensor shape).
:func:`load_authors_state_dict` loads a state dict in the authors' layout or in our own
(a cinerecon model's ``state_dict()``), strictly: a file whose names or shapes match no
known layout is refused with one line naming the file, the first mismatching key and
both shapes.

CRUNet-MR (:class:`~cinerecon.models.crunet.CRUNet`): our module tree mirrors the authors'
names, so only three kinds of path segment are renamed

================================  ============================
authors' segment                  ours
================================  ============================
``CRNN_model``                    ``cell``      (CRNN-TI unit)
``conv2d``, ``convTranspose2d``   ``spatial``   (Conv(2+1)D)
``conv1d``, ``convTranspose1d``   ``temporal``  (Conv(2+1)D)
================================  ============================

and the unused ``pp`` tensors are dropped. Dilations and temporal padding cannot be read
from the weights; they default to the paper's (1, 2, 4) and circular.

CRNN-MRI (:class:`~cinerecon.models.crnn.CRNN`, the published ``crnn_mri_d5_c5.pth``, a
plain state dict): ``bcrnn.CRNN_model.{i2h,h2h,ih2ih}`` -> ``cascades.{i}.bcrnn.{w_x,w_h,w_i}``,
``conv{l}_x`` / ``conv{l}_h`` -> ``cascades.{i}.crnn_i.{l-1}.{w_x,w_i}``, the last
``conv{L}_x`` -> ``cascades.{i}.out``. The file holds one copy shared by all iterations;
it loads into every cascade (five unshared copies start equal). The number of iterations
is not in the file (the published one: 5).

PromptMR (:class:`~cinerecon.models.promptmr.PromptMROriginal`; the authors' state dict, or
their Lightning ``.ckpt`` whose ``state_dict`` prefixes every key with ``promptmr.`` and
holds a ``loss.w`` to drop): ``sens_net.norm_unet.unet`` -> ``sens_net.unet``,
``cascades.{i}.model.unet`` -> ``cascades.{i}.unet``, ``cascades.{i}.dc_weight`` ->
``dc.{i}.weight``, and inside a PromptUNet ``feat_extract`` -> ``head``,
``enc_level{l}.encoder`` / ``.down`` -> ``down.{l-1}.cabs`` / ``.down``,
``skip_attn{l}.skip_attn`` -> ``skip.{l-1}``, ``prompt_level{l}.{prompt_param,linear_layer,
dec_conv3x3}`` -> ``prompts.{3-l}.{components,weights,conv}`` (``prompt_param`` without
its leading axis of 1), ``dec_level{l}.{fuse,reduce,up.1,ca}`` ->
``up.{3-l}.{fuse,reduce,up,cab}``, ``conv_last`` -> ``tail``, and in every channel
attention block ``CA.conv_du`` -> ``ca.body``. The authors' state dict repeats their shared
PReLU slope under every block; tensors we share must hold equal values in the file.

Leading ``module.`` (DataParallel), ``model.``, ``net.`` and ``promptmr.`` prefixes are
stripped, and checkpoints that wrap the state dict under ``state_dict`` / ``model`` /
``model_state_dict`` / ``net`` are unwrapped.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError, DataError, WeightsNotFoundError

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
STRIP_PREFIXES = ("module.", "model.", "net.", "promptmr.")
#: Keys of training-only tensors in the authors' files (Lightning's loss module).
IGNORED_PREFIXES = ("loss.",)
#: A key pattern that identifies each authors' layout.
AUTHORS_PATTERNS: dict[str, re.Pattern] = {
    "crunet": re.compile(r"^cascades\.\d+\.\w+\.CRNN_model\.(i2h|h2h|ih2ih)\."),
    "crnn": re.compile(r"^bcrnn\.CRNN_model\.(i2h|h2h|ih2ih)\."),
    "promptmr": re.compile(r"^(cascades\.\d+\.model\.unet|sens_net\.norm_unet\.unet)\."),
}
LAYOUT_NAMES = {"crunet": "CRUNet-MR", "crnn": "CRNN-MRI", "promptmr": "PromptMR"}
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


def _ignored(key: str) -> bool:
    return key.split(".")[-1] in UNUSED_SEGMENTS or key.startswith(IGNORED_PREFIXES)


def authors_layout(sd: Mapping[str, Any]) -> str | None:
    """Which authors' layout a (stripped) state dict uses: "crunet", "crnn", "promptmr" or None."""
    for name, pattern in AUTHORS_PATTERNS.items():
        if any(pattern.match(_strip(str(k))) for k in sd):
            return name
    return None


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the tensor state dict inside a checkpoint object and strip wrapper prefixes.

    Args:
        obj: a state dict, or a dict holding one under a key in :data:`WRAPPER_KEYS`.
        source: name used in error messages (e.g. the file path).

    Returns:
        {key without ``module.``/``model.``/``net.``/``promptmr.`` prefixes: tensor}.

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
            if tensors and authors_layout(tensors) is not None:
                obj = tensors  # a state dict mixed with non-tensor entries
                break
            raise DataError(f"{source}: no state dict of tensors found; top-level keys "
                            f"{sorted(map(str, obj))[:10]} (looked under {WRAPPER_KEYS})")
        obj, seen = inner, seen + 1
    return {_strip(k): v for k, v in obj.items()}


def is_authors_state_dict(sd: Any) -> bool:
    """True when ``sd`` (or the state dict it wraps) uses the authors' CRUNet-MR naming.

    (CRUNet-MR only, as callers build a CRUNet from it; see :func:`authors_layout` for all.)
    """
    try:
        sd = unwrap_state_dict(sd)
    except DataError:
        return False
    return authors_layout(sd) == "crunet"


# ---------------------------------------------------------------- CRUNet-MR

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
    return dict(
        chans=int(sd[key].shape[0]),
        cascades=_cascades(sd),
        dilations=(1, 2, 4),
        side_branches=any(re.match(r"^cascades\.\d+\.conv11\.weight$", k) for k in sd),
        temporal_padding="circular",
        iteration_recurrence=any(".ih2ih." in k for k in sd),
    )


def authors_to_ours(key: str) -> str | None:
    """Map one authors' CRUNet-MR parameter name to ours; None for tensors to ignore (``pp``)."""
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


# ---------------------------------------------------------------- CRNN-MRI

_CRNN_CELL = {"w_x": "i2h", "w_h": "h2h", "w_i": "ih2ih"}
_CRNN_KEY = re.compile(r"^cascades\.\d+\.(?:bcrnn\.(w_x|w_h|w_i)|crnn_i\.(\d+)\.(w_x|w_i)|(out))\.(\w+)$")


def crnn_ours_to_authors(key: str, n_crnn_i: int) -> str | None:
    """Our CRNN parameter name -> the authors' (None: no counterpart, e.g. a soft-DC weight).

    Args:
        key: e.g. ``cascades.2.crnn_i.0.w_i.weight``.
        n_crnn_i: CRNN-i layers per iteration (layers - 2).
    """
    m = _CRNN_KEY.match(key)
    if m is None:
        return None
    cell, layer, which, out, leaf = m.groups()
    if cell:
        return f"bcrnn.CRNN_model.{_CRNN_CELL[cell]}.{leaf}"
    if out:
        return f"conv{n_crnn_i + 1}_x.{leaf}"
    return f"conv{int(layer) + 1}_{'x' if which == 'w_x' else 'h'}.{leaf}"


def crnn_authors_config(sd: Mapping[str, torch.Tensor]) -> dict:
    """``build_model("crnn", ...)`` keywords for the authors' CRNN-MRI weights.

    nf from ``bcrnn.CRNN_model.i2h.weight``, layers = number of ``conv{l}_x`` + 1; the
    iterations are not stored (shared weights) and take the published 5.
    """
    sd = unwrap_state_dict(sd)
    key = "bcrnn.CRNN_model.i2h.weight"
    if key not in sd or sd[key].ndim != 4:
        raise DataError(f"not a CRNN-MRI state dict: key {key!r} (4-D) missing; first keys {list(sd)[:5]}")
    n_x = sum(bool(re.match(r"^conv\d+_x\.weight$", k)) for k in sd)
    return dict(preset="original", nf=int(sd[key].shape[0]), layers=n_x + 1, cascades=5)


# ---------------------------------------------------------------- PromptMR

_UNET_RULES: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (re.compile(r"^head\."), lambda m: "feat_extract."),
    (re.compile(r"^down\.(\d+)\.cabs\."), lambda m: f"enc_level{int(m[1]) + 1}.encoder."),
    (re.compile(r"^down\.(\d+)\.down\."), lambda m: f"enc_level{int(m[1]) + 1}.down."),
    (re.compile(r"^skip\.(\d+)\."), lambda m: f"skip_attn{int(m[1]) + 1}.skip_attn."),
    (re.compile(r"^bottleneck\."), lambda m: "bottleneck."),
    (re.compile(r"^prompts\.(\d+)\.components$"), lambda m: f"prompt_level{3 - int(m[1])}.prompt_param"),
    (re.compile(r"^prompts\.(\d+)\.weights\."), lambda m: f"prompt_level{3 - int(m[1])}.linear_layer."),
    (re.compile(r"^prompts\.(\d+)\.conv\."), lambda m: f"prompt_level{3 - int(m[1])}.dec_conv3x3."),
    (re.compile(r"^up\.(\d+)\.fuse\."), lambda m: f"dec_level{3 - int(m[1])}.fuse."),
    (re.compile(r"^up\.(\d+)\.reduce\."), lambda m: f"dec_level{3 - int(m[1])}.reduce."),
    (re.compile(r"^up\.(\d+)\.up\."), lambda m: f"dec_level{3 - int(m[1])}.up.1."),
    (re.compile(r"^up\.(\d+)\.cab\."), lambda m: f"dec_level{3 - int(m[1])}.ca."),
    (re.compile(r"^tail\."), lambda m: "conv_last."),
]
_CA = re.compile(r"(^|\.)ca\.body\.")


def promptunet_ours_to_authors(key: str) -> str | None:
    """A parameter name inside our PromptUNet -> the authors' (inside their ``PromptUnet``)."""
    key = _CA.sub(r"\1CA.conv_du.", key)
    for pattern, repl in _UNET_RULES:
        m = pattern.match(key)
        if m:
            return repl(m) + key[m.end():]
    return None


def promptmr_ours_to_authors(key: str) -> str | None:
    """Our :class:`~cinerecon.models.promptmr.PromptMROriginal` parameter name -> the authors'."""
    if key.startswith("sens_net.unet."):
        inner = promptunet_ours_to_authors(key[len("sens_net.unet."):])
        return None if inner is None else "sens_net.norm_unet.unet." + inner
    m = re.match(r"^cascades\.(\d+)\.unet\.(.*)$", key)
    if m:
        inner = promptunet_ours_to_authors(m[2])
        return None if inner is None else f"cascades.{m[1]}.model.unet.{inner}"
    m = re.match(r"^dc\.(\d+)\.weight$", key)
    return f"cascades.{m[1]}.dc_weight" if m else None


def _count(sd: Mapping[str, Any], prefix: str) -> int:
    """Number of distinct block indices right after ``prefix`` (e.g. CABs in a Sequential)."""
    idx = {int(m[1]) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def _promptunet_config(sd: Mapping[str, torch.Tensor], p: str) -> dict:
    """Widths of the authors' PromptUnet whose keys start with ``p``."""
    prompt = [sd[f"{p}prompt_level{i}.prompt_param"].shape for i in (1, 2, 3)]  # (1, L, D, S, S)
    return dict(
        n_feat0=int(sd[f"{p}feat_extract.weight"].shape[0]),
        feature_dim=[int(sd[f"{p}enc_level{i}.down.weight"].shape[0]) for i in (1, 2, 3)],
        prompt_dim=[int(s[2]) for s in prompt],
        len_prompt=[int(s[1]) for s in prompt],
        prompt_size=[int(s[3]) for s in prompt],
        n_enc_cab=[_count(sd, f"{p}enc_level{i}.encoder.") for i in (1, 2, 3)],
        n_dec_cab=[_count(sd, f"{p}dec_level{i}.fuse.") for i in (1, 2, 3)],
        n_skip_cab=[_count(sd, f"{p}skip_attn{i}.skip_attn.") for i in (1, 2, 3)],
        n_bottleneck_cab=_count(sd, f"{p}bottleneck."),
        no_use_ca=not any(k.startswith(p) and ".CA.conv_du." in k for k in sd),
    )


def promptmr_authors_config(sd: Mapping[str, torch.Tensor]) -> dict:
    """``build_model("promptmr", preset="original", ...)`` keywords read from the authors' weights."""
    sd = unwrap_state_dict(sd)
    try:
        main = _promptunet_config(sd, "cascades.0.model.unet.")
        sens = _promptunet_config(sd, "sens_net.norm_unet.unet.")
        adjacent = int(sd["cascades.0.model.unet.feat_extract.weight"].shape[1]) // 2
    except KeyError as e:
        raise DataError(f"not a PromptMR state dict: key {e.args[0]!r} missing; first keys {list(sd)[:5]}") from None
    cfg = dict(preset="original", num_cascades=_cascades(sd), num_adj_slices=adjacent, **main,
               sens_n_feat0=sens.pop("n_feat0"), sens_feature_dim=sens.pop("feature_dim"),
               sens_prompt_dim=sens.pop("prompt_dim"))
    cfg.update({f"sens_{k}": v for k, v in sens.items() if v != main[k]})
    return cfg


# ---------------------------------------------------------------- loading

def _cascades(sd: Mapping[str, Any]) -> int:
    idx = {int(m.group(1)) for k in sd if (m := _CASCADE.match(k))}
    return max(idx) + 1 if idx else 0


def _squeeze_prompt(key: str, v: torch.Tensor) -> torch.Tensor:
    """The authors' ``prompt_param`` (1, L, D, S, S) -> our components (L, D, S, S)."""
    return v[0] if key.endswith(".prompt_param") and v.dim() == 5 and v.shape[0] == 1 else v


class _Layout:
    """Our-name -> authors'-name map of one model, with tensor adaptation."""

    def __init__(self, name: str, to_file: Callable[[str], str | None],
                 adapt: Callable[[str, torch.Tensor], torch.Tensor] = lambda k, v: v) -> None:
        self.name, self.to_file, self.adapt = name, to_file, adapt


def _authors_layout_of(model: nn.Module) -> _Layout | None:
    from .crnn import CRNN
    from .crunet import CRUNet
    from .promptmr import PromptMROriginal

    if isinstance(model, CRUNet):
        return _Layout("authors' CRUNet-MR", ours_to_authors)
    if isinstance(model, CRNN):
        n = len(model.cascades[0].crnn_i)
        return _Layout("authors' CRNN-MRI", lambda k: crnn_ours_to_authors(k, n))
    if isinstance(model, PromptMROriginal):
        return _Layout("authors' PromptMR", promptmr_ours_to_authors, _squeeze_prompt)
    return None


def _shape(v: torch.Tensor | None) -> str:
    return "missing" if v is None else str(tuple(v.shape))


def load_authors_state_dict(model: nn.Module, sd: Mapping[str, Any], source: str = "state dict") -> nn.Module:
    """Copy weights in the authors' layout, or in our own, into ``model`` (strict).

    Args:
        model: a CRUNet, a CRNN (any preset) or a PromptMR ``preset="original"`` built with a
            matching configuration (see :func:`authors_config`, :func:`crnn_authors_config`,
            :func:`promptmr_authors_config`); with our own layout any cinerecon model.
        sd: the state dict (possibly wrapped, see :func:`unwrap_state_dict`).
        source: name used in error messages (the file path).

    Returns:
        ``model`` with the weights loaded.

    Raises:
        DataError: one line naming ``source``, the first mismatching key and both shapes
            (file and model), when the names or shapes match no known layout; or naming two
            keys that the model shares but the file gives different values.
    """
    sd = {k: v for k, v in unwrap_state_dict(sd, source).items() if not _ignored(k)}
    target = model.state_dict()
    layout = _Layout("cinerecon (own)", lambda k: k)
    if authors_layout(sd) is not None:
        layout = _authors_layout_of(model) or layout
    idle = _idle_weights(model)  # weights that never act (CRUNet-MR's first-cascade ih2ih): dropped
    sd = {k: v for k, v in sd.items() if k not in idle and k not in {layout.to_file(i) for i in idle}}
    used: set[str] = set()
    mapped: dict[str, torch.Tensor] = {}
    problem = None
    for k, tv in target.items():
        fk = layout.to_file(k)
        fv = None if fk is None or fk not in sd else layout.adapt(fk, sd[fk])
        if fv is None or fv.shape != tv.shape:
            problem = (fk or f"(none for model key {k!r})", k, fv, tv)
            break
        used.add(fk)
        mapped[k] = fv
    if problem is None:
        extra = next((fk for fk in sd if fk not in used), None)
        if extra is not None:
            problem = (extra, None, sd[extra], None)
    if problem is not None:
        fk, k, fv, tv = problem
        ours = f" (model key {k!r})" if k is not None and k != fk else ""
        model_shape = "not in the model" if tv is None else str(tuple(tv.shape))
        raise DataError(f"{source}: weights match no known layout of {type(model).__name__} (names read as "
                        f"the {layout.name} layout); first mismatching key {fk!r}{ours}: "
                        f"shape in file {_shape(fv)}, in model {model_shape}")
    _check_shared(model, mapped, source)
    model.load_state_dict(mapped, strict=True)
    return model


def _idle_weights(model: nn.Module) -> dict[str, torch.Size]:
    """{our key: shape} of weights a file may hold that never act in ``model`` (see ``CRUNet.idle_weights``)."""
    fn = getattr(model, "idle_weights", None)
    return dict(fn()) if callable(fn) else {}


def _check_shared(model: nn.Module, mapped: Mapping[str, torch.Tensor], source: str) -> None:
    """Tensors the model shares (one parameter under several names) must be equal in the file."""
    first: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if name not in mapped:
            continue
        other = first.setdefault(id(p), name)
        if other != name and not torch.equal(mapped[other], mapped[name]):
            raise DataError(f"{source}: {other!r} and {name!r} are one parameter in the model "
                            f"but differ in the file")


def to_authors_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under the authors' names (CRUNet-MR without ``pp``, CRNN-MRI, PromptMR).

    CRUNet-MR's first-cascade ``ih2ih`` weights, which our model does not hold (they multiply
    a zero state), are written as zeros so that the authors' code loads the file.

    Raises:
        ConfigError: for models without an authors' layout, a CRNN with unshared weights
            (the authors' file holds one copy), or a model with a second weight set.
    """
    layout = _authors_layout_of(model)
    if layout is None:
        raise ConfigError(f"{type(model).__name__} has no authors' layout")
    if getattr(model, "uncalibrated_cascades", None) is not None:
        raise ConfigError(f"{type(model).__name__} holds a second weight set for masks without calibration "
                          "(uncalibrated_weights=True); the authors' layout has one set")
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        fk = layout.to_file(k)
        if fk is None:
            raise ConfigError(f"{type(model).__name__}: {k!r} has no counterpart in the {layout.name} layout")
        if fk.endswith(".prompt_param"):
            v = v[None]
        if fk in out and not torch.equal(out[fk], v):
            raise ConfigError(f"{type(model).__name__}: several different tensors map to {fk!r} "
                              "(e.g. unshared CRNN cascades; the authors' layout holds one copy)")
        out[fk] = v
    like = next(model.parameters(), None)  # the idle weights live where the model's weights do
    like = like if like is not None else next(iter(out.values()))
    for k, shape in _idle_weights(model).items():  # the authors' model has them; they multiply zeros
        out[layout.to_file(k)] = torch.zeros(shape, dtype=like.dtype, device=like.device)
    return out


def _read(path: Path, trusted: bool) -> Any:
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint file {path} not found; the authors' weights "
                                   "must be downloaded by hand and passed as a local path")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as e:
        raise DataError(f"{path}: cannot be read as weights only ({e}); if you trust the file, "
                        "pass trusted=True to unpickle it fully") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise DataError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None


def load_authors_checkpoint(path_or_sd: str | Path | Mapping[str, Any], trusted: bool = False,
                            source: str | None = None, **overrides: Any) -> nn.Module:
    """Build the model an authors' checkpoint belongs to and load its weights.

    The layout (CRUNet-MR, CRNN-MRI ``crnn_mri_d5_c5.pth``, PromptMR state dict or Lightning
    ``.ckpt``) is recognised from the key names, the configuration read from the shapes.

    Args:
        path_or_sd: a path to a ``torch.save`` file, or a (possibly wrapped) state dict.
        trusted: allow full unpickling of the file (only for files you trust; Lightning
            checkpoints hold pickled hyper-parameters).
        source: name used in error messages (default: the path, or "state dict"), e.g. the
            file a caller read ``path_or_sd`` from.
        **overrides: ``build_model(...)`` arguments that replace the inferred ones (e.g.
            ``dilations=(1, 3, 5)`` for CRUNet-MR, ``cascades=10`` for CRNN-MRI).

    Returns:
        The model in eval mode, on the CPU. ``model.config_dict()`` gives its configuration.

    Raises:
        DataError: when the keys match no known layout (naming the file and the first key),
            or the tensors do not fit the layout (naming the file, the first mismatching key
            and both shapes).
    """
    from . import build_model
    from .crunet import build_crunet

    if isinstance(path_or_sd, (str, Path)):
        source = source or str(path_or_sd)
        obj = _read(Path(path_or_sd), trusted)
    else:
        source, obj = source or "state dict", path_or_sd
    sd = unwrap_state_dict(obj, source)
    kind = authors_layout(sd)
    if kind is None:
        first = next(iter(sd))
        raise DataError(f"{source}: weights match no known authors' layout ({', '.join(LAYOUT_NAMES.values())}); "
                        f"first key {first!r} with shape {tuple(sd[first].shape)}")
    try:  # the configuration read from the file's shapes: a damaged file fails here
        if kind == "crunet":
            model = build_crunet(**{**authors_config(sd), **overrides})
        else:
            infer = crnn_authors_config if kind == "crnn" else promptmr_authors_config
            model = build_model(kind, **{**infer(sd), **overrides})
    except (DataError, ConfigError) as e:
        raise type(e)(f"{source}: {LAYOUT_NAMES[kind]} weights: {e}") from None
    except (IndexError, KeyError, TypeError, ValueError) as e:  # a tensor of the wrong rank
        why = " ".join(str(e).split())
        raise DataError(f"{source}: {LAYOUT_NAMES[kind]} weights are damaged: the layer widths cannot be "
                        f"read from their shapes ({type(e).__name__}: {why})") from None
    load_authors_state_dict(model, sd, source)
    return model.eval()
