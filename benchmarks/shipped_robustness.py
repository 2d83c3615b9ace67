"""The shipped CRUNet-MR off its training distribution: matrix size, coils, noise, ACS width.

On held-out real series (default: the shipped model's held-out dev series), one condition
at a time is moved away from the benchmark of ``real_anatomy.py`` (128 x 128, 10 coils,
35 dB, R = 8 with 24 ACS lines, true maps): non-square, odd and larger matrices, 4 and 20 coils,
25 and 45 dB noise, 16 ACS lines (CMRxRecon2024), R = 10 with 16 ACS lines, maps that are not
unit-norm, k-space in other units (x 1e4, x 1e-4), R = 4 and 24, compact surface-loop arrays
(strong unfolding) instead of birdcage maps, and random variable-density lines drawn anew in
every frame (k-t sampling like CMRxRecon2024's, a mask kind absent from training), and the
128 x 128 series at the centre of CMRxRecon-sized fields (448 x 204 SAX, 512 x 246 LAX: the heart
keeps its pixel size in a large zero background, as with 2x readout oversampling), and
golden-angle pseudo-radial spokes around a 16 x 16 block at R = 8 and 10 (like CMRxRecon2024's
ktRadial; a 2-D pattern absent from training). CG-SENSE, L+S
and the shipped model (or ``--checkpoint``) are scored with the global protocol (PSNR, SSIM
on magnitudes; over the whole field, whose large background lifts every method's PSNR, so compare
methods within a row; the phase and birdcage maps of a field condition span the field, so they
differ from the reference's across the heart too). The model was trained on 64 x 64 crops of 12 frames, 8-16 coils, 25-42 dB.

    .venv/bin/python benchmarks/shipped_robustness.py --out runs/shipped_robustness
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cinerecon.classical import CLASSICAL
from cinerecon.data.realistic import find_series, load_series
from cinerecon.data.coil_geometry import real_cine_surface_sample
from cinerecon.data.sample import CineSample
from cinerecon.data.simulate import real_cine_to_sample
from cinerecon.errors import CineReconError
from cinerecon.evaluate.metrics import series_metrics
from cinerecon.masks import MaskSpec, make_mask


@dataclass(frozen=True)
class Condition:
    """One departure from the reference setting (128 x 128, 10 coils, 35 dB, R = 8, 24 ACS)."""

    name: str
    size: tuple[int, int] = (128, 128)
    coils: int = 10
    snr_db: float = 35.0
    accel: int = 8
    acs: int = 24
    maps_scale: float = 1.0  # maps handed to the methods are this times the unit-norm true maps
    data_scale: float = 1.0  # k-space (and so the target) times this: the scanner's arbitrary units
    geometry: str = "birdcage"  # or "surface": anterior / posterior loop arrays (strong unfolding)
    mask_kind: str = "equispaced_acs"  # a cinerecon.masks kind; "random_acs" / "kt_radial" change every frame
    field: tuple[int, int] | None = None  # the size-(H, W) series at the centre of this larger field (birdcage only)


CONDITIONS = (
    Condition("reference"),
    Condition("192 x 160 (non-square)", size=(192, 160)),
    Condition("96 x 96", size=(96, 96)),
    Condition("127 x 111 (odd sizes)", size=(127, 111)),
    Condition("4 coils", coils=4),
    Condition("20 coils", coils=20),
    Condition("25 dB noise", snr_db=25.0),
    Condition("45 dB noise", snr_db=45.0),
    Condition("16 ACS lines", acs=16),
    Condition("R = 10, 16 ACS lines", accel=10, acs=16),
    Condition("maps x 2 (not unit-norm)", maps_scale=2.0),
    Condition("maps x 0.5 (not unit-norm)", maps_scale=0.5),
    Condition("k-space x 1e4", data_scale=1e4),
    Condition("k-space x 1e-4", data_scale=1e-4),
    Condition("R = 4", accel=4),
    Condition("R = 24", accel=24),
    Condition("surface arrays", geometry="surface"),
    Condition("surface arrays, R = 10", geometry="surface", accel=10),
    Condition("k-t random lines, 24 ACS", mask_kind="random_acs"),
    Condition("k-t random lines, 16 ACS", mask_kind="random_acs", acs=16),
    Condition("k-t random lines, R = 10, 16 ACS", mask_kind="random_acs", accel=10, acs=16),
    Condition("CMRxRecon SAX field 448 x 204", field=(448, 204)),
    Condition("CMRxRecon LAX field 512 x 246, R = 10", field=(512, 246), accel=10),
    Condition("k-t radial, 16 x 16 block", mask_kind="kt_radial", acs=16),
    Condition("k-t radial, R = 10, 16 x 16 block", mask_kind="kt_radial", accel=10, acs=16),
)
METHODS = ("cg_sense", "lplus_s", "crunet")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--series", nargs="+", default=["../shared/data/real_cine_extra/rat_sax_8fr.npz"],
                   help="real .npz series or folders of them (default: the held-out dev series)")
    p.add_argument("--checkpoint", type=Path, default=None, help="a checkpoint instead of the shipped CRUNet-MR")
    p.add_argument("--out", type=Path, required=True, help="output folder (results.md, results.json)")
    p.add_argument("--frames", type=int, default=12, help="frames, at most the series' own")
    p.add_argument("--seed", type=int, default=0, help="seed of phase, maps, noise and masks")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--conditions", nargs="+", default=None, metavar="TEXT",
                   help="only the conditions whose name contains one of these (default: all)")
    args = p.parse_args(argv)
    if args.conditions and not selected(args.conditions):
        p.error(f"--conditions {args.conditions} matches none of {[c.name for c in CONDITIONS]}")
    return args


def selected(texts: list[str] | None) -> tuple[Condition, ...]:
    """The conditions whose name contains one of ``texts`` (all when ``texts`` is empty or None)."""
    return tuple(c for c in CONDITIONS if not texts or any(t in c.name for t in texts))


def make_sample(path: Path, cond: Condition, seed: int, frames: int) -> CineSample:
    """The series as multi-coil k-space under ``cond``.

    Args:
        path: a real magnitude series (``.npz``).
        cond: size, coils, noise and coil geometry (``birdcage`` maps of
            :func:`real_cine_to_sample`, or ``surface`` arrays of :func:`real_cine_surface_sample`).
        seed: seed of phase, maps and noise.
        frames: T, picked evenly over the cycle.

    Returns:
        CineSample with kspace (C, T, H, W) fully sampled, maps (C, 1, H, W), target (T, H, W).
    """
    if cond.geometry not in ("birdcage", "surface"):
        raise CineReconError(f"condition {cond.name!r}: geometry must be 'birdcage' or 'surface', got {cond.geometry!r}")
    if cond.geometry == "birdcage":
        return real_cine_to_sample(path, coils=cond.coils, snr_db=cond.snr_db, seed=seed, size=cond.size,
                                   n_frames=frames, field=cond.field)
    if cond.field is not None:
        raise CineReconError(f"condition {cond.name!r}: a larger field is offered with birdcage maps only")
    return real_cine_surface_sample(path, coils=cond.coils, snr_db=cond.snr_db, seed=seed, size=cond.size,
                                    n_frames=frames)


def run(args: argparse.Namespace) -> list[dict]:
    from cinerecon.models import load_pretrained
    from cinerecon.train.checkpoints import load_model

    model = load_model(args.checkpoint, "cpu")[0].eval() if args.checkpoint else load_pretrained("crunet")
    files = [p for s in args.series for p in (find_series(s) if Path(s).is_dir() else [Path(s)])]
    rows = []
    for i, path in enumerate(files):
        t0 = load_series(path).shape[0]
        for cond in selected(args.conditions):
            sample = make_sample(path, cond, args.seed + i, min(args.frames, t0))
            t, w = sample.target.shape[0], sample.target.shape[-1]
            mask = make_mask(MaskSpec(cond.mask_kind, cond.accel, cond.acs), t, w, seed=args.seed * 1000 + i,
                             height=sample.target.shape[-2])
            kb, mb, sb = (cond.data_scale * sample.kspace * mask)[None], mask[None], cond.maps_scale * sample.maps[None]
            # S^H F^-1 k of the full data with the maps and scale given
            target = cond.data_scale * cond.maps_scale * sample.target
            for method in METHODS:
                with torch.no_grad():
                    rec = model(kb, mb, sb) if method == "crunet" else CLASSICAL[method](kb, mb, sb)
                m = series_metrics(rec[0], target, "global", with_haarpsi=False)
                rows.append({"series": path.stem, "condition": cond.name, "method": method,
                             "psnr": float(m.psnr), "ssim": float(m.ssim), **{"setting": asdict(cond)}})
                print(f"{path.stem:>14} {cond.name:>24} {method:>9}: PSNR {rows[-1]['psnr']:6.2f} "
                      f"SSIM {rows[-1]['ssim']:.4f}", flush=True)
    return rows


def summary(rows: list[dict]) -> str:
    """Markdown table: mean PSNR / SSIM per condition and method, and CRUNet-MR minus L+S."""
    conds = list(dict.fromkeys(r["condition"] for r in rows))
    n = len({r["series"] for r in rows})
    lines = [f"Mean over {n} series; PSNR dB / SSIM.", "",
             "| condition | CG-SENSE | L+S | CRUNet-MR | CRUNet-MR - L+S (dB) |", "|---|---|---|---|---|"]
    for c in conds:
        mean = {}
        for meth in METHODS:
            sel = [r for r in rows if r["condition"] == c and r["method"] == meth]
            mean[meth] = (sum(r["psnr"] for r in sel) / len(sel), sum(r["ssim"] for r in sel) / len(sel))
        cells = [f"{mean[m][0]:.2f} / {mean[m][1]:.3f}" for m in METHODS]
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {mean['crunet'][0] - mean['lplus_s'][0]:+.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = run(args)
    except (CineReconError, OSError) as e:
        print(f"shipped_robustness.py: error: {e}", file=sys.stderr)
        return 2
    text = summary(rows)
    (args.out / "results.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
