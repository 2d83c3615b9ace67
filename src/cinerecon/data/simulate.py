"""Synthetic multi-coil cardiac cine data, and conversion of real magnitude cines.

The simulator draws a subject (body, fat rim, chest wall, lungs, liver, spine, aorta and a
beating heart) from a seeded private ``numpy.random.Generator``, renders one cardiac cycle
with anti-aliased edges, adds a smooth texture and a smooth complex phase, multiplies by
birdcage-like coil maps, transforms to centred k-space and adds complex Gaussian noise.
Intensities, fine detail (tissue grain, fat septa, lung vessels, trabeculated endocardium,
uneven epicardial fat, coil shading), motion and timing are set from measurements of real
bSSFP cines (``benchmarks/phantom_realism.py``; ``SimConfig.detail=0`` drops the fine detail).

Forward model (per frame t and coil c)::

    k_c,t = F (S_c x_t) + n_c,t        n ~ CN(0, sigma^2), iid
    target_t = sum_c conj(S_c) F^-1 k_c,t  (= S^H F^-1 k, what SenseOp.reduce computes)

The maps satisfy ``sum_c |S_c|^2 = 1`` at every pixel, so the target is the true image plus
coil-combined noise of the same variance sigma^2, and it is consistent with (k-space, maps).
The SNR (dB) is ``20 log10(mean |x| over the object / sigma)``.

The global NumPy and torch RNGs are never touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from ..errors import ConfigError, DataError
from ..fft import fft2c, ifft2c
from ..masks import MaskSpec, equispaced, make_mask
from .export import check_writable
from .h5 import write_h5, write_split
from .sample import CineSample, SampleMeta
from .transforms import default_acs, mask_key

VIEWS = ("sax", "lax")

#: Tissue labels of :class:`Phantom.labels` (index = label value).
LABELS = ("background", "body", "fat", "muscle", "lung", "liver", "bone", "vessel",
          "pericardial_fat", "lv_blood", "lv_myo", "rv_blood", "rv_myo", "atria")
#: Label values that move with the heart (chambers, myocardium, pericardial fat).
HEART_LABELS = tuple(LABELS.index(n) for n in
                     ("pericardial_fat", "lv_blood", "lv_myo", "rv_blood", "rv_myo", "atria"))
#: Smallest H and W the simulator accepts.
MIN_SIM_SIZE = 8


@dataclass(frozen=True)
class SimConfig:
    """Settings of one simulated cine slice.

    Attributes:
        frames: number of cardiac phases T over one cycle (12-25 typical).
        coils: number of receive coils C.
        size: image size (H, W); W is the phase-encoding axis. Need not be square.
        view: ``"sax"`` (short axis, round LV) or ``"lax"`` (four-chamber long axis).
        snr_db: SNR in dB relative to the mean object magnitude; ``inf`` for no noise.
        seed: seed of the private RNG; anatomy, phase, coils and noise all derive from it.
        fov_mm: field of view along the shorter image axis (sets the pixel spacing).
        texture: relative amplitude of the smooth multiplicative tissue texture.
        phase_rad: typical amplitude (std, radians) of the smooth background phase.
        flow_phase_rad: amplitude of the time-varying phase in the blood pools.
        name: sample name; ``None`` gives ``sim_<view>_s<seed>``.
        detail: strength of the fine detail measured on real cines (tissue grain, fat septa
            and vessels, lung vessels, trabeculated endocardium, coil shading); 0 gives smooth
            shapes of uniform intensity, values above 1 exaggerate it.
    """

    frames: int = 12
    coils: int = 8
    size: tuple[int, int] = (64, 64)
    view: str = "sax"
    snr_db: float = 30.0
    seed: int = 0
    fov_mm: float = 320.0
    texture: float = 0.06
    phase_rad: float = 0.8
    flow_phase_rad: float = 0.3
    name: str | None = None
    detail: float = 1.0

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise ConfigError(f"SimConfig.view must be one of {VIEWS}, got {self.view!r}")
        if self.frames < 1 or self.coils < 1:
            raise ConfigError(f"SimConfig needs frames >= 1 and coils >= 1, got frames={self.frames}, "
                              f"coils={self.coils}")
        if len(self.size) != 2 or min(self.size) < MIN_SIM_SIZE:
            raise ConfigError(f"SimConfig.size must be (H, W) with both >= {MIN_SIM_SIZE}, got {self.size}")
        if not self.detail >= 0:
            raise ConfigError(f"SimConfig.detail must be >= 0, got {self.detail}")


class Phantom(NamedTuple):
    """A noise-free rendered cine before coils.

    Attributes:
        image: (T, H, W) complex64 true image (magnitude x smooth phase).
        labels: (T, H, W) uint8 tissue labels (see :data:`LABELS`).
        contraction: (T,) contraction state in [0, 1] (0 end-diastole, 1 end-systole).
        frame_times_ms: (T,) trigger times.
    """

    image: np.ndarray
    labels: np.ndarray
    contraction: np.ndarray
    frame_times_ms: np.ndarray


# ----------------------------------------------------------------------------- geometry


class _Grid(NamedTuple):
    """Isotropic pixel coordinates: one unit = half the shorter image side; y points down."""

    x: np.ndarray  # (W,) column coordinates
    y: np.ndarray  # (H,) row coordinates
    half_w: float  # half-width of the FOV in these units
    half_h: float
    edge: float  # anti-aliasing edge width (about 0.6 px) in these units


def _grid(h: int, w: int) -> _Grid:
    s = min(h, w) / 2.0
    return _Grid((np.arange(w) - w // 2) / s, (np.arange(h) - h // 2) / s, (w / 2.0) / s, (h / 2.0) / s, 0.6 / s)


class _Shape(NamedTuple):
    """Soft indicator ``weight`` in [0, 1] on the bounding box ``box`` = (row slice, column slice)."""

    box: tuple[slice, slice]
    weight: np.ndarray


def _span(coords: np.ndarray, lo: float, hi: float) -> slice:
    """Indices of the sorted ``coords`` within [lo, hi], as a slice."""
    i0, i1 = int(np.searchsorted(coords, lo, "left")), int(np.searchsorted(coords, hi, "right"))
    return slice(i0, i1) if i1 > i0 else slice(0, 0)


class _Ripple(NamedTuple):
    """Angular modulation of a shape's radius: ``1 + sum_k amp_k cos(k theta + phase_k)``."""

    orders: np.ndarray
    amps: np.ndarray
    phases: np.ndarray


def _damp(r: _Ripple, factor: float) -> _Ripple:
    """The ripple with its amplitudes scaled by ``factor``."""
    return r._replace(amps=r.amps * factor)


def _ellipse(g: _Grid, cx: float, cy: float, a: float, b: float, angle: float = 0.0,
             ripple: _Ripple | None = None) -> _Shape:
    """Soft indicator of an ellipse with semi-axes (a, b) rotated by ``angle``.

    The edge is a tanh of the signed distance (first order in ``r - 1``, exact for circles),
    about one pixel wide; beyond 10 edge widths outside the weight (< 1e-8) is dropped.
    ``ripple`` scales the boundary radius with the (elliptic) polar angle: a ragged,
    trabeculated border that moves with the shape.
    """
    if ripple is not None and not np.any(ripple.amps):
        ripple = None
    grow = 1.0 + (float(np.abs(ripple.amps).sum()) if ripple is not None else 0.0)
    reach = max(a, b) * grow + 10 * g.edge
    box = (_span(g.y, cy - reach, cy + reach), _span(g.x, cx - reach, cx + reach))
    ca, sa = math.cos(angle), math.sin(angle)
    dy = (g.y[box[0]] - cy)[:, None]
    dx = (g.x[box[1]] - cx)[None, :]
    u = (ca * dx + sa * dy) / a
    v = (-sa * dx + ca * dy) / b
    r = np.sqrt(u * u + v * v) + 1e-12
    grad = np.sqrt((u / a) ** 2 + (v / b) ** 2) / r  # |grad r|, >= 1 / max(a, b)
    if ripple is not None:
        theta = np.arctan2(v, u)
        scale = 1.0 + sum(am * np.cos(k * theta + ph) for k, am, ph in zip(ripple.orders, ripple.amps, ripple.phases))
        r = r / scale
        grad = grad / scale
    return _Shape(box, 0.5 * (1.0 - np.tanh(((r - 1.0) / grad) / g.edge)))


class _Canvas:
    """Painter's-algorithm compositing of soft shapes with a label map."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.img = np.zeros(shape)
        self.lab = np.zeros(shape, dtype=np.uint8)
        self.blood = np.zeros(shape)

    def copy(self) -> "_Canvas":
        out = _Canvas(self.img.shape)
        out.img, out.lab, out.blood = self.img.copy(), self.lab.copy(), self.blood.copy()
        return out

    def paint(self, shape: _Shape, value: float, label: str) -> None:
        box, w = shape
        self.img[box] = self.img[box] * (1.0 - w) + value * w
        self.lab[box][w > 0.5] = LABELS.index(label)
        is_blood = 1.0 if label in ("lv_blood", "rv_blood", "atria", "vessel") else 0.0
        self.blood[box] = self.blood[box] * (1.0 - w) + is_blood * w


# ----------------------------------------------------------------------------- subject


class _Contrast(NamedTuple):
    """Tissue intensities (bSSFP-like: bright fat and blood, dark myocardium and lungs).

    Relative to the brightest tissue (subcutaneous fat, about 1), as measured on real bSSFP
    cines scaled to a 99.5th percentile of 1 (``benchmarks/phantom_realism.py``): LV blood
    about 0.5-0.9 (inflow makes it brighter in some subjects), myocardium, skeletal muscle,
    liver and other soft tissue 0.12-0.3, lungs nearly black.
    """

    body: float
    fat: float
    muscle: float
    lung: float
    liver: float
    bone: float
    vessel: float
    pericardial_fat: float
    blood: float
    myo: float
    atria: float


@dataclass(frozen=True)
class _Subject:
    """Anatomy and contrast of one simulated subject (iso units, see :class:`_Grid`)."""

    body_a: float
    body_b: float
    body_dy: float
    fat_rim: float
    heart_x: float
    heart_y: float
    r_epi: float  # LV epicardial radius at end-diastole
    wall: float  # LV wall thickness at end-diastole (fraction of r_epi)
    radial_shortening: float  # endocardial radius change ED -> ES (fraction)
    rv_angle: float  # direction of the RV from the LV centre (radians, image coordinates)
    rv_size: float
    lax_angle: float  # long-axis direction (base -> apex) for the LAX view
    lax_length: float  # LV cavity length over r_epi
    lung_size: float
    liver_size: float
    systole: float  # phase of end-systole within the cycle
    sharpness: float  # von Mises concentration of the contraction curve
    shift: tuple[float, float]  # whole-heart translation at end-systole
    heart_rate_bpm: float
    values: _Contrast
    septal_anchor: float  # share of the LV radius change by which the LV centre moves to the septum
    lv_trabeculae: _Ripple  # ragged LV endocardium (trabeculae), relative radius modulation
    rv_trabeculae: _Ripple
    fat_patches: _Ripple  # uneven epicardial fat (thick in the grooves, absent elsewhere)


def _draw_ripple(rng: np.random.Generator, orders: tuple[int, int], count: int, amp: float) -> _Ripple:
    """``count`` random harmonics between ``orders``, amplitudes up to ``amp`` in total."""
    k = rng.choice(np.arange(orders[0], orders[1] + 1), size=count, replace=False)
    a = rng.uniform(0.3, 1.0, count)
    a *= amp / a.sum()
    return _Ripple(k.astype(float), a, rng.uniform(0, 2 * math.pi, count))


def _draw_subject(rng: np.random.Generator, g: _Grid) -> _Subject:
    u = rng.uniform
    blood = u(0.45, 0.85)
    values = _Contrast(
        body=u(0.15, 0.3), fat=u(0.85, 1.0), muscle=u(0.12, 0.24), lung=u(0.005, 0.03), liver=u(0.15, 0.3),
        bone=u(0.3, 0.55), vessel=u(0.5, 0.95), pericardial_fat=u(0.45, 0.85), blood=blood,
        myo=u(0.13, 0.25), atria=blood * u(0.85, 1.05))
    heart_rate = u(55.0, 85.0)
    # end-systole comes about 320-400 ms after the R wave whatever the heart rate, so its share
    # of the cycle grows with the rate (about 0.33 at 55 bpm, 0.5 at 85 bpm)
    systole = float(np.clip(u(320.0, 400.0) * heart_rate / 60000.0, 0.28, 0.5))
    return _Subject(
        body_a=g.half_w * u(0.9, 1.05), body_b=g.half_h * u(0.74, 0.9), body_dy=u(-0.04, 0.06),
        fat_rim=u(0.04, 0.09),
        heart_x=u(0.02, 0.14), heart_y=u(-0.12, 0.02),
        r_epi=u(0.2, 0.26), wall=u(0.24, 0.32), radial_shortening=u(0.22, 0.33),
        rv_angle=math.pi + u(-0.55, -0.1), rv_size=u(0.9, 1.15),
        lax_angle=u(math.radians(35), math.radians(60)), lax_length=u(2.9, 3.4),
        lung_size=u(0.85, 1.1), liver_size=u(0.8, 1.15),
        systole=systole, sharpness=u(1.5, 2.5), shift=(u(-0.025, 0.025), u(-0.025, 0.025)),
        heart_rate_bpm=heart_rate, values=values,
        septal_anchor=u(0.1, 0.3),
        lv_trabeculae=_draw_ripple(rng, (5, 14), 4, u(0.05, 0.1)),
        rv_trabeculae=_draw_ripple(rng, (4, 12), 4, u(0.06, 0.12)),
        fat_patches=_draw_ripple(rng, (2, 5), 3, u(0.12, 0.2)),
    )


def contraction_curve(frames: int, systole: float = 0.35, sharpness: float = 2.0) -> np.ndarray:
    """Smooth periodic contraction state over one cardiac cycle.

    A von Mises bump in cardiac phase, scaled to [0, 1] over the continuous cycle:
    about 0 at end-diastole (phase 0) and 1 at end-systole (phase ``systole``).

    Args:
        frames: T.
        systole: phase of end-systole in [0, 1).
        sharpness: concentration (larger = shorter systole).

    Returns:
        (T,) float64 array.
    """
    phase = np.arange(frames) / frames
    bump = np.exp(sharpness * (np.cos(2 * np.pi * (phase - systole)) - 1.0))
    lo = math.exp(-2.0 * sharpness)
    return (bump - lo) / (1.0 - lo)


def _paint_body(cv: _Canvas, g: _Grid, s: _Subject, view: str) -> None:
    v = s.values
    a, b, dy = s.body_a, s.body_b, s.body_dy
    cv.paint(_ellipse(g, 0, dy, a, b), v.fat, "fat")
    cv.paint(_ellipse(g, 0, dy, a - s.fat_rim, b - s.fat_rim), v.muscle, "muscle")
    cv.paint(_ellipse(g, 0, dy, a - 2.2 * s.fat_rim, b - 2.2 * s.fat_rim), v.body, "body")
    ls = s.lung_size
    # lungs: patient right = image left, the left lung is smaller (heart)
    cv.paint(_ellipse(g, -0.5 * a, dy - 0.1 * b, 0.3 * a * ls, 0.55 * b * ls, 0.15), v.lung, "lung")
    cv.paint(_ellipse(g, 0.55 * a, dy - 0.15 * b, 0.24 * a * ls, 0.5 * b * ls, -0.2), v.lung, "lung")
    lv = s.liver_size
    if view == "sax":
        cv.paint(_ellipse(g, -0.45 * a, dy + 0.55 * b, 0.4 * a * lv, 0.3 * b * lv, 0.3), v.liver, "liver")
    else:
        cv.paint(_ellipse(g, -0.3 * a, dy + 0.75 * b, 0.6 * a * lv, 0.3 * b * lv, 0.2), v.liver, "liver")
    # spine (cortex and marrow) and descending aorta, posterior
    sy = dy + 0.72 * b
    cv.paint(_ellipse(g, 0.0, sy, 0.11, 0.1), v.muscle, "bone")
    cv.paint(_ellipse(g, 0.0, sy, 0.08, 0.07), v.bone, "bone")
    cv.paint(_ellipse(g, 0.13, sy - 0.14, 0.055, 0.055), v.vessel, "vessel")


def _paint_sax(cv: _Canvas, g: _Grid, s: _Subject, c: float) -> None:
    v = s.values
    cx = s.heart_x + s.shift[0] * c
    cy = s.heart_y + s.shift[1] * c
    r_epi0 = s.r_epi
    r_endo0 = r_epi0 * (1.0 - s.wall)
    r_endo = r_endo0 * (1.0 - s.radial_shortening * c)
    r_epi = math.sqrt(r_endo ** 2 + r_epi0 ** 2 - r_endo0 ** 2)  # myocardial area is conserved
    # right ventricle: a crescent, an ellipse offset towards the RV and cut by the LV (septum)
    ux, uy = math.cos(s.rv_angle), math.sin(s.rv_angle)
    # the septum moves less than the free wall: the LV centre drifts towards the RV in systole
    lvx = cx + s.septal_anchor * (r_endo0 - r_endo) * ux
    lvy = cy + s.septal_anchor * (r_endo0 - r_endo) * uy
    rv_a = r_epi0 * 0.95 * s.rv_size * (1.0 - 0.28 * c)  # along the offset direction
    rv_b = r_epi0 * 1.45 * s.rv_size * (1.0 - 0.1 * c)
    off = 0.85 * r_epi0
    rvx, rvy = cx + off * ux, cy + off * uy
    wall_rv, fat = 0.04, 0.035
    cv.paint(_ellipse(g, rvx, rvy, rv_a + wall_rv + fat, rv_b + wall_rv + fat, s.rv_angle, s.fat_patches),
             v.pericardial_fat, "pericardial_fat")
    cv.paint(_ellipse(g, lvx, lvy, r_epi + fat, r_epi + fat, 0.0, s.fat_patches), v.pericardial_fat,
             "pericardial_fat")
    cv.paint(_ellipse(g, rvx, rvy, rv_a + wall_rv, rv_b + wall_rv, s.rv_angle), v.myo, "rv_myo")
    cv.paint(_ellipse(g, rvx, rvy, rv_a, rv_b, s.rv_angle, s.rv_trabeculae), v.blood, "rv_blood")
    cv.paint(_ellipse(g, lvx, lvy, r_epi, r_epi), v.myo, "lv_myo")
    # trabeculae: a ragged endocardium, compacting in systole
    cv.paint(_ellipse(g, lvx, lvy, r_endo, r_endo, 0.0, _damp(s.lv_trabeculae, 1.0 - 0.5 * c)),
             v.blood, "lv_blood")
    # two papillary muscles, attached near the wall, moving with the endocardium
    for ang in (s.rv_angle + 2.3, s.rv_angle - 2.3):
        rp = 0.62 * r_endo
        pr = 0.18 * r_endo0 * (1.0 + 0.3 * c)
        cv.paint(_ellipse(g, lvx + rp * math.cos(ang), lvy + rp * math.sin(ang), pr, pr), v.myo, "lv_myo")


def _paint_lax(cv: _Canvas, g: _Grid, s: _Subject, c: float) -> None:
    v = s.values
    ang = s.lax_angle
    ux, uy = math.cos(ang), math.sin(ang)  # base -> apex (down and to the image right)
    vx, vy = math.sin(ang), -math.cos(ang)  # lateral, towards the LV (image right, up)
    length0 = s.lax_length * s.r_epi * 0.85  # LV cavity length at end-diastole
    r_endo0 = 0.85 * s.r_epi * (1.0 - s.wall)
    th0 = 0.85 * s.r_epi * s.wall
    # base of the heart (AV plane centre), placed so the heart (atria to apex) is centred;
    # it descends towards the apex in systole
    bx = s.heart_x - 0.1 * length0 * ux + s.shift[0] * c
    by = s.heart_y - 0.1 * length0 * uy + s.shift[1] * c
    descent = 0.13 * length0 * c
    bx, by = bx + descent * ux, by + descent * uy
    length = length0 * (1.0 - 0.15 * c)
    r_endo = r_endo0 * (1.0 - 0.8 * s.radial_shortening * c)
    th = th0 * (1.0 + 0.45 * c)

    def at(du: float, dv: float) -> tuple[float, float]:
        return bx + du * ux + dv * vx, by + du * uy + dv * vy

    # atria above the base, filling during ventricular systole
    la_a, la_b = 0.26 * length0 * (1.0 + 0.25 * c), 0.85 * r_endo0 * (1.0 + 0.15 * c)
    ra_a, ra_b = 0.24 * length0 * (1.0 + 0.25 * c), 0.8 * r_endo0 * s.rv_size * (1.0 + 0.15 * c)
    rv_half = 0.4 * length0 * (1.0 - 0.12 * c)
    rv_w = 0.75 * r_endo0 * s.rv_size * (1.0 - 0.3 * c)
    fat = 0.03
    la = (*at(-la_a, r_endo0 + th0), la_a, la_b)
    ra = (*at(-ra_a, -(rv_w + th0)), ra_a, ra_b)
    rv = (*at(rv_half + 0.02, -(rv_w + 0.5 * th0)), rv_half, rv_w)
    lv = (*at(0.5 * length, r_endo0 + th0 - (r_endo0 - r_endo) * 0.3), 0.5 * length, r_endo)
    for (x, y, a, b), wall in ((la, 0.03), (ra, 0.03), (rv, 0.04), (lv, th)):
        cv.paint(_ellipse(g, x, y, a + wall + fat, b + wall + fat, ang, s.fat_patches), v.pericardial_fat,
                 "pericardial_fat")
    for x, y, a, b in (la, ra):
        cv.paint(_ellipse(g, x, y, a + 0.03, b + 0.03, ang), v.myo, "atria")
        cv.paint(_ellipse(g, x, y, a, b, ang), v.atria, "atria")
    x, y, a, b = rv
    cv.paint(_ellipse(g, x, y, a + 0.04, b + 0.04, ang), v.myo, "rv_myo")
    cv.paint(_ellipse(g, x, y, a, b, ang, s.rv_trabeculae), v.blood, "rv_blood")
    x, y, a, b = lv
    cv.paint(_ellipse(g, x, y, a + th, b + th, ang), v.myo, "lv_myo")
    cv.paint(_ellipse(g, x, y, a, b, ang, _damp(s.lv_trabeculae, 0.6 * (1.0 - 0.5 * c))), v.blood, "lv_blood")


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field: white noise blurred by a Gaussian.

    Args:
        rng: private generator.
        shape: output shape (e.g. (H, W)).
        sigma: Gaussian width in pixels.

    Returns:
        float64 array of ``shape``.
    """
    f = gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    f = f - f.mean()
    return f / (f.std() + 1e-12)


def smooth_phase(rng: np.random.Generator, shape: tuple[int, int], std_rad: float) -> np.ndarray:
    """Smooth background phase (radians), (H, W): a random linear ramp plus a smooth field."""
    h, w = shape
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    ramp = rng.uniform(-0.5, 0.5) * x + rng.uniform(-0.5, 0.5) * y
    return rng.uniform(-math.pi, math.pi) + std_rad * (ramp + smooth_field(rng, shape, min(h, w) / 5.0))


def _tissue_detail(rng: np.random.Generator, cv: _Canvas, values: _Contrast, detail: float) -> None:
    """Add the static fine structure of real images to the body canvas (in place).

    Real cines are not piecewise constant: soft tissue has a grain, visceral fat and vessels
    draw thin bright septa, subcutaneous fat has dark fibrous septa and the lungs show
    vessels. Each is a smooth random field: multiplicative grain, and thin lines on the zero
    set of a field (in patches, so not everywhere). Sizes are set on a 128-pixel grid and scale
    with the image; on coarser grids the lines get wider and fainter (same contrast mass).
    """
    if detail <= 0:
        return
    h, w = cv.img.shape
    px = min(h, w) / 128.0
    thin = min(px, 1.0)

    def region(*names: str) -> np.ndarray:
        m = np.isin(cv.lab, [LABELS.index(n) for n in names]).astype(np.float64)
        return gaussian_filter(m, 0.5 * px, mode="nearest")

    def lines(sigma: float, width: float) -> np.ndarray:
        return np.exp(-(smooth_field(rng, (h, w), sigma * px) / (width / thin)) ** 2) * thin

    def patches(sigma: float, cover: float) -> np.ndarray:
        return np.clip(smooth_field(rng, (h, w), sigma * px) + cover, 0.0, 1.0)

    soft, fat, lung = region("body", "muscle", "liver"), region("fat"), region("lung")
    grain = smooth_field(rng, (h, w), 0.7 * px) + 0.7 * smooth_field(rng, (h, w), 2.0 * px)
    grain /= grain.std() + 1e-12
    img = cv.img * (1.0 + detail * rng.uniform(0.04, 0.08) * grain * (soft + 0.5 * fat))
    septa = soft * lines(5.0, 0.12) * patches(10.0, 0.4)
    img += np.clip(detail * rng.uniform(0.15, 0.4), 0.0, 1.0) * septa * (values.fat - img)
    img -= np.clip(detail * rng.uniform(0.3, 0.6), 0.0, 1.0) * fat * lines(3.0, 0.12) * img
    img += detail * rng.uniform(0.1, 0.3) * lung * lines(3.5, 0.1) * patches(6.0, 0.3)
    cv.img = np.clip(img, 0.0, None)


def simulate_phantom(cfg: SimConfig) -> Phantom:
    """Render the noise-free single-coil cine of the subject drawn from ``cfg.seed``.

    Args:
        cfg: simulation settings (frames, size, view, seed, texture, phase).

    Returns:
        :class:`Phantom` with image (T, H, W) complex64 and labels (T, H, W).
    """
    rng = np.random.default_rng(cfg.seed)
    h, w = cfg.size
    g = _grid(h, w)
    subj = _draw_subject(rng, g)
    subj = replace(subj, lv_trabeculae=_damp(subj.lv_trabeculae, cfg.detail),
                   rv_trabeculae=_damp(subj.rv_trabeculae, cfg.detail))
    tex = 1.0 + cfg.texture * smooth_field(rng, (h, w), max(1.0, min(h, w) / 40.0))
    phase = smooth_phase(rng, (h, w), cfg.phase_rad)
    c = contraction_curve(cfg.frames, subj.systole, subj.sharpness)
    velocity = np.gradient(np.concatenate([c[-1:], c, c[:1]]))[1:-1] * cfg.frames / (2 * math.pi)
    paint_heart = _paint_sax if cfg.view == "sax" else _paint_lax
    image = np.zeros((cfg.frames, h, w), dtype=np.complex64)
    labels = np.zeros((cfg.frames, h, w), dtype=np.uint8)
    static = _Canvas((h, w))
    _paint_body(static, g, subj, cfg.view)
    rng_detail = np.random.default_rng([cfg.seed, 4])  # detail has its own stream: anatomy does not change
    _tissue_detail(rng_detail, static, subj.values, cfg.detail)
    if cfg.detail > 0:  # receive-coil shading left in the combined image: a smooth +-10-20 % gain
        shading = rng_detail.uniform(0.08, 0.2) * smooth_field(rng_detail, (h, w), min(h, w) / 3.0)
        tex = tex * np.exp(cfg.detail * shading)
    for t in range(cfg.frames):
        cv = static.copy()
        paint_heart(cv, g, subj, float(c[t]))
        ph = phase + cfg.flow_phase_rad * velocity[t] * cv.blood
        image[t] = (np.clip(cv.img * tex, 0.0, None) * np.exp(1j * ph)).astype(np.complex64)
        labels[t] = cv.lab
    rr_ms = 60000.0 / subj.heart_rate_bpm
    return Phantom(image, labels, c, np.arange(cfg.frames) * rr_ms / cfg.frames)


# ----------------------------------------------------------------------------- coils and noise


def birdcage_maps(coils: int, size: tuple[int, int], seed: int | np.random.Generator = 0,
                  ring: float = 1.35, height: float = 0.7, twist: float = 1.0) -> torch.Tensor:
    """Smooth coil sensitivities of ``coils`` elements spread on a ring around the object.

    Coil c sits at angle ``theta_c = 2 pi c / C + theta_0`` on an ellipse ``ring`` times the
    half FOV, at ``height`` above the imaging plane (so magnitudes stay finite everywhere).
    Magnitude falls off as ``(h^2 / (d^2 + h^2))^0.75`` with in-plane distance d; the phase is
    ``theta_c`` plus a ramp of ``twist`` radians per unit along the coil direction. The
    result is normalised so that ``sum_c |S_c|^2 = 1`` at every pixel.

    Args:
        coils: C.
        size: (H, W).
        seed: seed or private generator for the ring rotation and small per-coil jitter.
        ring: ring size relative to the half FOV.
        height: out-of-plane distance (half-FOV units).
        twist: phase ramp.

    Returns:
        (C, 1, H, W) complex64.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    h, w = size
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    theta0 = rng.uniform(0, 2 * math.pi)
    maps = np.empty((coils, 1, h, w), dtype=np.complex128)
    for c in range(coils):
        th = theta0 + 2 * math.pi * c / coils + rng.uniform(-0.1, 0.1)
        px, py = ring * math.cos(th), ring * math.sin(th)
        d2 = (x - px) ** 2 + (y - py) ** 2
        hh = height * rng.uniform(0.9, 1.1)
        mag = (hh ** 2 / (d2 + hh ** 2)) ** 0.75
        ph = th + twist * ((x - px) * math.cos(th) + (y - py) * math.sin(th))
        maps[c, 0] = mag * np.exp(1j * ph)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))
    return torch.from_numpy(maps.astype(np.complex64))


def noise_sigma(image: np.ndarray | torch.Tensor, snr_db: float, rel_support: float = 0.1) -> float:
    """Noise std sigma (per complex sample) giving ``snr_db`` relative to the mean object magnitude.

    The object is where the time-averaged magnitude exceeds ``rel_support`` times its maximum.
    """
    if math.isinf(snr_db) and snr_db > 0:
        return 0.0
    mag = np.abs(np.asarray(image)).mean(axis=0)
    support = mag > rel_support * mag.max()
    mean_signal = float(mag[support].mean()) if support.any() else float(mag.mean())
    return mean_signal / (10.0 ** (snr_db / 20.0))


def image_to_sample(image: np.ndarray | torch.Tensor, maps: torch.Tensor, sigma: float,
                    rng: np.random.Generator, meta: SampleMeta) -> CineSample:
    """Coil k-space ``F(S x) + noise`` of a (T, H, W) image, as a fully sampled CineSample.

    Args:
        image: (T, H, W) complex true image.
        maps: (C, 1, H, W) complex64 maps with ``sum_c |S_c|^2 = 1``.
        sigma: complex noise std per k-space sample (0 for none).
        rng: private generator for the noise.
        meta: metadata (accel and acs are set to the fully sampled values).

    Returns:
        CineSample with kspace (C, T, H, W), mask ones (1, 1, 1, W), maps, and
        target = S^H F^-1 kspace (T, H, W).
    """
    x = torch.as_tensor(np.asarray(image), dtype=torch.complex64)
    t, h, w = x.shape
    kspace = fft2c(maps * x.unsqueeze(0))
    if sigma > 0:
        n = rng.standard_normal((*kspace.shape, 2), dtype=np.float32)
        n *= sigma / math.sqrt(2.0)
        kspace = kspace + torch.view_as_complex(torch.from_numpy(n))
    target = (maps.conj() * ifft2c(kspace)).sum(dim=0)
    mask = torch.ones(1, 1, 1, w)
    return CineSample(kspace.contiguous(), mask, maps, target, replace(meta, accel=1.0, acs=w))


def simulate_cine(cfg: SimConfig = SimConfig()) -> CineSample:
    """Simulate one fully sampled multi-coil cine slice.

    Args:
        cfg: settings; everything random derives from ``cfg.seed``.

    Returns:
        CineSample: kspace (C, T, H, W) complex64, mask ones (1, 1, 1, W), maps (C, 1, H, W)
        with ``sum_c |S_c|^2 = 1``, target = S^H F^-1 kspace (T, H, W), meta.accel = 1.
    """
    ph = simulate_phantom(cfg)
    rng = np.random.default_rng([cfg.seed, 1])  # coils and noise, independent of the anatomy draws
    maps = birdcage_maps(cfg.coils, cfg.size, rng)
    sigma = noise_sigma(ph.image, cfg.snr_db)
    h, w = cfg.size
    px = cfg.fov_mm / min(h, w)
    meta = SampleMeta(name=cfg.name or f"sim_{cfg.view}_s{cfg.seed}", view=cfg.view,
                      pixel_spacing=(px, px), frame_times_ms=tuple(float(v) for v in ph.frame_times_ms))
    return image_to_sample(ph.image, maps, sigma, rng, meta)


# ----------------------------------------------------------------------------- real magnitude cines


#: Smallest height and width of a real series. A real cine matrix is >= 128 pixels a side and the
#: training crops are >= 16 (RealCineConfig), so a side below 8 is not an image but a degenerate
#: array (a (T, 1, W) line profile, a thumbnail, swapped axes): crop-and-resize would invent all of
#: it, and the smooth phase and coil maps need a 2-D extent. 8 still admits small test fixtures.
MIN_REAL_SIDE = 8
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members / an empty zip (np.savez of nothing)


def _npz_unreadable(path: Path, why: str) -> DataError:
    return DataError(f"{path}: not a readable .npz ({why})")


def _read_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz at ``path`` (no pickles), or a one-line DataError naming the file."""
    import zipfile
    import zlib

    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise _npz_unreadable(path, e.strerror or type(e).__name__) from e
    if not head:
        raise _npz_unreadable(path, "empty file")
    if head == b"\x93NUMPY":
        raise _npz_unreadable(path, "a single .npy array, not an .npz archive; save it with np.savez(path, frames=...)")
    if head[:4] not in _ZIP_MAGIC:
        raise _npz_unreadable(path, "not a zip archive: corrupt, or another format")
    out, key = {}, None
    try:
        with np.load(path, allow_pickle=False) as d:
            for key in d.files:
                out[key] = np.asarray(d[key])
    except ValueError as e:
        if "allow_pickle" in str(e) and key is not None:
            raise DataError(f"{path}: key {key!r} holds pickled Python objects, refused (a real series holds "
                            "numeric arrays only)") from e
        raise _npz_unreadable(path, " ".join(f"{type(e).__name__}: {e}".split())) from e
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, NotImplementedError) as e:
        what = f" at key {key!r}" if key is not None else ""
        raise _npz_unreadable(path, " ".join(f"{type(e).__name__}{what}: {e}".split())) from e
    return out


def load_real_cine_npz(path: str | Path) -> tuple[np.ndarray, dict]:
    """Read a real magnitude cine series (.npz with ``frames`` (T, H, W) and timing keys).

    Args:
        path: .npz file with ``frames`` (T, H, W) integer or float magnitudes (>= 0), and optional
            ``trigger_time_ms`` (T,), ``pixel_spacing_mm`` (2,), ``series_description``, ``field_T``.

    Returns:
        frames (T, H, W) float32 and an info dict with keys ``trigger_time_ms`` (tuple or None),
        ``pixel_spacing_mm`` (tuple or None), ``series_description`` (str), ``field_T``
        (float or None) and ``source`` (str).

    Raises:
        DataError: in one line naming the file (and key, shape or value): not a readable .npz,
            missing ``frames``, wrong rank, H or W below :data:`MIN_REAL_SIDE`, complex or
            non-numeric dtype, negative or non-finite values.
    """
    path = Path(path)
    extra = _read_npz_arrays(path)
    if "frames" not in extra:
        raise DataError(f"{path}: missing key 'frames' (found {sorted(extra)})")
    frames = extra.pop("frames")
    if frames.ndim != 3 or min(frames.shape) < 1:
        raise DataError(f"{path}: key 'frames' must be (T, H, W), got shape {frames.shape}")
    if frames.dtype.kind == "c":
        raise DataError(f"{path}: key 'frames' {frames.shape} is complex ({frames.dtype}); a real series holds "
                        "magnitudes (store np.abs of the images)")
    if frames.dtype.kind not in "biuf":
        raise DataError(f"{path}: key 'frames' {frames.shape} has dtype {frames.dtype}, not real numbers")
    if min(frames.shape[1:]) < MIN_REAL_SIDE:
        raise DataError(f"{path}: key 'frames' has shape {frames.shape}: height and width must be at least "
                        f"{MIN_REAL_SIDE} pixels (expected (T, H, W))")
    frames = frames.astype(np.float32)
    if not np.isfinite(frames).all():
        raise DataError(f"{path}: key 'frames' {frames.shape} contains NaN or Inf")
    low = float(frames.min())
    if low < 0:
        raise DataError(f"{path}: key 'frames' {frames.shape} has {int((frames < 0).sum())} negative values "
                        f"(min {low:g}); a magnitude series must be >= 0")
    t = frames.shape[0]
    times = extra.get("trigger_time_ms")
    if times is not None and times.shape != (t,):
        raise DataError(f"{path}: key 'trigger_time_ms' must have shape ({t},), got {times.shape}")
    if times is not None and (not np.issubdtype(times.dtype, np.number) or np.iscomplexobj(times)
                              or not np.isfinite(times.astype(np.float64)).all()
                              or (np.diff(times.astype(np.float64)) < 0).any()):
        raise DataError(f"{path}: key 'trigger_time_ms' {times.shape} must be finite real numbers that never "
                        f"decrease (one trigger time per frame), got {np.array2string(times, threshold=8)}")
    spacing = extra.get("pixel_spacing_mm")
    if spacing is not None and spacing.shape != (2,):
        raise DataError(f"{path}: key 'pixel_spacing_mm' must have shape (2,), got {spacing.shape}")
    info = {
        "trigger_time_ms": None if times is None else tuple(float(v) for v in times),
        "pixel_spacing_mm": None if spacing is None else (float(spacing[0]), float(spacing[1])),
        "series_description": str(extra["series_description"]) if "series_description" in extra else "",
        "field_T": float(extra["field_T"]) if "field_T" in extra else None,
        "source": str(path),
    }
    return frames, info


def _crop_resize(frames: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Centre-crop (T, H, W) to the aspect ratio of ``size``, then resize (anti-aliased).

    Returns:
        The (T, size[0], size[1]) frames and the crop size (h, w) before resizing.
    """
    from skimage.transform import resize

    t, h, w = frames.shape
    th, tw = size
    if h * tw > w * th:  # too tall
        ch, cw = max(1, round(w * th / tw)), w
    else:
        ch, cw = h, max(1, round(h * tw / th))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = frames[:, y0:y0 + ch, x0:x0 + cw]
    if (ch, cw) == (th, tw):
        return crop, (ch, cw)
    out = resize(crop, (t, th, tw), order=1, anti_aliasing=(ch > th or cw > tw), preserve_range=True)
    return out.astype(np.float32), (ch, cw)


def _embed(frames: np.ndarray, field: tuple[int, int], name: str) -> np.ndarray:
    """(T, h, w) frames at the centre of a zero (T, H, W) field (floor of the margin before)."""
    t, h, w = frames.shape
    if field[0] < h or field[1] < w:
        raise ConfigError(f"{name}: field (H, W) = {field} must be at least the series' (H, W) = ({h}, {w})")
    out = np.zeros((t, *field), dtype=frames.dtype)
    y0, x0 = (field[0] - h) // 2, (field[1] - w) // 2
    out[:, y0:y0 + h, x0:x0 + w] = frames
    return out


def magnitude_cine_to_sample(frames: np.ndarray, coils: int = 8, snr_db: float = 30.0, seed: int = 0,
                             name: str = "real_cine", size: tuple[int, int] | None = None,
                             n_frames: int | None = None, phase_rad: float = 0.8,
                             view: str = "unknown", pixel_spacing: tuple[float, float] | None = None,
                             frame_times_ms: tuple[float, ...] | None = None,
                             field: tuple[int, int] | None = None) -> CineSample:
    """Turn a real magnitude cine into fully sampled multi-coil k-space.

    The magnitude (scaled so its 99.5th percentile is 1) gets a synthetic smooth phase,
    birdcage coil maps and complex Gaussian noise (SNR relative to the mean object magnitude,
    on top of the noise already in the magnitude images).

    Args:
        frames: (T, H, W) real magnitudes.
        coils: C.
        snr_db: added-noise SNR in dB; ``inf`` adds none.
        seed: seed of the private RNG (phase, maps, noise).
        name: sample name.
        size: optional output (H, W): centre crop to that aspect ratio, then resize.
        n_frames: optional number of frames, picked evenly over the cycle.
        phase_rad: std of the smooth phase.
        view: view label stored in the metadata.
        pixel_spacing: (dy, dx) mm of the input; rescaled with ``size``.
        frame_times_ms: (T,) input trigger times; subsampled with ``n_frames``.
        field: optional larger (H, W) field: the series (after ``size``) sits at its centre on a
            zero background, keeping its pixel size, as in CMRxRecon data (448 x 204 for SAX, with
            the readout along H 2x oversampled); the phase and the birdcage maps span the whole
            field (the coil ring stretched to it), the noise is as without it (relative to the
            object).

    Returns:
        CineSample like :func:`simulate_cine`'s (target = S^H F^-1 kspace).
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3:
        raise DataError(f"{name}: frames must be (T, H, W), got shape {frames.shape}")
    t0 = frames.shape[0]
    if n_frames is not None:
        if not 1 <= n_frames <= t0:
            raise ConfigError(f"{name}: n_frames must be in [1, {t0}], got {n_frames}")
        idx = np.floor(np.arange(n_frames) * t0 / n_frames).astype(int)
        frames = frames[idx]
        if frame_times_ms is not None:
            frame_times_ms = tuple(float(frame_times_ms[i]) for i in idx)
    if size is not None:
        frames, (ch, cw) = _crop_resize(frames, (int(size[0]), int(size[1])))
        if pixel_spacing is not None:
            pixel_spacing = (pixel_spacing[0] * ch / size[0], pixel_spacing[1] * cw / size[1])
    scale = float(np.percentile(frames, 99.5)) or 1.0
    mag = np.clip(frames / scale, 0.0, None)
    if field is not None:
        mag = _embed(mag, (int(field[0]), int(field[1])), name)
    rng = np.random.default_rng([seed, 2])
    t, h, w = mag.shape
    image = mag * np.exp(1j * smooth_phase(rng, (h, w), phase_rad))[None]
    maps = birdcage_maps(coils, (h, w), rng)
    sigma = noise_sigma(image, snr_db)
    meta = SampleMeta(name=name, view=view, pixel_spacing=pixel_spacing, frame_times_ms=frame_times_ms)
    return image_to_sample(image, maps, sigma, rng, meta)


def real_cine_to_sample(path: str | Path, coils: int = 8, snr_db: float = 30.0, seed: int = 0,
                        size: tuple[int, int] | None = None, n_frames: int | None = None,
                        field: tuple[int, int] | None = None) -> CineSample:
    """:func:`load_real_cine_npz` followed by :func:`magnitude_cine_to_sample`."""
    frames, info = load_real_cine_npz(path)
    parts = Path(path).stem.lower().split("_")
    view = "sax" if "sax" in parts else "lax" if "lax" in parts else "unknown"
    return magnitude_cine_to_sample(frames, coils=coils, snr_db=snr_db, seed=seed, name=Path(path).stem,
                                    size=size, n_frames=n_frames, view=view, field=field,
                                    pixel_spacing=info["pixel_spacing_mm"],
                                    frame_times_ms=info["trigger_time_ms"])


# ----------------------------------------------------------------------------- datasets


def _split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Subjects per (train, val, test): at least one test subject from 2 on, one val from 3 on."""
    f_train, f_val, f_test = fractions
    total = f_train + f_val + f_test
    n_test = max(1 if n >= 2 else 0, round(n * f_test / total))
    n_val = max(1 if n >= 3 else 0, round(n * f_val / total))
    n_test, n_val = min(n_test, n - 1) if n >= 1 else 0, min(n_val, max(n - 1 - n_test, 0))
    return n - n_val - n_test, n_val, n_test


def subject_seed(seed: int, subject: int) -> int:
    """Seed of subject ``subject`` of a dataset simulated with base ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([seed, subject]).generate_state(1)[0])


def check_accels(size: tuple[int, int], accels: tuple[int, ...], acs: int) -> None:
    """Refuse accelerations whose stored equispaced + ACS masks would not be undersampled.

    A mask labelled ``R04`` that samples every phase-encode line (the ACS block covers the
    width, or covers all but lines that the equispaced lines hit for some offset) is fully
    sampled data under an accelerated name: ``reconstruct`` would report R04 and ``evaluate``
    an infinite PSNR. Masks that sample no line at all (R > W without ACS, for some offsets)
    are refused too. The offset is drawn per subject in [0, R), so every offset is checked and
    the answer does not depend on the seed. R = 1 (fully sampled, labelled ``R01``) is allowed.

    Args:
        size: (H, W) of the slices; W is the phase-encode axis.
        accels: accelerations R of the masks.
        acs: ACS lines of the masks.

    Raises:
        ConfigError: one line naming the size, the accelerations and the ACS lines.
    """
    h, w = size
    full, empty = [], []
    for r in accels:
        r = int(r)
        # offsets >= W sample no equispaced line (only the ACS block): the first min(R, W) tell all
        patterns = [equispaced(w, r, offset, acs) for offset in range(min(r, w))]
        if r > 1 and any(p.all() for p in patterns):
            full.append(r)
        if r > w and acs == 0:
            empty.append(r)
    if full:
        names = ", ".join(mask_key(r) for r in full)
        why = f"the {acs} ACS lines cover the whole width W = {w}" if acs >= w else \
            f"the {acs} ACS lines and the equispaced lines cover all W = {w} phase-encode lines for some offsets"
        raise ConfigError(f"size {h} {w}: masks {names} with {acs} ACS lines would be fully sampled ({why}); "
                          "use a larger W, fewer ACS lines (--acs) or other accelerations (--accels)")
    if empty:
        names = ", ".join(mask_key(r) for r in empty)
        raise ConfigError(f"size {h} {w}: masks {names} with {acs} ACS lines would sample no phase-encode line for "
                          f"some offsets (R > W = {w}); use ACS lines (--acs), a larger W or smaller accelerations")


def simulate_dataset(out_dir: str | Path, n_subjects: int, cfg: SimConfig = SimConfig(),
                     accels: tuple[int, ...] = (4, 8, 10, 24), overwrite: bool = False,
                     views: tuple[str, ...] | None = None, acs: int | None = None,
                     split: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> list[Path]:
    """Simulate ``n_subjects`` subjects and write one HDF5 file per (subject, view) plus split lists.

    Each file holds the fully sampled k-space, maps and target, and masks ``R04`` ... ``R24``
    (equispaced with a random offset plus ``acs`` central lines; one mask per file and R).
    Accelerations that the size cannot realise are refused before anything is written
    (:func:`check_accels`): e.g. at W = 8 the default 8 ACS lines cover the whole width, so
    every mask would be fully sampled under an accelerated name. They are refused rather than
    dropped, so that a dataset never lacks a mask that was asked for.
    Subjects are split (by subject, not by view) into ``train.txt`` / ``val.txt`` / ``test.txt``.

    Args:
        out_dir: output folder (created).
        n_subjects: number of subjects N >= 1.
        cfg: per-slice settings; ``cfg.seed`` is the base seed and ``cfg.view`` the view unless
            ``views`` is given.
        accels: accelerations R of the stored masks.
        overwrite: replace existing files (otherwise nothing is written if any output exists).
        views: views to simulate per subject (default: ``(cfg.view,)``).
        acs: ACS lines; default :func:`transforms.default_acs` of W (24, capped for small W).
        split: train / val / test fractions.

    Returns:
        Paths of the written files: the .h5 files, then the split lists.

    Raises:
        OutputExistsError: an output exists and ``overwrite`` is False.
        ConfigError: bad arguments, or an acceleration whose masks would sample every line
            (or none) at this size and ACS (:func:`check_accels`).
    """
    if n_subjects < 1:
        raise ConfigError(f"n_subjects must be >= 1, got {n_subjects}")
    views = tuple(views) if views else (cfg.view,)
    for v in views:
        if v not in VIEWS:
            raise ConfigError(f"unknown view {v!r}; choose from {VIEWS}")
    out_dir = Path(out_dir)
    width = cfg.size[1]
    n_acs = default_acs(width) if acs is None else int(acs)
    check_accels(cfg.size, tuple(accels), n_acs)
    plan = [(i, v, out_dir / f"sim{i:04d}_{v}.h5") for i in range(n_subjects) for v in views]
    split_files = [out_dir / f"{s}.txt" for s in ("train", "val", "test")]
    check_writable([p for *_, p in plan] + split_files, overwrite)
    written: list[Path] = []
    by_subject: dict[int, list[Path]] = {}
    for i, v, path in plan:
        seed = subject_seed(cfg.seed, i)
        sample = simulate_cine(replace(cfg, seed=seed, view=v, name=f"sim{i:04d}/{v}"))
        masks = {mask_key(r): make_mask(MaskSpec("equispaced_acs", int(r), n_acs), cfg.frames, width,
                                        seed=subject_seed(seed, int(r)))
                 for r in accels}
        written.append(write_h5(path, sample, masks, overwrite=overwrite))
        by_subject.setdefault(i, []).append(path)
    n_train, n_val, _ = _split_counts(n_subjects, split)
    order = np.random.default_rng([cfg.seed, 3]).permutation(n_subjects)
    groups = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    lists = {s: [p for i in sorted(int(j) for j in idx) for p in by_subject[i]] for s, idx in groups.items()}
    written += write_split(out_dir, lists, overwrite=True)
    return written
