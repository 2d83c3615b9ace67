"""Coil sensitivity estimation (ESPIRiT) and SVD coil compression.

ESPIRiT (Uecker et al., MRM 2014) in brief: k-space patches of the fully sampled
calibration (ACS) region span a subspace; its orthogonal projector P, averaged over
all patch positions, is a k-space convolution whose image-space form is a small
C x C Hermitian matrix M(x) per pixel. Coil sensitivities are the eigenvectors of
M(x) with eigenvalue ~1; pixels whose top eigenvalue falls below ``crop`` lie
outside the object support and get zero maps.

Here M(x) is built directly from P: the convolution kernel of the patch-averaged
projector is ``h_cd[D] = sum_{p - q = D} P[(c, p), (d, q)] / k^2`` (D spans
(2k - 1)^2 offsets), and M(x) is its centred inverse DFT scaled by sqrt(H W),
evaluated separably (two small matrix products per coil pair), followed by one batched
C x C eigendecomposition. 10 coils x 246 x 512 take about 2.5 s of CPU time.

Conventions: k-space centre at index n // 2 (centred orthonormal FFTs of
:mod:`cinerecon.fft`), phase encoding along W (the last axis), so ACS are central
columns.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from .errors import ConfigError, DataError
from .masks import central_run
from .operators import sampled_mean

MAX_CALIB = 48
"""Largest automatically chosen calibration extent per axis (lines)."""

PHASE_REFS = ("virtual", "first")


@dataclass(frozen=True)
class CalibRegion:
    """A centred rectangle of fully sampled k-space: rows [top, top+height), columns [left, left+width)."""

    top: int
    height: int
    left: int
    width: int


@contextmanager
def _serial() -> Iterator[None]:
    """Run small dense LAPACK calls on one thread, then restore torch's thread count.

    A threaded eigendecomposition of a few hundred rows gains nothing and, on an
    oversubscribed CPU, loses up to two orders of magnitude in OpenMP barriers.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _clip_run(lo: int, hi: int, centre: int, size: int) -> tuple[int, int]:
    """Start and length of at most ``size`` entries of [lo, hi), centred on ``centre`` where possible."""
    length = hi - lo
    if length <= size:
        return lo, length
    start = min(max(lo, centre - size // 2), hi - size)
    return start, size


def find_calib_region(sampled: torch.Tensor, acs: int | tuple[int, int] | None = None,
                      max_calib: int = MAX_CALIB, source: str = "kspace") -> CalibRegion:
    """Locate the fully sampled centred calibration rectangle.

    Args:
        sampled: boolean (H, W), True where k-space is sampled (in every frame).
        acs: calibration size. An int gives the number of central phase-encode lines
            (W); the readout extent (H) is then ``min(H, max(acs, max_calib))``. A tuple
            gives (rows, columns). ``None`` detects the contiguous sampled run through
            the centre along each axis and keeps at most ``max_calib`` lines of each.
        max_calib: cap of automatically detected extents.
        source: name used in error messages.

    Returns:
        The :class:`CalibRegion`.

    Raises:
        DataError: when no sampled central region of the requested size exists.
    """
    h, w = sampled.shape
    ch, cw = h // 2, w // 2
    lo_w, hi_w = central_run(sampled[ch].cpu().numpy())
    lo_h, hi_h = central_run(sampled[:, cw].cpu().numpy())
    if hi_w == lo_w or hi_h == lo_h:
        raise DataError(f"{source}: no ACS found: the k-space centre ({ch}, {cw}) of shape (H, W) = ({h}, {w}) "
                        "is not sampled in every frame; pass a calibration mask or use maps_from_time_average")
    if acs is None:
        left, width = _clip_run(lo_w, hi_w, cw, max_calib)
        top, height = _clip_run(lo_h, hi_h, ch, max_calib)
    else:
        if isinstance(acs, int):
            rows, cols = min(h, max(acs, max_calib)), acs
        else:
            rows, cols = int(acs[0]), int(acs[1])
        if rows < 1 or cols < 1 or rows > h or cols > w:
            raise DataError(f"{source}: calibration size (rows, cols) = ({rows}, {cols}) does not fit "
                            f"(H, W) = ({h}, {w})")
        top, left = ch - rows // 2, cw - cols // 2
        if not bool(sampled[top:top + rows, left:left + cols].all()):
            raise DataError(f"{source}: requested calibration region (rows, cols) = ({rows}, {cols}) of (H, W) = "
                            f"({h}, {w}) is not fully sampled; the central sampled run is "
                            f"{hi_h - lo_h} x {hi_w - lo_w}")
        height, width = rows, cols
    return CalibRegion(top, height, left, width)


def _sampled_pattern(kspace: torch.Tensor, calib_mask: torch.Tensor | None) -> torch.Tensor:
    """Boolean (T, H, W): where k-space is sampled, from ``calib_mask`` or from non-zero values."""
    c, t, h, w = kspace.shape
    if calib_mask is not None:
        m = torch.as_tensor(calib_mask, device=kspace.device)
        while m.ndim < 4:
            m = m.unsqueeze(0)
        try:
            m = torch.broadcast_to(m, (1, t, h, w))[0]
        except RuntimeError as e:
            raise DataError(f"calib_mask shape {tuple(calib_mask.shape)} is not broadcastable to kspace "
                            f"(C, T, H, W) = {tuple(kspace.shape)}") from e
        return m != 0
    return (kspace != 0).any(dim=0)


def _as_coil_frames(kspace: torch.Tensor, name: str) -> torch.Tensor:
    """Return (C, T, H, W) complex from (C, H, W) or (C, T, H, W); raise DataError otherwise."""
    if not torch.is_tensor(kspace) or not kspace.is_complex():
        raise DataError(f"{name}: kspace must be a complex tensor (C, H, W) or (C, T, H, W), got "
                        f"{getattr(kspace, 'dtype', type(kspace))}")
    if kspace.ndim == 3:
        kspace = kspace.unsqueeze(1)
    if kspace.ndim != 4:
        raise DataError(f"{name}: kspace must be (C, H, W) or (C, T, H, W), got shape {tuple(kspace.shape)}")
    c, _, h, w = kspace.shape
    if c < 1 or h < 2 or w < 2:
        raise DataError(f"{name}: kspace shape (C, T, H, W) = {tuple(kspace.shape)} is too small")
    return kspace


def _image_space_operator(calib: torch.Tensor, kernel: int, thresh: float, shape: tuple[int, int],
                          dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    """Per-pixel C x C ESPIRiT matrices M(x), shape (H, W, C, C) of ``dtype``.

    Args:
        calib: (C, h, w) complex calibration k-space.
        kernel: patch size k.
        thresh: keep singular vectors with sigma > thresh * sigma_max.
        shape: output (H, W).
        dtype: complex dtype of the result (the calibration SVD runs in complex128).
    """
    c = calib.shape[0]
    k = kernel
    dev = calib.device
    cal = calib.to(torch.complex128)
    # Patches as rows: (n_patches, C * k * k), ordered (coil, ky, kx).
    patches = cal.unfold(1, k, 1).unfold(2, k, 1)  # (C, nh, nw, k, k)
    a = patches.permute(1, 2, 0, 3, 4).reshape(-1, c * k * k)
    # Right singular vectors from the Gram matrix (n_cols is small).
    gram = a.conj().T @ a
    with _serial():
        evals, evecs = torch.linalg.eigh(gram)
    sig = evals.clamp(min=0).sqrt()
    keep = sig > thresh * sig.max()
    v = evecs[:, keep]  # (C k k, r) right singular vectors
    # Rows of A (patches z^T) lie in span{conj(v_j)}: the patch projector is conj(V) V^T.
    proj = (v.conj() @ v.T).reshape(c, k, k, c, k, k)
    # Convolution kernel of the patch-averaged projector: sum over p - q = D.
    proj = proj.permute(0, 3, 1, 2, 4, 5).reshape(c, c, k ** 4)
    py, px, qy, qx = torch.meshgrid(*(torch.arange(k, device=dev),) * 4, indexing="ij")
    n_off = 2 * k - 1
    index = ((py - qy + k - 1) * n_off + (px - qx + k - 1)).reshape(-1)
    h_small = torch.zeros(c, c, n_off * n_off, dtype=proj.dtype, device=dev)
    h_small.index_add_(2, index, proj)
    h_small = h_small.reshape(c, c, n_off, n_off) / (k * k)
    # M(x) = sum_D h[D] exp(+2 pi i D . x / N) with centred pixel coordinates x, i.e.
    # sqrt(H W) * ifft2c of h placed at the centred k-space positions n // 2 + D;
    # evaluated as a separable DFT, which is cheaper than FFTs of the image size.
    hh, ww = shape
    offsets = torch.arange(-(k - 1), k, dtype=torch.float64, device=dev)
    ey = torch.exp(2j * math.pi * torch.outer(torch.arange(hh, device=dev) - hh // 2, offsets) / hh)  # (H, 2k-1)
    ex = torch.exp(2j * math.pi * torch.outer(torch.arange(ww, device=dev) - ww // 2, offsets) / ww)  # (W, 2k-1)
    m = ey.to(dtype) @ h_small.to(dtype) @ ex.T.to(dtype)  # (C, C, H, W)
    return m.permute(2, 3, 0, 1)


def espirit_maps(
    kspace: torch.Tensor,
    acs: int | tuple[int, int] | None = None,
    kernel: int | None = None,
    thresh: float = 0.02,
    crop: float = 0.95,
    calib_mask: torch.Tensor | None = None,
    phase_ref: str = "virtual",
    max_calib: int = MAX_CALIB,
) -> torch.Tensor:
    """ESPIRiT coil sensitivity maps from the fully sampled k-space centre.

    Args:
        kspace: (C, H, W) or (C, T, H, W) complex k-space, zeros where not sampled. With
            frames, each location is averaged over the frames where it is sampled.
        acs: calibration size: ``None`` detects the fully sampled central region (at most
            ``max_calib`` lines per axis); an int gives the number of central phase-encode
            lines (W) with ``min(H, max(acs, max_calib))`` readout lines; a tuple gives (rows, cols).
        kernel: ESPIRiT kernel (patch) width k; ``None`` picks ``min(6, calib_width // 2)``
            (at least 3), so that small calibration regions keep enough patches.
        thresh: keep calibration singular vectors with sigma > thresh * sigma_max.
        crop: zero the maps where the top eigenvalue is <= crop (0 keeps everything).
        calib_mask: optional sampling mask broadcastable to (1, T, H, W) (e.g. the
            (1, T|1, 1, W) sample mask); default: sampled where k-space is non-zero.
        phase_ref: ``"virtual"`` makes the maps' projection on the principal coil
            combination of the calibration data (a virtual body coil) real and positive;
            ``"first"`` makes coil 0 real and positive.
        max_calib: cap of automatically detected calibration extents.

    Returns:
        (C, 1, H, W) complex64 maps with sum_c |S_c|^2 = 1 inside the support, 0 outside.

    Raises:
        DataError: bad shapes or no fully sampled centre.
        ConfigError: bad parameters.
    """
    k4 = _as_coil_frames(kspace, "espirit_maps")
    if (kernel is not None and kernel < 1) or not 0 <= thresh < 1 or not 0 <= crop < 1:
        raise ConfigError(f"espirit_maps: need kernel >= 1, 0 <= thresh < 1, 0 <= crop < 1; got "
                          f"kernel={kernel}, thresh={thresh}, crop={crop}")
    if phase_ref not in PHASE_REFS:
        raise ConfigError(f"espirit_maps: phase_ref must be one of {PHASE_REFS}, got {phase_ref!r}")
    sampled = _sampled_pattern(k4, calib_mask)
    avg = sampled_mean(k4, sampled, dim=1)
    region = find_calib_region(sampled.all(dim=0), acs, max_calib, source=f"kspace {tuple(kspace.shape)}")
    return _espirit_from_region(avg, region, kernel, thresh, crop, phase_ref, tuple(kspace.shape))


def _espirit_from_region(avg: torch.Tensor, region: CalibRegion, kernel: int, thresh: float, crop: float,
                         phase_ref: str, shape_for_errors: tuple[int, ...]) -> torch.Tensor:
    c, h, w = avg.shape
    if kernel is None:
        kernel = max(3, min(6, min(region.height, region.width) // 2))
    if region.height < kernel or region.width < kernel:
        raise DataError(f"kspace {shape_for_errors}: calibration region {region.height} x {region.width} "
                        f"is smaller than the ESPIRiT kernel {kernel}; too few ACS lines")
    calib = avg[:, region.top:region.top + region.height, region.left:region.left + region.width]
    if not bool(torch.isfinite(torch.view_as_real(calib)).all()):
        raise DataError(f"kspace {shape_for_errors}: the calibration region contains NaN or Inf values")
    if not bool((calib != 0).any()):
        raise DataError(f"kspace {shape_for_errors}: the calibration region {region.height} x {region.width} "
                        "is all zeros")
    m = _image_space_operator(calib, kernel, thresh, (h, w))
    evals, evecs = torch.linalg.eigh(m)
    top = evals[..., -1]  # (H, W)
    maps = evecs[..., -1].to(torch.complex128)  # (H, W, C), unit norm per pixel
    if phase_ref == "first":
        ref = maps[..., 0]
    else:
        cal = calib.to(torch.complex128).reshape(c, -1)
        with _serial():
            _, u = torch.linalg.eigh(cal @ cal.conj().T)
        ref = maps @ u[:, -1].conj()
    phase = torch.where(ref.abs() > 0, ref.conj() / ref.abs().clamp(min=1e-30), torch.ones_like(ref))
    maps = maps * phase[..., None]
    maps = maps * (top > crop).to(maps.real.dtype)[..., None]
    return maps.permute(2, 0, 1).unsqueeze(1).to(torch.complex64).contiguous()


def maps_from_time_average(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    kernel: int | None = None,
    thresh: float = 0.02,
    crop: float = 0.95,
    max_calib: int = MAX_CALIB,
) -> torch.Tensor:
    """ESPIRiT maps for data without ACS, from k-space averaged over the frames.

    With time-varying masks (e.g. a sheared equispaced pattern), each phase-encode
    location sampled in any frame is averaged over the frames that sample it; the
    filled central region of this time-averaged k-space calibrates ESPIRiT.

    Args:
        kspace: (C, T, H, W) complex, zeros where not sampled.
        mask: sampling mask broadcastable to (1, T, H, W), e.g. (1, T, 1, W).
        kernel, thresh, crop, max_calib: as in :func:`espirit_maps`.

    Returns:
        (C, 1, H, W) complex64 maps.

    Raises:
        DataError: bad shapes, or when the time-averaged centre is not filled over at
            least ``kernel`` lines (e.g. a static mask without ACS).
    """
    k4 = _as_coil_frames(kspace, "maps_from_time_average")
    if kspace.ndim != 4:
        raise DataError(f"maps_from_time_average: kspace must be (C, T, H, W), got shape {tuple(kspace.shape)}")
    sampled = _sampled_pattern(k4, mask)
    avg = sampled_mean(k4, sampled, dim=1)
    filled = sampled.any(dim=0)
    src = f"time-averaged kspace {tuple(kspace.shape)} with mask {tuple(mask.shape)}"
    region = find_calib_region(filled, None, max_calib, source=src)
    return _espirit_from_region(avg, region, kernel, thresh, crop, "virtual", tuple(kspace.shape))


def coil_compress(
    kspace: torch.Tensor,
    n_virtual: int,
    maps: torch.Tensor | None = None,
    coil_dim: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """SVD (PCA) coil compression to ``n_virtual`` virtual coils.

    The compression matrix A (n_virtual, C) holds the conjugated leading left singular
    vectors of the coil data matrix (C, all samples), so A A^H = I and the compressed
    data A y keep the largest possible energy. Because the model is linear, compressed
    maps are A S (no longer normalised to sum |S|^2 = 1; re-estimate maps from the
    compressed k-space if unit-norm maps are needed).

    Args:
        kspace: complex tensor with coils along ``coil_dim``, e.g. (C, T, H, W).
        n_virtual: number of virtual coils, 1 <= n_virtual <= C.
        maps: optional complex maps with coils along ``coil_dim``, e.g. (C, 1, H, W).
        coil_dim: the coil axis of ``kspace`` and ``maps``.

    Returns:
        (kspace_vc, maps_vc or None, matrix): compressed k-space and maps with
        ``n_virtual`` coils along ``coil_dim``, and the (n_virtual, C) matrix.
    """
    if not torch.is_tensor(kspace) or not kspace.is_complex() or kspace.ndim < 2:
        raise DataError(f"coil_compress: kspace must be a complex tensor with a coil axis, got "
                        f"shape {tuple(getattr(kspace, 'shape', ()))}")
    c = kspace.shape[coil_dim]
    if not 1 <= n_virtual <= c:
        raise ConfigError(f"coil_compress: n_virtual must be in [1, {c}] for kspace {tuple(kspace.shape)}, "
                          f"got {n_virtual}")
    if maps is not None and maps.shape[coil_dim] != c:
        raise DataError(f"coil_compress: maps {tuple(maps.shape)} and kspace {tuple(kspace.shape)} differ in "
                        f"coil count along axis {coil_dim}")
    y = kspace.movedim(coil_dim, 0).reshape(c, -1)
    cov = (y @ y.conj().T).to(torch.complex128)  # (C, C) coil covariance
    with _serial():
        _, u = torch.linalg.eigh(cov)  # ascending eigenvalues
    matrix = u[:, -n_virtual:].flip(-1).conj().T.to(kspace.dtype)  # (n_virtual, C)

    def apply(x: torch.Tensor) -> torch.Tensor:
        xc = x.movedim(coil_dim, -1).unsqueeze(-1)
        return (matrix.to(x.dtype) @ xc).squeeze(-1).movedim(-1, coil_dim)

    return apply(kspace), None if maps is None else apply(maps), matrix
