"""The shared unrolled wrapper: normalise, pad, denoise, un-pad, un-normalise, data consistency.

Every unrolled model in cinerecon (CRUNet-MR, CRNN-MRI, 3D UNet-MR, CineNet, ...) is a
list of per-cascade denoisers wrapped by :class:`Unrolled`. A denoiser is an
``nn.Module`` called as ``denoiser(x, state) -> (x, state)`` on the normalised, padded
complex image x (B, T, H', W'); ``state`` is whatever the model hands from one cascade
to the next (``None`` in the first cascade), typically a NamedTuple of feature maps.

The wrapper's choices: normalise each cascade's input or not, update the image (denoise,
then DC) or the coil k-space (E2E-VarNet style, ``dc(k) - F S R(S^H F^-1 k)`` with
``dc(k) = k - w M (k - k0)``), and one
DC module for all cascades or one per cascade.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError, DataError
from ..fft import complex_dtype
from ..inputs import check_recon_inputs
from ..classical.cg_sense import cg_sense
from ..classical.view_sharing import share_views, view_sharing
from ..operators import SenseOp, hard_dc, soft_dc, unit_norm_maps

Config = TypeVar("Config")
#: Choices of the first cascade's input image (see :class:`Unrolled`).
INITIAL_IMAGES = ("zero_filled", "view_sharing", "cg_sense", "lplus_s", "lplus_s_kt")
#: Fewest central lines (or side of a central block) sampled in every frame for ``initial="lplus_s"`` to run L+S (else CG-SENSE).
LPLUS_S_MIN_ACS = 4  # part of what the shipped weights were trained with: not tied to the classical constant
#: ``initial="lplus_s_kt"``: the L+S threshold for items without a calibration block (k-t masks),
#: started from the view-shared image; pinned here for the same reason.
LPLUS_S_KT_LAM_L = 1e-3
#: ``initial="lplus_s"`` / ``"lplus_s_kt"``: the L+S settings the shipped weights were trained with
#: (lam_l for calibrated items, x-f threshold, iterations, tolerance), pinned here for the same reason.
LPLUS_S_START = dict(lam_l=0.03, lam_s=1e-3, iters=50, tol=1e-4)
#: What a cascade updates (see :class:`Unrolled`).
UPDATES = ("image", "kspace")


@dataclass(frozen=True)
class NormStats:
    """Per-sample mean and std over all real and imaginary values, shapes (B, 1, 1, 1)."""

    mean: torch.Tensor
    std: torch.Tensor


def normalise(x: torch.Tensor, eps: float = 0.0) -> tuple[torch.Tensor, NormStats]:
    """(x - mean) / std per sample over all real/imag values of all frames (unbiased std).

    Args:
        x: (B, T, H, W) complex.
        eps: added to std (0 matches the authors' computation).

    Returns:
        The normalised image and its :class:`NormStats`. The mean is real and is
        subtracted from both the real and imaginary parts. A sample with std 0 normalises
        to 0 and keeps std 0, so :func:`denormalise` maps any network output back to it.
    """
    b = x.shape[0]
    flat = torch.view_as_real(x).reshape(b, -1)
    mean = flat.mean(dim=1).view(b, 1, 1, 1)
    std = flat.std(dim=1).view(b, 1, 1, 1) + eps
    # A constant sample (all-zero data, an all-zero mask or maps) has std 0: it is divided by 1
    # instead (its normalised image is 0) and keeps std 0 in the stats, so that denormalise
    # returns the constant, the limit of a * x as a -> 0 for this scale-equivariant wrapper,
    # not NaN. Samples with std > 0 are computed as the authors do.
    divisor = torch.where(std > 0, std, torch.ones_like(std))
    xr = (torch.view_as_real(x) - mean[..., None]) / divisor[..., None]
    return torch.view_as_complex(xr.contiguous()), NormStats(mean, std)


def denormalise(x: torch.Tensor, stats: NormStats) -> torch.Tensor:
    """Inverse of :func:`normalise`."""
    xr = torch.view_as_real(x) * stats.std[..., None] + stats.mean[..., None]
    return torch.view_as_complex(xr.contiguous())


def in_model_precision(model: nn.Module, kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.dtype | None]:
    """The inputs in the complex dtype of the model's weights (complex128 data into a float32 model).

    Args:
        model: the model (its first floating-point parameter sets the precision).
        kspace: (B, C, T, H, W) complex.
        mask: real, broadcastable to ``kspace`` (a floating-point mask follows the k-space's precision).
        sens_maps: (B, C, 1, H, W) complex, or None.

    Returns:
        (kspace, mask, sens_maps, dtype): the converted inputs and the complex dtype to return
        the image in (the input's), or None when nothing was converted.

    Raises:
        DataError: real-valued k-space (shape and dtype named).
    """
    if not kspace.is_complex():
        raise DataError(f"k-space must be complex (B, C, T, H, W), got {kspace.dtype} of shape {tuple(kspace.shape)}")
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    if weight is None:
        return kspace, mask, sens_maps, None
    want = complex_dtype(weight.dtype)
    if kspace.dtype == want and (sens_maps is None or sens_maps.dtype == want):
        return kspace, mask, sens_maps, None
    mask = mask.to(want.to_real()) if mask.is_floating_point() else mask
    return kspace.to(want), mask, None if sens_maps is None else sens_maps.to(want), kspace.dtype


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two axes up to a multiple (floor of the difference before, ceil after).

    Returns:
        The padded tensor and the (left, right, top, bottom) padding for :func:`unpad`.
    """
    h, w = x.shape[-2:]
    ph = math.ceil(h / multiple) * multiple - h
    pw = math.ceil(w / multiple) * multiple - w
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if not any(pad):
        return x, pad
    xr = torch.view_as_real(x).movedim(-1, -3) if x.is_complex() else x
    xr = F.pad(xr, pad)
    if x.is_complex():
        xr = torch.view_as_complex(xr.movedim(-3, -1).contiguous())
    return xr, pad


def unpad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Crop the padding added by :func:`pad_to_multiple` from the last two axes."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top:h - bottom, left:w - right]


#: ``dc(x, k0, op, adjoint_k0)``: image-domain DC modules get ``op.adjoint(k0)`` computed once
#: per forward pass (None for the k-space update, whose DC works on coil k-space).
DataConsistency = Callable[[torch.Tensor, torch.Tensor, SenseOp, "torch.Tensor | None"], torch.Tensor]


class SoftDC(nn.Module):
    """Soft data consistency with a learnable lambda_0 >= 0 (paper eq. 5); ``None`` -> hard DC."""

    def __init__(self, init: float | None = None) -> None:
        super().__init__()
        self.log_lam = None if init is None else nn.Parameter(torch.tensor(math.log(init)))

    def forward(self, x: torch.Tensor, k0: torch.Tensor, op: SenseOp,
                adjoint_k0: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, H, W), k0 (B, C, T, H, W) masked measurements, ``op.adjoint(k0)`` if known -> (B, T, H, W)."""
        if self.log_lam is None:
            return hard_dc(x, k0, op, adjoint_k0)
        return soft_dc(x, k0, op, self.log_lam.exp(), adjoint_k0)


class KSpaceSoftDC(nn.Module):
    """Soft data consistency on coil k-space, E2E-VarNet style: ``k - w M (k - k0)``, w learnable.

    The DC module of ``Unrolled(update="kspace")``; give one per cascade for per-cascade
    weights (E2E-VarNet, PromptMR).

    Args:
        init: initial weight w (VarNet / PromptMR: 1).
    """

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((1,), float(init)))

    def forward(self, k: torch.Tensor, k0: torch.Tensor, op: SenseOp,
                adjoint_k0: torch.Tensor | None = None) -> torch.Tensor:
        """k current, k0 measured coil k-space (B, C, T, H, W) complex -> (B, C, T, H, W) (``adjoint_k0`` unused)."""
        diff = k - k0
        return k - self.weight * (diff if op.mask is None else op.mask * diff)


def _per_item(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` broadcastable to ``like`` (B, ...) with its own trailing axes, expanded to B items."""
    t = t.reshape((1,) * (like.dim() - t.dim()) + tuple(t.shape))
    return t.expand(like.shape[0], *t.shape[1:])


def calibrated_items(mask: torch.Tensor, kspace: torch.Tensor) -> list[bool]:
    """For each item of ``kspace`` (B, C, T, H, W): does its mask have a calibration block?

    A block is at least :data:`LPLUS_S_MIN_ACS` contiguous central lines sampled in every
    frame, or a central block that wide both ways (the calibration square of pseudo-radial
    masks; :func:`~cinerecon.classical.lowrank_sparse.calibrated`). The answer depends on the
    mask's values: computed on the mask's device, then B booleans copied to the host (one
    synchronisation per call, not one per item, and never the mask itself).

    Args:
        mask: real, broadcastable to ``kspace``.
        kspace: (B, C, T, H, W).
    """
    from ..classical.lowrank_sparse import calibrated

    return [bool(v) for v in calibrated(mask, kspace.shape, LPLUS_S_MIN_ACS).cpu().numpy()]


def _sense_or_lplus_s(kspace: torch.Tensor, op: SenseOp, lplus_s_where_calibrated: bool,
                      kt_lplus_s: bool = False, calibrated: list[bool] | None = None) -> torch.Tensor:
    """The ``"cg_sense"`` / ``"lplus_s"`` / ``"lplus_s_kt"`` initial image (B, T, H, W), each item computed once.

    CG-SENSE pulled towards the view-shared image for every item, except, when
    ``lplus_s_where_calibrated``, L+S for the items whose mask has a calibration block of at
    least :data:`LPLUS_S_MIN_ACS` lines (or a central block that wide, :func:`calibrated_items`) (and the series has at least 2 frames); with
    ``kt_lplus_s`` too, the other items (of at least 2 frames) get L+S started from the
    view-shared image with the threshold :data:`LPLUS_S_KT_LAM_L` instead of CG-SENSE.
    ``calibrated``: :func:`calibrated_items` of these items when the caller has it already.
    """
    from ..classical.lowrank_sparse import lplus_s

    b = kspace.shape[0]
    mask, maps = _per_item(op.mask, kspace), _per_item(op.maps, kspace)
    lplus_s_where_calibrated = lplus_s_where_calibrated and kspace.shape[2] >= 2  # L+S needs 2 frames
    if not lplus_s_where_calibrated:
        use_lplus_s = [False] * b
    elif calibrated is not None:
        use_lplus_s = calibrated
    else:  # on the meta device (shapes only) the mask cannot be read: L+S for every item
        use_lplus_s = [True] * b if mask.device.type == "meta" else calibrated_items(mask, kspace)

    def sense(k: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return cg_sense(k, m, s, prior=view_sharing(k, m, s))

    def paper_lplus_s(k: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        # the computation the shipped weights were trained with: the paper's start A^H d and one threshold
        return lplus_s(k, m, s, start="zero_filled", **LPLUS_S_START)

    def kt_lplus_s_(k: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return lplus_s(k, m, s, start="view_sharing", **{**LPLUS_S_START, "lam_l": LPLUS_S_KT_LAM_L})

    other = kt_lplus_s_ if kt_lplus_s and lplus_s_where_calibrated else sense
    return _route(use_lplus_s, paper_lplus_s, other, kspace, mask, maps)


def _route(choice: list[bool], if_true: Callable[..., torch.Tensor], if_false: Callable[..., torch.Tensor],
           *tensors: torch.Tensor) -> torch.Tensor:
    """``if_true`` on the items where ``choice`` holds, ``if_false`` on the others, in item order.

    Each function is called once on its items (dimension 0 of every tensor), or on the
    tensors as given when all items go to it.
    """
    if all(choice):
        return if_true(*tensors)
    if not any(choice):
        return if_false(*tensors)
    out = None
    for fn, wanted in ((if_true, True), (if_false, False)):
        idx = torch.tensor([i for i, c in enumerate(choice) if c == wanted], device=tensors[0].device)
        rec = fn(*(t[idx] for t in tensors))
        out = rec.new_zeros((len(choice),) + rec.shape[1:]) if out is None else out
        out = out.index_copy(0, idx, rec.to(out.dtype))
    return out


class Unrolled(nn.Module):
    """Unrolled cascades sharing one normalise / pad / data-consistency loop.

    Args:
        denoisers: one module per cascade, ``denoiser(x, state) -> (x, state)`` on
            normalised, padded images (B, T, H', W') complex.
        pad_multiple: H and W are zero-padded up to a multiple of this.
        dc: data-consistency module ``dc(x, k0, op, adjoint_k0)`` (one for all cascades) or a
            sequence of them (one per cascade, e.g. per-cascade weights); hard DC by default.
            ``adjoint_k0`` is ``op.adjoint(k0)``, computed once per forward pass (a module may
            ignore it). With ``update="kspace"`` it acts on coil k-space, ``dc(k, k0, op) -> k``
            (e.g. :class:`KSpaceSoftDC`).
        checkpoint_cascades: recompute each cascade's activations in the backward pass
            (activation checkpointing) to save memory in training.
        initial: the first cascade's input: ``"zero_filled"`` (S^H F^-1 M k, the authors'
            choice) or ``"view_sharing"`` (each frame's missing k-space filled with its mean
            over the frames that sampled it; equal to zero-filling for static masks, and a far
            better start for time-varying masks without ACS) or ``"cg_sense"`` (ours: CG-SENSE
            with :class:`~cinerecon.classical.cg_sense.CGSenseParams` defaults, pulled towards
            and started from the view-shared image; the network then refines a SENSE
            solution instead of undoing aliasing that SENSE alone removes) or ``"lplus_s"``
            (ours: L+S as the paper computes it, from A^H d with :data:`LPLUS_S_START`, for each sample
            whose mask has a calibration block of at least :data:`LPLUS_S_MIN_ACS` lines or a
            central block that wide (:func:`calibrated_items`), the
            ``"cg_sense"`` start for the others, e.g. time-varying masks without ACS; this is
            what the shipped weights were trained with, so it does not follow later changes
            of the classical :func:`~cinerecon.classical.lowrank_sparse.lplus_s` defaults) or
            ``"lplus_s_kt"`` (as ``"lplus_s"``, but the samples without a calibration block start
            from L+S too: from the view-shared image, with lam_l = :data:`LPLUS_S_KT_LAM_L`).
        normalise: standardise each cascade's input per sample (:func:`normalise`) and undo
            it on the denoiser's output; ``False`` feeds the raw image (CRNN-MRI's original).
        update: ``"image"`` (x <- dc(denoiser(x))) or ``"kspace"``: the state is the coil
            k-space k (B, C, T, H, W), starting at the measured k0, and each cascade computes
            ``k <- dc(k, k0, op) - F S y`` with y the (un-normalised) denoiser output on
            x = S^H F^-1 k; the denoiser then returns the regulariser term, not an image
            (E2E-VarNet, PromptMR). Only the zero-filled start applies.
        uncalibrated: a second set of denoisers (one per cascade) for the items whose mask
            has no calibration block (:func:`calibrated_items`: k-t masks without ACS) in series
            of at least 2 frames, which are then reconstructed with these instead of
            ``denoisers``; None (default): one set for all items.
    """

    def __init__(self, denoisers: Sequence[nn.Module], pad_multiple: int = 8,
                 dc: nn.Module | Sequence[nn.Module] | None = None, checkpoint_cascades: bool = False,
                 initial: str = "zero_filled", normalise: bool = True, update: str = "image",
                 uncalibrated: Sequence[nn.Module] | None = None) -> None:
        super().__init__()
        if initial not in INITIAL_IMAGES:
            raise ConfigError(f"initial image must be one of {INITIAL_IMAGES}, got {initial!r}")
        if update not in UPDATES:
            raise ConfigError(f"update must be one of {UPDATES}, got {update!r}")
        if update == "kspace" and initial != "zero_filled":
            raise ConfigError(f"update='kspace' starts from the measured k-space; initial={initial!r} does not apply")
        self.cascades = nn.ModuleList(denoisers)
        if uncalibrated is not None and len(uncalibrated) != len(self.cascades):
            raise ConfigError(f"{len(uncalibrated)} uncalibrated denoisers for {len(self.cascades)} cascades")
        self.uncalibrated_cascades = nn.ModuleList(uncalibrated) if uncalibrated is not None else None
        self.pad_multiple = pad_multiple
        if dc is not None and not isinstance(dc, nn.Module):
            dc = nn.ModuleList(dc)
            if len(dc) != len(self.cascades):
                raise ConfigError(f"{len(dc)} DC modules for {len(self.cascades)} cascades")
        self.dc = dc if dc is not None else SoftDC(None)
        self.checkpoint_cascades = checkpoint_cascades
        self.initial = initial
        self.normalise = normalise
        self.update = update

    def initial_image(self, kspace: torch.Tensor, op: SenseOp, calibrated: list[bool] | None = None,
                      adjoint_k0: torch.Tensor | None = None) -> torch.Tensor:
        """The first cascade's input (B, T, H, W) from the masked k-space (B, C, T, H, W).

        ``calibrated``: :func:`calibrated_items` of these items when known (not read again);
        ``adjoint_k0``: ``op.adjoint(kspace)`` when known (the zero-filled image).
        """
        if self.initial == "zero_filled":
            return op.adjoint(kspace) if adjoint_k0 is None else adjoint_k0
        if self.initial == "view_sharing":
            return op.reduce(share_views(kspace, op.mask))
        return _sense_or_lplus_s(kspace, op, self.initial in ("lplus_s", "lplus_s_kt"),
                                 kt_lplus_s=self.initial == "lplus_s_kt", calibrated=calibrated)

    def _cascade(self, i: int, z: torch.Tensor, state: Any, kspace: torch.Tensor,
                 op: SenseOp, cascades: nn.ModuleList, adjoint_k0: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
        x = op.reduce(z) if self.update == "kspace" else z
        stats = None
        if self.normalise:
            x, stats = normalise(x)
        xp, pad = pad_to_multiple(x, self.pad_multiple)
        y, state = cascades[i](xp, state)
        y = unpad(y, pad)
        if stats is not None:
            y = denormalise(y, stats)
        dc = self.dc[i] if isinstance(self.dc, nn.ModuleList) else self.dc
        if self.update == "kspace":
            return dc(z, kspace, op) - op.expand(y), state
        return dc(y, kspace, op, adjoint_k0), state

    def unroll(self, kspace: torch.Tensor, op: SenseOp, cascades: nn.ModuleList | None = None,
               calibrated: list[bool] | None = None) -> torch.Tensor:
        """Run every cascade on masked k-space (B, C, T, H, W) with the operator ``op``.

        Args:
            kspace: (B, C, T, H, W) masked k-space.
            op: the SENSE operator of these items.
            cascades: the denoisers to use; None means ``self.cascades``.
            calibrated: :func:`calibrated_items` of these items when the caller has it already.

        Returns:
            The final image (B, T, H, W) with ``update="image"``, the final coil k-space
            (B, C, T, H, W) with ``update="kspace"``.
        """
        adj = None if self.update == "kspace" else op.adjoint(kspace)  # A^H k0, for every cascade's DC
        z = kspace if self.update == "kspace" else self.initial_image(kspace, op, calibrated, adj)
        cascades = self.cascades if cascades is None else cascades
        state = None
        for i in range(len(cascades)):
            if self.checkpoint_cascades and torch.is_grad_enabled():
                z, state = checkpoint(self._cascade, i, z, state, kspace, op, cascades, adj, use_reentrant=False)
            else:
                z, state = self._cascade(i, z, state, kspace, op, cascades, adj)
        return z

    def main_weight_items(self, kspace: torch.Tensor, mask: torch.Tensor) -> list[bool]:
        """For each item of ``kspace`` (B, C, T, H, W): do the main cascades reconstruct it?

        Always without a second weight set; with one, the items whose mask has a calibration
        block (:func:`calibrated_items`) and every item of a single-frame series (no L+S start).
        On the meta device (shapes without values, e.g. to size a model) every item goes to the
        main cascades: the mask cannot be read there.

        Args:
            kspace: (B, C, T, H, W).
            mask: real, broadcastable to ``kspace``.
        """
        if self.uncalibrated_cascades is None or kspace.shape[2] < 2 or mask.device.type == "meta":
            return [True] * kspace.shape[0]
        return calibrated_items(mask, kspace)

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
        """Reconstruct.

        Args:
            kspace: (B, C, T, H, W) complex measured k-space.
            mask: real, broadcastable to kspace.
            sens_maps: (B, C, 1, H, W) complex.

        Returns:
            (B, T, H, W) complex image (coil-combined S^H F^-1 k with ``update="kspace"``).

        Inputs are computed in the precision of the model's weights and the image returned in
        the input's (complex128 data into a float32 model is converted). Maps whose
        sum_c |S_c|^2 does not peak at 1 (scaled or unnormalised profiles, on
        which hard DC and L+S diverge or shrink the image) are normalised per pixel and the
        result scaled back (:func:`~cinerecon.operators.unit_norm_maps`, exact for the data
        model, and the image is on the scale of S^H F^-1 k as ever); unit-norm maps, as
        ESPIRiT and the simulators give, are used as they are.
        """
        check_recon_inputs(kspace, mask, sens_maps, type(self).__name__)
        kspace, mask, sens_maps, dtype = in_model_precision(self, kspace, mask, sens_maps)
        sens_maps, scale = unit_norm_maps(sens_maps)
        out = self._forward(kspace, mask, sens_maps) * scale[:, 0]
        return out if dtype is None else out.to(dtype)

    def _forward(self, kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
        op = SenseOp(sens_maps, mask.to(kspace.real.dtype))
        k0 = kspace * op.mask
        if self.uncalibrated_cascades is None:
            out = self.unroll(k0, op)
        else:  # each item with the denoisers of its kind of mask
            # the one host read of the mask: each group's initial image reuses the answer
            main = self.main_weight_items(k0, op.mask)
            out = _route(main,
                         lambda k, m, s: self.unroll(k, SenseOp(s, m),
                                                     calibrated=[True] * k.shape[0] if k.shape[2] >= 2 else None),
                         lambda k, m, s: self.unroll(k, SenseOp(s, m), self.uncalibrated_cascades,
                                                     calibrated=[False] * k.shape[0]),
                         k0, _per_item(op.mask, k0), _per_item(op.maps, k0))
        return op.reduce(out) if self.update == "kspace" else out


def config_from_kwargs(cls: type[Config], model: str, kwargs: dict[str, Any]) -> Config:
    """``cls(**kwargs)`` for a dataclass config; unknown or mistyped keywords raise ConfigError.

    Args:
        cls: the config dataclass.
        model: the registered model name, for the message.
        kwargs: keyword arguments given to ``build_model(model, ...)``.
    """
    import dataclasses

    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ConfigError(f"{model}: unknown option(s) {unknown}; available: {sorted(known)}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{model}: {e}") from None


class ConfiguredUnrolled(Unrolled):
    """An :class:`Unrolled` model of ``cfg.cascades`` identical cascades built from one config.

    Args:
        cfg: a dataclass config with (at least) ``cascades``, ``checkpoint_cascades`` and
            ``initial_image``; kept as ``self.config``.
        cascade: builds one cascade's denoiser from ``cfg``.
        pad_multiple: H and W are zero-padded up to a multiple of this.
    """

    def __init__(self, cfg: Any, cascade: Callable[[Any], nn.Module], pad_multiple: int = 8) -> None:
        second = getattr(cfg, "uncalibrated_weights", False)  # a field of the configs that offer it
        super().__init__([cascade(cfg) for _ in range(cfg.cascades)], pad_multiple=pad_multiple,
                         checkpoint_cascades=cfg.checkpoint_cascades, initial=cfg.initial_image,
                         uncalibrated=[cascade(cfg) for _ in range(cfg.cascades)] if second else None)
        self.config = cfg

    def config_dict(self) -> dict:
        """Keyword arguments that rebuild this model with ``build_model(name, **kw)`` (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.config).items()}
