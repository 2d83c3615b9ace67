"""Linear MRI operators on native complex tensors, and data consistency.

Shapes follow the project convention:
    image   x: (B, T, H, W) complex
    k-space k: (B, C, T, H, W) complex
    maps    S: (B, C, 1, H, W) complex (any size-1 axis broadcasts)
    mask    M: real {0, 1}, broadcastable to k-space; phase encoding along W.

Every operator is a pure function of the tensors it was built from, and has
``forward`` and ``adjoint`` (also ``.H``); :class:`SenseOp` also has ``gram`` (A^H A).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .fft import centring_ramps, complex_dtype

#: On the CPU, :meth:`SenseOp.gram` of a line mask works through the rows in chunks whose
#: multi-coil k-space is at most this many bytes, so that each chunk stays in cache across its
#: passes (map product, FFT, mask, inverse FFT, coil sum): for 10 coils x 12 frames x 204 x 448
#: on one thread about 1.2x faster than the whole slice at once with the allocator the CLI
#: tunes (``cinerecon.runtime.tune_cpu_allocator``), 6.4-6.6x with glibc's default, which
#: page-faults every whole-slice temporary in afresh (``benchmarks/fft_speed.py``).
GRAM_CHUNK_BYTES = 4 * 2**20


@dataclass(frozen=True)
class CoilSensitivity:
    """Coil expand S: (B, T, H, W) -> (B, C, T, H, W); adjoint sums conj(S_c) over coils."""

    maps: torch.Tensor  # (B, C, 1, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps * x.unsqueeze(1)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (self.maps.conj() * y).sum(dim=1)

    H = adjoint


@dataclass(frozen=True)
class Mask:
    """Sampling mask M (self-adjoint projection)."""

    mask: torch.Tensor  # broadcastable to (B, C, T, H, W)

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        return k * self.mask

    adjoint = forward
    H = forward


@dataclass(frozen=True)
class SenseOp:
    """SENSE forward model A = M F S and its adjoint A^H = S^H F^-1 M.

    The centred FFTs' phase ramps (:func:`~cinerecon.fft.centring_ramps`) are folded into the
    operator's own products: the forward input ramp into the maps and the output ramp, with
    the mask, into one product after the FFT; the inverse ones into the mask and the
    conjugated maps. Each application then makes two element-wise passes over the multi-coil
    k-space fewer than ``M fft2c(S x)`` and ``S^H ifft2c(M k)`` (the same values to float
    round-off). The factors are rebuilt on every call (products over (B, C, 1, H, W) and the
    mask's shape, small against the k-space), so the operator stays a pure function of its
    tensors under autograd, checkpointing and in-place updates.

    Args:
        maps: coil sensitivities (B, C, 1, H, W) complex.
        mask: sampling mask broadcastable to (B, C, T, H, W); ``None`` means fully sampled.
    """

    maps: torch.Tensor
    mask: torch.Tensor | None = None

    def _ramps(self, like: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Centring ramps (H, W) for ``like``'s last two axes, in the complex dtype of maps x ``like``."""
        dtype = complex_dtype(torch.promote_types(self.maps.dtype, like.dtype))
        return centring_ramps(like.shape[-2:], inverse, dtype, like.device)

    def _masked(self, ramp: torch.Tensor) -> torch.Tensor:
        return ramp if self.mask is None else (ramp * self.mask).to(ramp.dtype)

    def _fft(self, x: torch.Tensor, masked: bool) -> torch.Tensor:
        before, after = self._ramps(x, inverse=False)
        y = torch.fft.fftn((self.maps * before) * x.unsqueeze(1), dim=(-2, -1), norm="ortho")
        return _times(y, self._masked(after) if masked else after)

    def _ifft(self, k: torch.Tensor, masked: bool) -> torch.Tensor:
        before, after = self._ramps(k, inverse=True)
        y = torch.fft.ifftn(k * (self._masked(before) if masked else before), dim=(-2, -1), norm="ortho")
        return ((self.maps * after.conj()).conj() * y).sum(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W) image -> (B, C, T, H, W) masked k-space."""
        return self._fft(x, masked=True)

    def adjoint(self, k: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) k-space -> (B, T, H, W) coil-combined image."""
        return self._ifft(k, masked=True)

    H = adjoint

    @property
    def line_mask(self) -> bool:
        """True when the mask samples whole readout lines (its H axis has size 1) or is None."""
        return self.mask is None or self.mask.dim() < 2 or self.mask.shape[-2] == 1

    def coil_power(self) -> torch.Tensor:
        """S^H S: sum_c |S_c|^2 per pixel, (B, 1, H, W) real."""
        return self.maps.abs().square().sum(dim=1)

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        """A^H A x for x (B, T, H, W).

        A mask of whole readout lines (:attr:`line_mask`) commutes with the FFT along H, which
        then cancels against its inverse: A^H A = S^H F_W^-1 M^2 F_W S needs only FFTs along W
        (half the 2D transforms' work), and each row is independent, so on the CPU the rows go
        in cache-sized chunks (:data:`GRAM_CHUNK_BYTES`). Without a mask it is S^H S x. Other
        masks use ``adjoint(forward(x))``. All three are the same linear map (to round-off).
        """
        return self._normal(x, squared=True)

    def sampled_part(self, x: torch.Tensor) -> torch.Tensor:
        """S^H F^-1 M F S x for x (B, T, H, W): the image of the sampled part of x's coil k-space.

        Equal to :meth:`gram` for a {0, 1} mask (M^2 = M); with the mask applied once it is also
        right for weighted masks, so the data-consistency steps use it. FFTs along W only for a
        line mask (as in :meth:`gram`), ``reduce(M expand(x))`` otherwise.
        """
        return self._normal(x, squared=False)

    def _normal(self, x: torch.Tensor, squared: bool) -> torch.Tensor:
        """S^H F^-1 W F S x with W = M^2 (:meth:`gram`) or M (:meth:`sampled_part`)."""
        if self.mask is None:
            return self.coil_power() * x
        if self.line_mask:
            return self._line_normal(x, self.mask * self.mask if squared else self.mask)
        return self.adjoint(self.forward(x)) if squared else self.reduce(_times(self.expand(x), self.mask))

    def _line_normal(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """S^H F_W^-1 diag(weight) F_W S x for a weight constant along H (a line mask or its square).

        FFTs along W only; on the CPU the rows go in chunks of about :data:`GRAM_CHUNK_BYTES` of
        multi-coil k-space. Operands whose H axis has size 1 (maps or image broadcast over H)
        are used whole in every chunk.
        """
        dtype = complex_dtype(torch.promote_types(self.maps.dtype, x.dtype))
        shape = torch.broadcast_shapes(self.maps.shape, x.unsqueeze(1).shape, weight.shape)  # (B, C, T, H, W)
        h, width = shape[-2], shape[-1:]
        before, after = centring_ramps(width, False, dtype, x.device, dims=(-1,))
        inv_before, inv_after = centring_ramps(width, True, dtype, x.device, dims=(-1,))
        maps_in = self.maps * before
        maps_out = self.maps.conj() * inv_after
        middle = (after * weight * inv_before).to(dtype)  # H axis of size 1
        rows = max(h, 1)  # whole slices off the CPU
        if x.device.type == "cpu":
            row_bytes = shape[:3].numel() * shape[-1] * torch.empty((), dtype=dtype).element_size()
            rows = max(1, GRAM_CHUNK_BYTES // max(1, row_bytes))

        def chunk(t: torch.Tensor, sl: slice) -> torch.Tensor:
            return t if t.shape[-2] == 1 else t[..., sl, :]

        parts = []
        for r in range(0, max(h, 1), rows):
            sl = slice(r, r + rows)
            y = torch.fft.fft(chunk(maps_in, sl) * chunk(x, sl).unsqueeze(1), dim=-1, norm="ortho")
            y = torch.fft.ifft(_times(y, middle), dim=-1, norm="ortho")
            parts.append((chunk(maps_out, sl) * y).sum(dim=1))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Unmasked coil k-space F S x, (B, T, H, W) -> (B, C, T, H, W)."""
        return self._fft(x, masked=False)

    def reduce(self, k: torch.Tensor) -> torch.Tensor:
        """Unmasked coil combination S^H F^-1 k, (B, C, T, H, W) -> (B, T, H, W)."""
        return self._ifft(k, masked=False)


def _times(y: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``y * factor``, in place on ``y`` (a fresh FFT output) when the product keeps its shape and dtype."""
    if torch.broadcast_shapes(y.shape, factor.shape) == y.shape and torch.promote_types(y.dtype, factor.dtype) == y.dtype:
        return y.mul_(factor)
    return y * factor


def hard_dc(x: torch.Tensor, k0: torch.Tensor, op: SenseOp, adjoint_k0: torch.Tensor | None = None) -> torch.Tensor:
    """Hard (noiseless) data consistency, paper eq. 6 with lambda -> infinity.

    k = F S x; k <- (1 - M) k + M k0; x <- S^H F^-1 k, computed as the equal
    S^H S x - S^H F^-1 M F S x + A^H k0 (F is unitary; :meth:`SenseOp.sampled_part`) when the
    mask is a line mask (:attr:`SenseOp.line_mask`, whose middle term is cheap) or A^H k0 is
    given: the sampled entries are then replaced up to float round-off of the image's scale.

    Args:
        x: current image estimate (B, T, H, W) complex.
        k0: measured k-space (B, C, T, H, W) complex (zero where not sampled).
        op: SenseOp holding maps and mask.
        adjoint_k0: ``op.adjoint(k0)`` when the caller has it (unrolled models compute it once
            for all cascades); None computes it here.

    Returns:
        Image (B, T, H, W) complex.
    """
    m = op.mask
    if m is None:
        return op.reduce(k0)
    if op.line_mask or adjoint_k0 is not None:
        adj = op.adjoint(k0) if adjoint_k0 is None else adjoint_k0
        return op.coil_power() * x - op.sampled_part(x) + adj
    k = op.expand(x)
    k = k - m * k + m * k0
    return op.reduce(k)


def soft_dc(x: torch.Tensor, k0: torch.Tensor, op: SenseOp, lam: torch.Tensor | float,
            adjoint_k0: torch.Tensor | None = None) -> torch.Tensor:
    """Soft data consistency with regularisation weight lambda_0 (paper eq. 5-6).

    On sampled locations k <- (k + lam * k0) / (1 + lam); elsewhere k is kept, so the image is
    S^H F^-1 k. With a line mask (:attr:`SenseOp.line_mask`) or A^H k0 given, and one lambda,
    it is computed as the equal S^H S x - w (S^H F^-1 M F S x - A^H k0), w = lam / (1 + lam).
    ``lam = inf`` (a float or a tensor) reduces to :func:`hard_dc`; ``lam = 0`` leaves k unchanged.

    Args:
        x: (B, T, H, W) complex.
        k0: (B, C, T, H, W) complex measured k-space.
        op: SenseOp with maps and mask.
        lam: non-negative scalar (float or tensor, may be learnable; a tensor of several values
            broadcast against the k-space takes the k-space route).
        adjoint_k0: ``op.adjoint(k0)`` when the caller has it; None computes it when needed.

    Returns:
        Image (B, T, H, W) complex.
    """
    if isinstance(lam, float) and lam == float("inf"):
        return hard_dc(x, k0, op, adjoint_k0)
    single = not torch.is_tensor(lam) or lam.numel() == 1
    if op.mask is not None and single and (op.line_mask or adjoint_k0 is not None):
        adj = op.adjoint(k0) if adjoint_k0 is None else adjoint_k0
        lam = torch.as_tensor(lam, device=x.device, dtype=x.real.dtype).reshape(())
        w = torch.where(torch.isinf(lam), torch.ones_like(lam), lam / (1 + lam))  # inf / inf would be NaN
        return op.coil_power() * x - w * (op.sampled_part(x) - adj)
    k = op.expand(x)
    m = op.mask if op.mask is not None else torch.ones((), device=k.device)
    lam = torch.as_tensor(lam, device=k.device, dtype=k.real.dtype)
    k_dc = torch.where(torch.isinf(lam), k0, (k + lam * k0) / (1 + lam))
    k = (1 - m) * k + m * k_dc
    return op.reduce(k)


#: :func:`unit_norm_maps` rescales an item's maps when the peak of sum_c |S_c|^2 differs from 1 by more than this.
MAP_NORM_TOL = 1e-3


def unit_norm_maps(maps: torch.Tensor, tol: float = MAP_NORM_TOL) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps normalised per pixel to sum_c |S_c|^2 = 1, for items whose maps are not unit-norm.

    The hard DC of the unrolled models and the unit gradient step of L+S assume unit-norm maps
    (as ESPIRiT's and the simulators' are); maps scaled by a constant, or unnormalised coil
    profiles, make them diverge (sum |S|^2 > 1) or shrink the image (< 1). Since
    M F S x = M F (S / r) (r x) with r = sqrt(sum_c |S_c|^2), such a problem is solved with the
    maps S / r for z = r x, and r z = S^H S x is returned: the toolkit's image scale, that of
    ``SenseOp(maps).reduce(full_kspace)`` (stored targets, evaluation references, zero-filled
    images). An item is rescaled when the largest r^2 over its pixels differs from 1 by more
    than ``tol``; pixels where r = 0 and the other items keep a factor of exactly 1 (their
    results are bit-identical). No value is read to the host.

    Args:
        maps: (B, C, 1, H, W) complex (any size-1 axis broadcasts, as in :class:`SenseOp`).
        tol: tolerance on the peak of sum_c |S_c|^2.

    Returns:
        (maps / r, r): the maps to reconstruct with and the factor (B, 1, 1, H, W) real, 1
        where nothing is rescaled; multiply the image (B, T, H, W) reconstructed with them by
        ``r[:, 0]`` (and divide a start or prior image on the toolkit's scale by it).
    """
    power = torch.view_as_real(maps).square().sum(dim=(1, -1), keepdim=True).squeeze(-1)  # (B, 1, 1, H, W)
    peak = power.flatten(1).amax(dim=1).reshape(-1, *([1] * (power.dim() - 1)))
    rescale = ((peak - 1).abs() > tol) & (power > 0)
    r = torch.where(rescale, power, torch.ones((), dtype=power.dtype, device=power.device)).sqrt()  # no 0 under sqrt
    return maps / r, r


def sampled_mean(kspace: torch.Tensor, mask: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
    """Mean of k-space over ``dim`` (the frames) taken only where ``mask`` samples it.

    Locations sampled in no frame are 0. Used for view sharing, for calibration from the
    time-averaged k-space and for the ACS filter of PromptMR's map estimation.

    Args:
        kspace: complex k-space, e.g. (B, C, T, H, W) or (C, T, H, W).
        mask: real or boolean, broadcastable to ``kspace``.
        dim: the axis averaged over.
        keepdim: keep ``dim`` with size 1.

    Returns:
        Complex tensor with ``dim`` reduced.
    """
    m = torch.broadcast_to(mask.to(kspace.real.dtype), kspace.shape)
    return (kspace * m).sum(dim, keepdim=keepdim) / m.sum(dim, keepdim=keepdim).clamp_min(1.0)
