"""CG-SENSE with true, our ESPIRiT and BART's ESPIRiT coil maps on the real cine series.

For every real magnitude series under ``../shared/data/real_cine*/`` (or ``--data``), each
seed and each acceleration R, the script makes multi-coil k-space with
``real_cine_to_sample`` (10 coils, 35 dB, 128 x 128, 12 frames; birdcage maps, or
``--geometry surface`` for the anterior / posterior loop arrays of
``cinerecon.data.coil_geometry.surface_array_maps``), undersamples it with the equispaced + 24 ACS
mask and reconstructs it with ``cg_sense`` (its defaults) using

* ``true``: the simulation's maps (unit norm, non-zero over the whole FOV);
* ``ours``: ``espirit_maps(kspace, calib_mask=mask)`` with the defaults of
  :mod:`cinerecon.coils`;
* ``periodic``: the same with ``edges="periodic"`` (ESPIRiT's periodic maps up to the FOV edges);
* ``eigen_crop``: the same with ``support="eigen"``: ESPIRiT's eigenvalue crop (of the
  ``crop_thresh`` subspace) instead of the low-resolution image's SNR decides the support;
* ``old``: the defaults before issue 11 (``thresh=0.02``, ESPIRiT's crop from the same
  subspace, periodic edges, no noise floor);
* ``bart``: ``bart ecalib -m1 -O`` with BART's defaults (calibration <= 24 x 24, kernel 6,
  threshold 0.001, crop 0.8) and exact per-pixel eigenvectors (``-O``, see :func:`bart_maps`).
  BART's ``-t`` applies to squared singular values (its source: ``val[i] / val[0] >
  sqrtf(threshold)``; on BART's own phantom its ``-t 0.001`` gives the support and maps of our
  ``thresh=0.0316``), so its default keeps less of the signal subspace than sigpy's 0.02;
* ``bart_matched``: ``bart ecalib -m1 -O`` with our calibration region (48 x 24 here, readout x
  phase encoding), kernel and crop, and ``-t`` set to the square of the relative singular
  value threshold our maps used (``thresh`` or the noise floor, whichever is higher). BART
  has no separate crop subspace and no edge extrapolation.
* ``bart_iter``: ``bart ecalib -m1`` as shipped: its default eigensolver, 30 orthogonal
  iterations, is not converged on these data (:func:`bart_maps`).

BART gets the k-space our estimate calibrates from: the undersampled k-space averaged over
the frames where each location is sampled. The BART columns are skipped (``n/a``) when no
``bart`` executable is found.

PSNR is on magnitudes over all frames against ``sample.target``, data range = the target's
maximum over the series, on the whole image (``psnr``) and within a body mask (``body``:
the smoothed time-mean target above 8 % of its maximum, holes filled). Maps only matter up
to a per-pixel phase common to all coils, so magnitudes are compared. Where ESPIRiT crops
(no object), the reconstruction is 0 while the target holds noise: that error stays in the
whole-image PSNR, as it would for any method that does not reconstruct the noise.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/coil_maps.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/coil_maps.py --accels 8 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_fill_holes, gaussian_filter

from cinerecon.classical.cg_sense import cg_sense
from cinerecon.coils import CROP, NOISE_THRESH, THRESH, auto_kernel, espirit_maps, find_calib_region, noise_edge
from cinerecon.data.coil_geometry import real_cine_surface_sample
from cinerecon.data.simulate import real_cine_to_sample
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.operators import sampled_mean

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
METHODS = ("true", "ours", "periodic", "eigen_crop", "old", "bart", "bart_matched", "bart_iter")
OLD_DEFAULTS = dict(thresh=0.02, noise_thresh=0.0, crop_thresh=0.02, edges="periodic", support="eigen")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA, help="folder holding real_cine*/ *.npz series")
    p.add_argument("--accels", type=int, nargs="+", default=(4, 8, 10))
    p.add_argument("--acs", type=int, default=24)
    p.add_argument("--seeds", type=int, nargs="+", default=(0,), help="simulation and mask seeds")
    p.add_argument("--coils", type=int, default=10)
    p.add_argument("--snr-db", type=float, default=35.0)
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    p.add_argument("--frames", type=int, default=12, help="frames (fewer when a series has fewer)")
    p.add_argument("--geometry", choices=("birdcage", "surface"), default="birdcage")
    p.add_argument("--bart", default="bart", help="BART executable; the BART columns are skipped if absent")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    return p.parse_args(argv)


def series_files(data: Path) -> list[Path]:
    return sorted(p for d in sorted(data.glob("real_cine*")) if d.is_dir() for p in d.glob("*.npz"))


def make_sample(path: Path, seed: int, args: argparse.Namespace):
    t = int(np.load(path)["frames"].shape[0])
    kw = dict(coils=args.coils, seed=seed, size=tuple(args.size), n_frames=min(args.frames, t))
    if args.geometry == "birdcage":
        return real_cine_to_sample(path, snr_db=args.snr_db, **kw)
    return real_cine_surface_sample(path, snr_db=args.snr_db, **kw)


def body_mask(target: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: smoothed time-mean magnitude above 8 % of its maximum, holes filled."""
    mag = gaussian_filter(target.abs().mean(0).numpy().astype(np.float64), 2.0)
    return torch.from_numpy(binary_fill_holes(mag > 0.08 * mag.max()))


def psnr(recon: torch.Tensor, target: torch.Tensor, where: torch.Tensor | None = None) -> float:
    """Magnitude PSNR over (T, H, W); data range = max |target|; optionally only at ``where`` (H, W)."""
    x, y = recon.abs().double(), target.abs().double()
    err = (x - y) ** 2
    mse = err.mean() if where is None else err[:, where].mean()
    return float(10 * torch.log10(y.max() ** 2 / mse))


def _write_cfl(name: Path, arr: np.ndarray) -> None:
    name.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, arr.shape)) + "\n")
    np.asarray(arr, dtype=np.complex64).ravel(order="F").tofile(name.with_suffix(".cfl"))


def _read_cfl(name: Path) -> np.ndarray:
    dims = [int(d) for d in name.with_suffix(".hdr").read_text().splitlines()[1].split()]
    return np.fromfile(name.with_suffix(".cfl"), dtype=np.complex64).reshape(dims, order="F")


def bart_maps(bart: str, kspace: torch.Tensor, options: list[str], exact_eig: bool = True) -> torch.Tensor:
    """``bart ecalib -m1 [-O] <options>`` of (C, H, W) centred k-space; returns (C, 1, H, W) complex64.

    Our (C, H, W) goes to BART's column-major (X = H, Y = W, Z = 1, coil); its maps come back
    in the same order. BART's centred FFT and ours agree (``bart fft 3`` = sqrt(H W) *
    ``fft2c``), so the maps need no shift, flip, transpose or conjugation: on smooth known
    maps they match to 1 - 1e-5 on average (tests/test_bart_maps.py).

    ``exact_eig`` adds ``-O`` (an undocumented flag of ``ecalib``, in 0.8.00 too): the per-pixel
    eigenvectors then come from LAPACK. Without it BART runs 30 orthogonal (power) iterations
    from the first coil's unit vector, which do not converge where the second eigenvalue of
    M(x) is near the first or the first coil is weak: on the real SAX series at R = 8 that
    leaves 7 % of the body with lambda_2 > 0.9 lambda_1, the maps 0.980 (mean |<S, S_true>|)
    instead of 0.9935 and CG-SENSE 4.0 dB lower (23.26 instead of 27.28 dB); with
    ``bart_matched``'s lower threshold, 5.1 dB (22.74 instead of 27.86 dB). Emulating those 30
    iterations on our own M(x) reproduces BART's maps to 1.0000.
    """
    flags = ["-m1", *(["-O"] if exact_eig else []), *options]
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "k", Path(tmp) / "s"
        _write_cfl(src, kspace.numpy().transpose(1, 2, 0)[:, :, None, :])  # BART: (X, Y, Z, coil)
        subprocess.run([bart, "ecalib", *flags, str(src), str(dst)], check=True, capture_output=True)
        s = _read_cfl(dst)
    s = s.reshape(s.shape[0], s.shape[1], -1)  # (H, W, C)
    return torch.from_numpy(np.ascontiguousarray(s.transpose(2, 0, 1)))[:, None]


def map_threshold(avg: torch.Tensor, region, kernel: int) -> float:
    """Relative singular-value threshold of our default maps: max(THRESH, NOISE_THRESH * noise edge / sigma_max)."""
    cal = avg[:, region.top:region.top + region.height, region.left:region.left + region.width].to(torch.complex128)
    c = cal.shape[0]
    patches = cal.unfold(1, kernel, 1).unfold(2, kernel, 1).permute(1, 2, 0, 3, 4).reshape(-1, c * kernel ** 2)
    sig = torch.linalg.svdvals(patches)
    floor = NOISE_THRESH * noise_edge(sig, patches.shape[0])
    return max(THRESH, floor / float(sig.max()) if floor < float(sig.max()) else 0.0)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    files = series_files(args.data)
    if not files:
        print(f"no real cine series under {args.data}/real_cine*/; nothing to do")
        return 0
    bart = shutil.which(args.bart)
    print(f"# coil maps: {len(files)} series x seeds {list(args.seeds)} x R {list(args.accels)}; "
          f"{args.coils} coils ({args.geometry}), {args.snr_db:g} dB, {args.size[0]}x{args.size[1]}, "
          f"<= {args.frames} frames, ACS {args.acs}; CG-SENSE defaults; "
          f"bart: {bart or 'not found, BART columns skipped'}")
    rows = []
    start = time.time()
    for path in files:
        for seed in args.seeds:
            sample = make_sample(path, seed, args)
            c, t, h, w = sample.kspace.shape
            body = body_mask(sample.target)
            for r in args.accels:
                mask = make_mask(MaskSpec("equispaced_acs", r, args.acs), t, w, seed)
                ku = sample.kspace * mask[0]
                maps = {"true": sample.maps,
                        "ours": espirit_maps(ku, calib_mask=mask),
                        "periodic": espirit_maps(ku, calib_mask=mask, edges="periodic"),
                        "eigen_crop": espirit_maps(ku, calib_mask=mask, support="eigen"),
                        "old": espirit_maps(ku, calib_mask=mask, **OLD_DEFAULTS)}
                if bart:
                    avg = sampled_mean(ku, mask[0].bool().expand(t, h, w), dim=1)
                    region = find_calib_region(mask[0].bool().expand(t, h, w).all(0))
                    kernel = auto_kernel(region)
                    rel = map_threshold(avg, region, kernel)
                    maps["bart"] = bart_maps(bart, avg, [])
                    maps["bart_matched"] = bart_maps(bart, avg, [
                        "-r", f"{region.height}:{region.width}", "-k", f"{kernel}:{kernel}", "-t", f"{rel ** 2:.3g}",
                        "-c", f"{CROP}"])
                    maps["bart_iter"] = bart_maps(bart, avg, [], exact_eig=False)  # BART as shipped
                row = {"series": path.stem, "seed": seed, "R": r}
                for name, m in maps.items():
                    x = cg_sense(ku[None], mask, m[None])[0]
                    row[name] = (psnr(x, sample.target), psnr(x, sample.target, body))
                rows.append(row)
                print(f"{path.stem} seed {seed} R {r}: " + ", ".join(
                    f"{k} {v[0]:.2f}/{v[1]:.2f}" for k, v in row.items() if isinstance(v, tuple)), flush=True)
    print(f"\n{time.time() - start:.0f} s\n")
    print_table(rows)
    return 0


def _cell(row: dict, name: str, i: int) -> str:
    return f"{row[name][i]:.2f}" if name in row else "n/a"


def print_table(rows: list[dict]) -> None:
    """Markdown table: whole-image PSNR (body-mask PSNR) per method, and ours - true."""
    head = ["series", "seed", "R"] + [f"{m}" for m in METHODS] + ["ours - true", "ours - bart"]
    print("PSNR dB, whole image (body mask):\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [row["series"], str(row["seed"]), str(row["R"])]
        cells += [f"{_cell(row, m, 0)} ({_cell(row, m, 1)})" if m in row else "n/a" for m in METHODS]
        d = row["ours"][0] - row["true"][0], row["ours"][1] - row["true"][1]
        cells.append(f"{d[0]:+.2f} ({d[1]:+.2f})")
        if "bart" in row:
            b = [row["ours"][i] - max(row[m][i] for m in METHODS if m.startswith("bart") and m in row)
                 for i in (0, 1)]
            cells.append(f"{b[0]:+.2f} ({b[1]:+.2f})")
        else:
            cells.append("n/a")
        print("| " + " | ".join(cells) + " |")
    for r in sorted({row["R"] for row in rows}):
        sel = [row for row in rows if row["R"] == r]
        gap = [row["ours"][0] - row["true"][0] for row in sel]
        line = f"\nR = {r}: ours - true mean {np.mean(gap):+.2f} dB, worst {min(gap):+.2f} dB over {len(sel)} cases"
        if all("bart" in row for row in sel):
            ahead = [row["ours"][0] - max(row[m][0] for m in METHODS if m.startswith("bart")) for row in sel]
            line += f"; ours - best BART worst {min(ahead):+.2f} dB"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
