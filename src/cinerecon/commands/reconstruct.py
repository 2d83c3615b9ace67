"""``cinerecon reconstruct INPUT --method M --out DIR``: reconstruct our HDF5 slices.

Methods are the classical ones (``zero_filled``, ``cg_sense``, ``grappa``, ``lplus_s``)
or a learned model loaded from ``--checkpoint`` (ours or the authors' CRUNet-MR
``.pth``). For each input slice the reconstruction is written as our HDF5 record
(``recon`` + metadata), NIfTI and an animated GIF (``--formats``) under ``--out``,
named ``<input stem>_<method>_<mask key>``. Existing outputs are never replaced
without ``--overwrite``; all targets are checked before any work starts.
"""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..data.export import (DEFAULT_FPS, FORMATS, ReconRecord, check_writable, output_paths, require_mp4,
                           write_outputs)
from ..data.sample import CineSample
from ..data.transforms import mask_key
from ..errors import ConfigError, DataError, WeightsNotFoundError

STORED = "none"


def normalise_accel(accel: str | None) -> str | None:
    """Mask key from ``--accel``: ``'8'``, ``'R8'``, ``'r08'`` -> ``'R08'``.

    ``'none'`` / None -> None (k-space as stored); other keys pass through.
    """
    if accel is None or accel.lower() in (STORED, "stored", ""):
        return None
    m = re.fullmatch(r"[Rr]?(\d+)", accel)
    return mask_key(int(m.group(1))) if m else accel


def input_files(path: Path, exclude: Path | None = None) -> list[Path]:
    """Our HDF5 slice files: ``path`` itself or every ``*.h5`` below it (sorted; ``exclude`` folder skipped)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or directory")
    ex = exclude.resolve() if exclude is not None else None
    files = [p for p in sorted(path.rglob("*.h5"))
             if ex is None or not p.resolve().is_relative_to(ex)]
    if not files:
        raise DataError(f"{path}: no .h5 files found")
    return files


@dataclass
class Reconstructor:
    """A reconstruction method bound to its parameters.

    Attributes:
        name: method name written to the outputs.
        fn: ``fn(kspace (B,C,T,H,W), mask, maps (B,C,1,H,W)) -> (B,T,H,W)``.
        checkpoint: path of the weights for learned methods.
        device: where learned models run.
    """

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    checkpoint: str = ""
    device: str = "cpu"

    def __call__(self, sample: CineSample) -> torch.Tensor:
        dev = torch.device(self.device)
        with torch.no_grad():
            out = self.fn(sample.kspace[None].to(dev), sample.mask[None].to(dev), sample.maps[None].to(dev))
        return out[0].detach().cpu().to(torch.complex64)


# module and function of each classical method (interfaces.md), used when the full table cannot be built
_CLASSICAL_FILES = {"zero_filled": ("zero_filled", "zero_filled"), "cg_sense": ("cg_sense", "cg_sense"),
                    "grappa": ("grappa", "grappa"), "lplus_s": ("lowrank_sparse", "lplus_s")}


def _classical_methods() -> dict[str, Callable]:
    """``cinerecon.classical.CLASSICAL``; if some method module is missing, the ones that import."""
    try:
        from ..classical import CLASSICAL

        return dict(CLASSICAL)
    except ImportError:
        import importlib

        out = {}
        for name, (mod, fn) in _CLASSICAL_FILES.items():
            try:
                out[name] = getattr(importlib.import_module(f"cinerecon.classical.{mod}"), fn)
            except (ImportError, AttributeError):
                continue
        return out


def build_reconstructor(method: str, checkpoint: Path | None = None, device: str = "cpu") -> Reconstructor:
    """Resolve ``method`` to a classical function or a model loaded from ``checkpoint``."""
    classical = _classical_methods()
    if method in classical:
        if checkpoint is not None:
            raise ConfigError(f"--checkpoint is only used by learned models, not by {method!r}")
        return Reconstructor(method, classical[method])
    if checkpoint is None:
        known = sorted(classical) or ["zero_filled", "cg_sense", "grappa", "lplus_s"]
        raise ConfigError(f"method {method!r} is not a classical method ({known}); a learned model needs "
                          "--checkpoint PATH")
    if not checkpoint.is_file():
        raise WeightsNotFoundError(f"{checkpoint}: checkpoint not found (weights are never downloaded; "
                                   "pass a local file)")
    from ..train.checkpoints import load_model

    model, cfg = load_model(checkpoint, device)
    trained = _model_name(cfg)
    if method not in ("model", trained) and trained is not None:
        raise ConfigError(f"--method {method!r} does not match the checkpoint {checkpoint}, which holds a "
                          f"{trained!r} model (use --method {trained} or --method model)")
    model.eval()
    return Reconstructor(trained or method, model, str(checkpoint), device)


def _model_name(cfg: object) -> str | None:
    if isinstance(cfg, dict):
        m = cfg.get("model")
        if isinstance(m, dict):
            return m.get("name")
        if isinstance(m, str):
            return m
        return cfg.get("name") if isinstance(cfg.get("name"), str) else None
    return None


def _stem(out: Path, root: Path, f: Path, method: str, mask_key: str | None) -> Path:
    rel = f.relative_to(root).parent if root.is_dir() else Path()
    return out / rel / f"{f.stem}_{method}_{mask_key or 'stored'}"


def reconstruct_files(inputs: list[Path], root: Path, out: Path, rec: Reconstructor, mask_key: str | None,
                      formats: list[str], no_acs_maps: bool = False, fps: float = DEFAULT_FPS,
                      overwrite: bool = False, verbose: bool = True) -> list[dict[str, Path]]:
    """Reconstruct each file; returns the written paths per file."""
    from ..data.h5 import h5_info, read_h5

    if "mp4" in formats:
        require_mp4()
    as_stored = set()
    if mask_key is not None:  # fail before any work when a file lacks the mask
        for f in inputs:
            info = h5_info(f)
            if mask_key not in info.mask_keys:
                raise DataError(f"{f}: missing mask 'masks/{mask_key}' (found {list(info.mask_keys)}); use "
                                "--accel none for the k-space as stored")
            if not info.fully_sampled:  # undersampled-only data: the key names the mask it was acquired with
                as_stored.add(f)
    stems = [_stem(out, root, f, rec.name, mask_key) for f in inputs]
    check_writable([p for s in stems for p in output_paths(s, formats).values()], overwrite)
    written = []
    for f, stem in zip(inputs, stems):
        sample = read_h5(f, mask_key=None if f in as_stored else mask_key)
        if no_acs_maps:
            from ..coils import maps_from_time_average

            sample = CineSample(sample.kspace, sample.mask, maps_from_time_average(sample.kspace, sample.mask),
                                sample.target, sample.meta)
        t0 = time.perf_counter()
        image = rec(sample)
        seconds = time.perf_counter() - t0
        if tuple(image.shape) != tuple(sample.kspace.shape[1:]):
            raise DataError(f"{f}: method {rec.name!r} returned shape {tuple(image.shape)}, expected (T, H, W) = "
                            f"{tuple(sample.kspace.shape[1:])}")
        m = sample.meta
        record = ReconRecord(image, name=m.name, method=rec.name, source=str(f), mask_key=mask_key or "",
                             accel=float(m.accel), acs=int(m.acs), checkpoint=rec.checkpoint, seconds=seconds,
                             view=m.view, pixel_spacing=m.pixel_spacing, frame_times_ms=m.frame_times_ms)
        paths = write_outputs(stem, record, formats, fps=fps, overwrite=overwrite)
        if verbose:
            print(f"{m.name}: {rec.name} ({mask_key or 'as stored'}, R={m.accel:g}) {seconds:.2f} s -> "
                  + ", ".join(str(p) for p in paths.values()))
        written.append(paths)
    return written


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("reconstruct", help="reconstruct cinerecon HDF5 slices (classical or trained model)")
    p.add_argument("input", type=Path, help="one of our .h5 files or a folder of them")
    p.add_argument("--method", required=True,
                   help="zero_filled | cg_sense | grappa | lplus_s | a model name (with --checkpoint) | model")
    p.add_argument("--checkpoint", type=Path, help="our checkpoint or the authors' CRUNet-MR .pth")
    p.add_argument("--accel", default=STORED, help="mask key to apply (R04, R08, R10, R24, ...) or 'none' "
                   "for the k-space as stored (default)")
    p.add_argument("--no-acs-maps", action="store_true",
                   help="estimate coil maps from the time-averaged centre instead of using the stored maps")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--formats", nargs="+", default=["h5", "nifti", "gif"], choices=FORMATS)
    p.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frames per second of GIF/MP4")
    p.add_argument("--device", default="cpu", help="device of learned models (cpu, cuda, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    rec = build_reconstructor(args.method, args.checkpoint, args.device)
    files = input_files(args.input, exclude=args.out)
    reconstruct_files(files, args.input, args.out, rec, normalise_accel(args.accel), list(args.formats),
                      args.no_acs_maps, args.fps, args.overwrite, verbose=not args.quiet)
    return 0
