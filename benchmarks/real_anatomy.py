"""Real-anatomy benchmark: the shipped CRUNet-MR against classical methods on held-out real series.

Every series (default: the held-out dev series of the shipped model's training run, see
``src/cinerecon/assets/crunet_real.md``) becomes 10-coil k-space as in issue 11: magnitude
resized to 128 x 128, ``min(12, T)`` frames over the cycle, a smooth synthetic phase, birdcage
coil maps (the true maps), 35 dB noise. Masks: equispaced R = 4, 8, 10, 24 with 24 ACS lines
(CMRxRecon2023), time-varying R = 8 without ACS, and R = 8 k-t random: variable-density
random lines drawn anew in every frame around 24 ACS lines (k-t sampling like CMRxRecon2024's
ktGaussian), and R = 8 k-t radial: pseudo-radial spokes turned by the golden angle every frame
around a 16 x 16 central block (like CMRxRecon2024's ktRadial; no mask of this kind was in the
shipped model's training). Maps: the true ones, and estimated ones (ESPIRiT from the ACS or
the radial block; from the time-averaged k-space for masks without ACS). Methods:
zero-filled, view sharing, CG-SENSE, GRAPPA (regular ACS masks only), L+S and the shipped CRUNet-MR
(``load_pretrained("crunet")``) or any checkpoint given with ``--checkpoint``.

Scores (global protocol: magnitude, data range = maximum of the target series): PSNR, SSIM,
PSNR in the dynamic region (top 10 % temporal standard deviation) and seconds per series.
Writes ``results.md``, ``results.json`` and ``figure.png`` (frame, x4 error map and x-t profile
of every method at R = 8, or ``--figure-mask``, with true maps) into ``--out``.

    .venv/bin/python benchmarks/real_anatomy.py --out runs/real_anatomy
    .venv/bin/python benchmarks/real_anatomy.py --series ../shared/data/real_cine --out runs/ra_seen  # seen series
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cinerecon.classical import CLASSICAL
from cinerecon.coils import espirit_maps, maps_from_time_average
from cinerecon.data.realistic import find_series, load_series
from cinerecon.data.simulate import real_cine_to_sample
from cinerecon.errors import CineReconError
from cinerecon.evaluate.dynamic import region_metrics
from cinerecon.evaluate.metrics import series_metrics
from cinerecon.masks import MaskSpec, make_mask

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SERIES = [ROOT.parent / "shared" / "data" / "real_cine_extra" / "rat_sax_8fr.npz"]
MASKS = {
    "R4": MaskSpec("equispaced_acs", 4, 24),
    "R8": MaskSpec("equispaced_acs", 8, 24),
    "R10": MaskSpec("equispaced_acs", 10, 24),
    "R24": MaskSpec("equispaced_acs", 24, 24),
    "R8 time-varying": MaskSpec("time_varying", 8, 0),
    "R8 k-t random": MaskSpec("random_acs", 8, 24),  # new variable-density lines every frame, 24 ACS
    "R8 k-t radial": MaskSpec("kt_radial", 8, 16),  # golden-angle pseudo-radial spokes, 16 x 16 block
}
CLASSICAL_METHODS = ("zero_filled", "view_sharing", "cg_sense", "grappa", "lplus_s")
LABELS = {"zero_filled": "zero-filled", "view_sharing": "view sharing", "cg_sense": "CG-SENSE",
          "grappa": "GRAPPA", "lplus_s": "L+S", "crunet": "CRUNet-MR"}


@dataclass(frozen=True)
class Row:
    """One (series, mask, maps, method) result."""

    series: str
    mask: str
    maps: str
    method: str
    psnr: float
    ssim: float
    psnr_dynamic: float
    seconds: float


def make_sample(path: Path, size: int, frames: int, coils: int, seed: int):
    t0 = load_series(path).shape[0]
    return real_cine_to_sample(path, coils=coils, snr_db=35.0, seed=seed, size=(size, size), n_frames=min(frames, t0))


def estimate_maps(kspace: torch.Tensor, mask: torch.Tensor, spec: MaskSpec) -> torch.Tensor:
    """(C, 1, H, W) maps from (C, T, H, W) undersampled k-space (ACS, or the time average)."""
    if spec.kind == "kt_radial":  # the central block sampled in every frame, found in the mask
        return espirit_maps(kspace, acs=None, calib_mask=mask)
    if spec.acs > 0 and spec.kind != "time_varying":
        return espirit_maps(kspace, acs=spec.acs, calib_mask=mask)
    return maps_from_time_average(kspace, mask)


def run(args: argparse.Namespace) -> list[Row]:
    from cinerecon.models import load_pretrained
    from cinerecon.train.checkpoints import load_model

    model = load_model(args.checkpoint, "cpu")[0].eval() if args.checkpoint else load_pretrained("crunet")
    files = [p for s in args.series for p in (find_series(s) if Path(s).is_dir() else [Path(s)])]
    methods = [m for m in CLASSICAL_METHODS if m not in args.skip] + ["crunet"]
    rows: list[Row] = []
    figure_inputs = {}
    for i, path in enumerate(files):
        sample = make_sample(path, args.size, args.frames, args.coils, seed=args.seed + i)
        target = sample.target
        for j, (mname, spec) in enumerate(MASKS.items()):
            if args.masks and mname not in args.masks:
                continue
            mask = make_mask(spec, target.shape[0], target.shape[-1], seed=args.seed * 1000 + 10 * i + j,
                             height=target.shape[-2])
            k = sample.kspace * mask
            est = estimate_maps(k, mask, spec)
            for maps_name, maps in (("true", sample.maps), ("estimated", est)):
                kb, mb, sb = k[None], mask[None], maps[None]
                for method in methods:
                    if method == "grappa" and (spec.acs == 0 or spec.kind in ("random_acs", "kt_radial")):  # lines
                        continue
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        rec = model(kb, mb, sb) if method == "crunet" else CLASSICAL[method](kb, mb, sb)
                    sec = time.perf_counter() - t0
                    rec = rec[0]
                    sm = series_metrics(rec, target, "global", with_haarpsi=False)
                    dyn = region_metrics(rec, target, "global")
                    rows.append(Row(path.stem, mname, maps_name, method, float(sm.psnr), float(sm.ssim),
                                    float(dyn.psnr_dynamic), sec))
                    print(f"{path.stem:>16} {mname:>16} {maps_name:>9} {LABELS[method]:>13}: "
                          f"PSNR {rows[-1].psnr:6.2f} SSIM {rows[-1].ssim:.4f} dyn {rows[-1].psnr_dynamic:6.2f} "
                          f"{sec:6.1f} s", flush=True)
                    if i == 0 and mname == args.figure_mask and maps_name == "true":
                        figure_inputs[method] = rec
        if i == 0 and figure_inputs:
            figure(target, figure_inputs, Path(args.out) / "figure.png", f"{path.stem}, {args.figure_mask}, true maps")
    return rows


def summary(rows: list[Row]) -> str:
    """Markdown: mean PSNR / SSIM / dynamic PSNR over series per (mask, maps, method)."""
    keys = sorted({(r.mask, r.maps) for r in rows}, key=lambda k: (list(MASKS).index(k[0]), k[1] != "true"))
    methods = [m for m in LABELS if any(r.method == m for r in rows)]
    n_series = len({r.series for r in rows})
    out = [f"Mean over {n_series} series; PSNR dB / SSIM (dynamic-region PSNR); best PSNR in bold.\n",
           "| mask | maps | " + " | ".join(LABELS[m] for m in methods) + " |",
           "|---|---|" + "---|" * len(methods)]
    for mask, maps in keys:
        cells = {}
        for m in methods:
            sel = [r for r in rows if (r.mask, r.maps, r.method) == (mask, maps, m)]
            if sel:
                cells[m] = (np.mean([r.psnr for r in sel]), np.mean([r.ssim for r in sel]),
                            np.mean([r.psnr_dynamic for r in sel]))
        best = max(cells, key=lambda m: cells[m][0])
        row = []
        for m in methods:
            if m not in cells:
                row.append("—")
                continue
            p, s, d = cells[m]
            text = f"{p:.2f} / {s:.3f} ({d:.2f})"
            row.append(f"**{text}**" if m == best else text)
        out.append(f"| {mask} | {maps} | " + " | ".join(row) + " |")
    secs = {m: np.mean([r.seconds for r in rows if r.method == m]) for m in methods}
    out.append("\nSeconds per series (mean): " + ", ".join(f"{LABELS[m]} {secs[m]:.1f}" for m in methods))
    return "\n".join(out) + "\n"


def figure(target: torch.Tensor, recons: dict[str, torch.Tensor], path: Path, title: str) -> None:
    """Frame, |error| x4 and x-t profile through the image centre for every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = target.abs()
    t = int(torch.argmax((y - y.mean(dim=0)).abs().sum(dim=(-2, -1))))  # the frame farthest from the mean
    row = int(torch.argmax(y.std(dim=0).sum(dim=1)))
    vmax = float(y.max())
    cols = ["target"] + list(recons)
    fig, ax = plt.subplots(3, len(cols), figsize=(1.9 * len(cols), 6.0))
    for c, name in enumerate(cols):
        x = y if name == "target" else recons[name].abs()
        ax[0, c].imshow(x[t].numpy(), cmap="gray", vmin=0, vmax=vmax)
        ax[0, c].set_title(LABELS.get(name, name), fontsize=8)
        if name != "target":
            ax[1, c].imshow(((x[t] - y[t]).abs() * 4).numpy(), cmap="gray", vmin=0, vmax=vmax)
        ax[2, c].imshow(x[:, row, :].numpy(), cmap="gray", vmin=0, vmax=vmax, aspect="auto")
    ax[1, 0].text(0.5, 0.5, "|error| x4", ha="center", va="center", fontsize=8)
    ax[2, 0].set_ylabel(f"x-t, row {row}", fontsize=7)
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".part")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--series", nargs="+", default=[str(s) for s in DEFAULT_SERIES],
                   help="real .npz series or folders of them (default: the held-out dev series)")
    p.add_argument("--checkpoint", help="a checkpoint instead of the shipped CRUNet-MR")
    p.add_argument("--out", required=True, help="output folder (results.md, results.json, figure.png)")
    p.add_argument("--size", type=int, default=128, help="image side (default: %(default)s)")
    p.add_argument("--frames", type=int, default=12, help="frames, at most the series' own (default: %(default)s)")
    p.add_argument("--coils", type=int, default=10, help="coils (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of phase, maps, noise and masks (default: %(default)s)")
    p.add_argument("--masks", nargs="*", choices=list(MASKS), help="only these masks (default: all)")
    p.add_argument("--skip", nargs="*", default=[], choices=list(CLASSICAL_METHODS), help="classical methods to skip")
    p.add_argument("--figure-mask", default="R8", choices=list(MASKS),
                   help="the mask of figure.png (first series, true maps)")
    p.add_argument("--threads", type=int, help="torch threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        rows = run(args)
    except CineReconError as e:
        print(f"real_anatomy: error: {e}", file=sys.stderr)
        return 2
    text = summary(rows)
    print(text)
    (out / "results.md").write_text(f"`{' '.join(['benchmarks/real_anatomy.py'] + (argv or sys.argv[1:]))}`\n\n{text}")
    (out / "results.json").write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
