"""How close is the phantom simulator to real cine series? Side-by-side image statistics.

Every series (real or simulated) is measured the same way, on magnitudes only:

* **Common grid.** Centre crop to a square and resize to 128 x 128
  (``cinerecon.data.simulate._crop_resize``), then scale so the 99.5th percentile is 1
  (the scaling ``magnitude_cine_to_sample`` uses).
* **Regions, found by simple means that need no labels** (so the phantom's labels can check them):
  heart = the largest connected blob of the temporal std map after a 2-pixel Gaussian blur,
  thresholded at 30 % of its 99.9th percentile, and its convex hull (the heart is the only
  large thing that moves; the hull adds the nearly still apex and septum);
  blood = pixels of the heart hull (dilated 3 px) brighter than the Otsu threshold of the
  moving blob's intensities (dilated 3 px, all frames; bSSFP blood is the brightest tissue
  there), opened by a 3x3 cross in each frame;
  ventricle pool = a blood component tracked through the frames by its core (pixels bright in
  90 % of the frames, eroded by 2 px so that chambers joined by valves or thin septa split):
  the bright pixels connected to the core and at most 8 px from it; the pool kept is nearly
  full in frame 0 (a ventricle at the R wave, not an atrium), at least 30 % of the largest
  chamber's size, and has the largest relative area change. In short axis this is the LV
  (checked against the phantom's labels: IoU 0.82-0.91 over seeds 0-7); in the four-chamber view the LV or the
  RV (the phantom's RV), which give the same timing;
  myocardium = the 3-pixel ring around the ventricle pool that is not bright (the LV wall is
  3-4 px thick at this grid); background = every pixel more than 4 px outside the heart hull
  (static tissue and air).
* **Intensities**: median and 10th / 90th percentiles per region; share of background below
  0.05 (air and lung).
* **Spectra**: radially averaged power spectrum of each frame (mean removed), averaged over
  frames. For real series the white-noise floor (noise variance from temporal differences
  of static pixels) is subtracted, so the clean anatomy is compared with the noise-free phantom.
  Reported: the log-log slope over 0.04-0.4 cycles/pixel, and the share of the power above
  0.25 cycles/pixel (edges and fine texture), in dB.
* **Texture**: robust std (1.4826 x median absolute deviation, so the few strong edges do not
  count) of the high-pass residual (image minus a 1-px Gaussian blur) over static tissue
  (background pixels above 0.1), noise contribution removed, relative to the tissue median.
* **Motion**: share of pixels whose temporal std exceeds 0.05 (moving fraction) and that area
  over the ventricle pool's largest area; pool area change ``1 - min / max``; largest displacement of
  its centroid from end-diastole (frame 0), over the square root of the end-diastolic area.
* **Timing**: from the ventricle pool area curve (frame 0 is end-diastole: cines are triggered on the
  R wave; parabolic sub-frame minimum): systolic share = end-systole over the cycle; refill
  share = time from end-systole until 70 % of the stroke area has come back.

Usage (from the repository root; reads ``../shared/data/real_cine*/*.npz``, never copies them)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/phantom_realism.py
    # before / after a change of the simulator:
    git show HEAD:src/cinerecon/data/simulate.py > /tmp/simulate_before.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/phantom_realism.py --simulator /tmp/simulate_before.py \
        --json /tmp/before.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/phantom_realism.py --before /tmp/before.json

See the "phantom realism" section of benchmarks/README.md for measured numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.morphology import convex_hull_image

from cinerecon.data.simulate import SimConfig, _crop_resize, load_real_cine_npz, simulate_phantom

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
GRID = (128, 128)
MOVE_THR = 0.05
REACH = 8  # px a chamber wall may move away from its (eroded) always-bright core

#: (key, label, format) of the reported statistics, in table order.
METRICS = (
    ("blood_med", "ventricle blood median", "{:.2f}"),
    ("blood_p10", "ventricle blood p10", "{:.2f}"),
    ("myo_med", "myocardium median", "{:.2f}"),
    ("myo_p90", "myocardium p90", "{:.2f}"),
    ("bg_p50", "background median", "{:.3f}"),
    ("bg_p90", "background p90", "{:.2f}"),
    ("bg_dark", "background share < 0.05", "{:.2f}"),
    ("slope", "spectrum slope (log-log)", "{:.2f}"),
    ("hf_db", "power share > 0.25 cyc/px (dB)", "{:.1f}"),
    ("texture", "tissue grain (robust high-pass std / median)", "{:.3f}"),
    ("moving", "moving fraction (std > 0.05)", "{:.3f}"),
    ("moving_rel", "moving area / ventricle ED area", "{:.2f}"),
    ("area_change", "ventricle area change 1 - ES/ED", "{:.2f}"),
    ("centroid", "ventricle centroid shift / sqrt(ED area)", "{:.3f}"),
    ("systole", "systolic share of cycle", "{:.2f}"),
    ("refill", "refill (70 %) share of cycle", "{:.2f}"),
)


def normalise(frames: np.ndarray, size: tuple[int, int] = GRID) -> np.ndarray:
    """(T, H, W) magnitudes -> centre crop to the aspect of ``size``, resized, 99.5th percentile = 1."""
    out, _ = _crop_resize(np.asarray(frames, dtype=np.float32), size)
    return (out / (float(np.percentile(out, 99.5)) or 1.0)).astype(np.float64)


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    return lab == 1 + int(np.argmax(ndi.sum(mask, lab, range(1, n + 1))))


def find_regions(f: np.ndarray) -> dict:
    """Regions of a normalised (T, H, W) series: heart hull, per-frame blood, ventricle pool (key ``lv``)
    and myocardium masks, and the static background (see the module docstring)."""
    t = f.shape[0]
    std = f.std(axis=0)
    sm = ndi.gaussian_filter(std, 2.0)
    blob = ndi.binary_fill_holes(_largest(sm > 0.3 * np.percentile(sm, 99.9)))
    heart = convex_hull_image(blob)
    roi = ndi.binary_dilation(heart, iterations=3)
    thr = float(threshold_otsu(f[:, ndi.binary_dilation(blob, iterations=3)]))
    fs = ndi.gaussian_filter(f, (0, 0.7, 0.7))
    bright = (fs > thr) & roi[None]
    # open each frame (3x3 cross) so thin bright bridges (fat over a thin wall) do not join chambers
    opened = ndi.binary_opening(bright, structure=ndi.generate_binary_structure(3, 1) * [[[0]], [[1]], [[0]]])
    # chamber cores: bright in (nearly) every frame; each is tracked through the frames
    core = ndi.binary_erosion(opened.mean(axis=0) >= 0.9, iterations=2)  # eroded: chambers split
    clab, cn = ndi.label(core)
    tracks = []
    for k in range(1, cn + 1):
        comp = clab == k
        if comp.sum() < 4:
            continue
        # the chamber at frame t: bright pixels connected to its core, at most REACH px away
        # from it (valves and thin septa do not let it leak into the next chamber)
        near = ndi.binary_dilation(comp, iterations=REACH)
        pool = np.zeros_like(bright)
        for i in range(t):
            bl, _ = ndi.label(opened[i] & near)
            ids = np.unique(bl[comp])
            pool[i] = np.isin(bl, ids[ids > 0])
        tracks.append((pool, pool.sum(axis=(1, 2)).astype(float)))
    # a ventricle: nearly full at the R wave (frame 0; atria are then nearly empty), among the
    # larger chambers, and with the largest relative area change (the LV ejects more than the RV)
    big = max((a.max() for _, a in tracks), default=0.0)
    best, best_change = None, -1.0
    for pool, areas in tracks:
        change = 1.0 - areas.min() / max(areas.max(), 1.0)
        if areas[0] >= 0.85 * areas.max() and areas.max() >= 0.3 * big and change > best_change:
            best, best_change = pool, change
    if best is None:  # nothing always bright: fall back to the largest bright blob per frame
        best = np.stack([_largest(b) for b in bright])
    ring = np.stack([ndi.binary_dilation(p, iterations=3) & ~p for p in best]) & ~bright
    background = ~ndi.binary_dilation(heart, iterations=4)
    return {"heart": heart, "roi": roi, "threshold": thr, "blood": bright, "lv": best, "myo": ring,
            "background": background}


def noise_sigma_static(f: np.ndarray, background: np.ndarray) -> float:
    """White-noise std from frame-to-frame differences of static pixels (robust MAD)."""
    if f.shape[0] < 2 or not background.any():
        return 0.0
    d = np.diff(f, axis=0)[:, background] / math.sqrt(2.0)
    return float(np.median(np.abs(d - np.median(d))) / 0.6745)


def radial_spectrum(f: np.ndarray, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum (orthonormal FFT, frame mean removed) and its frequencies."""
    t, h, w = f.shape
    x = f - f.mean(axis=(1, 2), keepdims=True)
    p = (np.abs(np.fft.fftshift(np.fft.fft2(x, norm="ortho"), axes=(-2, -1))) ** 2).mean(axis=0)
    ky, kx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(h)), np.fft.fftshift(np.fft.fftfreq(w)), indexing="ij")
    n = min(h, w)
    ring = np.rint(np.sqrt(kx ** 2 + ky ** 2) * n).astype(int).ravel()  # ring k holds |f| ~ k / n
    total = np.bincount(ring, weights=p.ravel())
    count = np.bincount(ring)
    k = np.arange(1, n // 2 + 1)
    freq = k / n
    power = total[k] / count[k] - noise ** 2
    return freq, np.maximum(power, 1e-12)


def _periodic_peak(y: np.ndarray, i: int) -> float:
    """Sub-frame position of the extremum at index i of a periodic curve (parabola through 3 points)."""
    n = len(y)
    a, b, c = y[(i - 1) % n], y[i], y[(i + 1) % n]
    den = a - 2 * b + c
    return i + (0.5 * (a - c) / den if abs(den) > 1e-12 else 0.0)


def timing(areas: np.ndarray) -> tuple[float, float]:
    """(systolic share, refill share) of a periodic blood-pool area curve whose frame 0 is end-diastole.

    Cine frames are triggered on the R wave, so frame 0 is end-diastole; end-systole is the
    smallest area (parabolic sub-frame position). Refill: time from end-systole until 70 % of
    the stroke area has come back (linear interpolation), over the cycle.
    """
    n = len(areas)
    i_min = int(np.argmin(areas))
    t_min = _periodic_peak(areas, i_min)
    level = areas[i_min] + 0.7 * (areas[0] - areas[i_min])
    refill = float("nan")
    for k in range(1, n + 1):
        j0, j1 = (i_min + k - 1) % n, (i_min + k) % n
        if areas[j1] >= level:
            frac = (level - areas[j0]) / (areas[j1] - areas[j0] + 1e-12)
            refill = ((i_min + k - 1 + frac - t_min) % n) / n
            break
    return float((t_min % n) / n), float(refill)


def measure(frames: np.ndarray, noisy: bool = True) -> dict:
    """All statistics of one (T, H, W) magnitude series (see the module docstring)."""
    f = normalise(frames)
    reg = find_regions(f)
    bg = reg["background"]
    noise = noise_sigma_static(f, bg) if noisy else 0.0
    blood = f[reg["lv"]]
    myo = f[reg["myo"]]
    bgv = f[:, bg]
    out = {
        "blood_med": float(np.median(blood)), "blood_p10": float(np.percentile(blood, 10)),
        "myo_med": float(np.median(myo)) if myo.size else float("nan"),
        "myo_p90": float(np.percentile(myo, 90)) if myo.size else float("nan"),
        "bg_p50": float(np.median(bgv)), "bg_p90": float(np.percentile(bgv, 90)),
        "bg_dark": float((bgv < 0.05).mean()),
        "noise": noise,
    }
    freq, power = radial_spectrum(f, noise)
    band = (freq >= 0.04) & (freq <= 0.4)
    out["slope"] = float(np.polyfit(np.log10(freq[band]), np.log10(power[band]), 1)[0])
    out["hf_db"] = float(10 * np.log10(power[freq > 0.25].sum() / power.sum()))
    # fine texture of static tissue: high-pass residual std, the noise part removed
    hp = f - ndi.gaussian_filter(f, (0, 1.0, 1.0))
    tissue = bg[None] & (f > 0.1)
    out["texture"] = float("nan")
    if tissue.any():  # robust std (MAD): the typical grain, not the few strong edges
        r = hp[tissue]
        var = (1.4826 * float(np.median(np.abs(r - np.median(r))))) ** 2 - (_highpass_gain() * noise) ** 2
        out["texture"] = math.sqrt(max(var, 0.0)) / float(np.median(f[tissue]))
    std = f.std(axis=0)
    lv = reg["lv"]
    areas = lv.sum(axis=(1, 2)).astype(float)
    ed = 0  # frames are triggered on the R wave
    out["moving"] = float((std > MOVE_THR).mean())
    out["moving_rel"] = float((std > MOVE_THR).sum() / max(areas[ed], 1.0))
    out["area_change"] = float(1.0 - areas.min() / max(areas.max(), 1.0))
    cents = np.array([ndi.center_of_mass(m) if m.any() else (np.nan, np.nan) for m in lv])
    shift = np.sqrt(((cents - cents[ed]) ** 2).sum(axis=1))
    out["centroid"] = float(np.nanmax(shift) / math.sqrt(max(areas[ed], 1.0)))
    out["systole"], out["refill"] = timing(areas)
    out["areas"] = areas.tolist()
    return out


_GAIN: list[float] = []


def _highpass_gain() -> float:
    """Std of the high-pass residual of unit white noise (measured once on a fixed draw)."""
    if not _GAIN:
        n = np.random.default_rng(0).standard_normal((4, 128, 128))
        _GAIN.append(float((n - ndi.gaussian_filter(n, (0, 1.0, 1.0))).std()))
    return _GAIN[0]


def real_series() -> list[tuple[str, Path]]:
    """(name, path) of every real series under ../shared/data/real_cine*/."""
    files = sorted(p for d in sorted(SHARED_DATA.glob("real_cine*")) for p in d.glob("*.npz"))
    return [(p.stem, p) for p in files]


def load_simulator(path: Path):
    """Another copy of ``simulate.py`` (e.g. ``git show REV:src/cinerecon/data/simulate.py``) as a module.

    It is imported inside the ``cinerecon.data`` package, so its relative imports resolve.
    """
    import importlib.util
    import sys

    name = "cinerecon.data._simulate_compared"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def phantom_stats(view: str, seeds: tuple[int, ...], frames: int = 20, sim=None) -> dict:
    """Mean and std over seeds of every statistic of the noise-free phantom in ``view``.

    ``sim``: a simulator module (default: ``cinerecon.data.simulate``).
    """
    render, config = (simulate_phantom, SimConfig) if sim is None else (sim.simulate_phantom, sim.SimConfig)
    runs = [measure(np.abs(render(config(frames=frames, size=GRID, view=view, seed=s)).image), noisy=False)
            for s in seeds]
    return {k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs])))
            for k, *_ in METRICS}


def _fmt(fmt: str, v) -> str:
    if isinstance(v, (list, tuple)):
        return f"{fmt.format(v[0])} ± {fmt.format(v[1])}"
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=6, help="phantom seeds per view (0 .. N-1)")
    ap.add_argument("--frames", type=int, default=20, help="phantom frames")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--before", type=Path, help="an earlier --json output: adds its phantom columns")
    ap.add_argument("--simulator", type=Path,
                    help="measure the phantom of this copy of simulate.py instead of the installed one")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    real = {}
    for name, path in real_series():
        frames, _ = load_real_cine_npz(path)
        real[name] = measure(frames)
    seeds = tuple(range(args.seeds))
    sim = load_simulator(args.simulator) if args.simulator else None
    ph = {v: phantom_stats(v, seeds, args.frames, sim) for v in ("sax", "lax")}
    before = json.loads(args.before.read_text())["phantom"] if args.before else None
    cols = list(real) + ["phantom sax", "phantom lax"]
    if before:
        cols = list(real) + ["before sax", "after sax", "before lax", "after lax"]
    print(f"# phantom realism: real series vs phantom (mean ± std over seeds 0..{args.seeds - 1}), "
          f"{GRID[0]}x{GRID[1]}, 99.5th percentile = 1")
    print("| statistic | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for key, label, fmt in METRICS:
        cells = [_fmt(fmt, real[n][key]) for n in real]
        if before:
            cells += [_fmt(fmt, before["sax"][key]), _fmt(fmt, ph["sax"][key]),
                      _fmt(fmt, before["lax"][key]), _fmt(fmt, ph["lax"][key])]
        else:
            cells += [_fmt(fmt, ph["sax"][key]), _fmt(fmt, ph["lax"][key])]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\nreal noise std (subtracted from spectra and texture): "
          + ", ".join(f"{n} {r['noise']:.4f}" for n, r in real.items()))
    print(f"seconds: {time.perf_counter() - t0:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"real": real, "phantom": ph}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
