"""``cinerecon reconstruct INPUT --method M --accel R --out DIR``: reconstruct our HDF5 slices.

Methods are the classical ones (``zero_filled``, ``cg_sense``, ``grappa``, ``lplus_s``)
or a learned model loaded from ``--checkpoint`` (ours, or the authors' CRUNet-MR, CRNN-MRI
``crnn_mri_d5_c5.pth`` or PromptMR checkpoint). For each input slice the reconstruction is written as our HDF5 record
(``recon`` + metadata), NIfTI and an animated GIF (``--formats``) under ``--out``,
named ``<input stem>_<method>_<mask key>``. Fully sampled inputs need ``--accel``
(a stored mask such as ``R08``, or ``none`` to reconstruct them fully sampled on
purpose); undersampled-only inputs are reconstructed as acquired. Existing outputs
are never replaced without ``--overwrite``; all targets are checked before any work
starts. A reconstruction with NaN or Inf values stops the run, naming the slice and
checkpoint.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..data.export import (DEFAULT_FPS, FORMATS, MIN_MOVIE_SIDE, ReconRecord, check_fps, check_scale, output_paths,
                           require_mp4, write_outputs)
from ..data.sample import CineSample
from ..data.transforms import parse_mask_key
from ..errors import CineReconError, ConfigError, DataError, WeightsNotFoundError
from ..files import check_can_write, check_writable, inside, safe_name
from ..masks import regular_lines, varies_along_readout
from . import check_device

STORED = "none"
NOT_GIVEN = None


def normalise_accel(accel: str | None) -> str | None:
    """Mask key from ``--accel``: ``'8'``, ``'R8'``, ``'r08'`` -> ``'R08'``; ``'R8_kt...'`` -> ``'R08_kt...'``.

    The CMRxRecon2024 names are aliases of our keys: ``'ktGaussian8'`` -> ``'R08_ktGaussian'``,
    ``'Uniform8'`` -> ``'R08'``, ``'ktRadial8'`` -> ``'R08_ktRadial'``. ``'none'`` / None -> None
    (k-space as stored); other keys pass through.
    """
    if accel is None or accel.lower() in (STORED, "stored", ""):
        return None
    return parse_mask_key(accel)


def nearest_mask_key(key: str, keys: list[str] | tuple[str, ...]) -> str:
    """Say which of ``keys`` (stored masks) is nearest to the missing ``key``: the same R first, then the nearest R."""
    from ..data.cmrxrecon import challenge_name

    def r_of(k: str) -> int | None:
        m = re.match(r"R(\d+)", k)
        return int(m.group(1)) if m else None

    def spelled(k: str) -> str:
        name = challenge_name(k)
        return f"--accel {k}" + (f" (or {name})" if name else "")

    r = r_of(key)
    same = [k for k in keys if r is not None and r_of(k) == r]
    if len(same) > 1:
        return f"{len(same)} masks have R = {r} ({', '.join(same)}): give one of them, e.g. {spelled(same[0])}"
    ranked = same or (sorted((k for k in keys if r_of(k) is not None), key=lambda k: (abs(r_of(k) - r), len(k)))
                      if r is not None else [])
    return f"nearest stored mask: {spelled(ranked[0])}" if ranked else ""


def input_files(path: Path, exclude: Path | None = None) -> list[Path]:
    """Our HDF5 slice files: ``path`` itself or every ``*.h5`` below it (sorted; hidden files and the
    ``exclude`` folder skipped)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or directory")
    ex = exclude.resolve() if exclude is not None else None
    from ..data.h5 import h5_files

    files = [p for p in h5_files(path) if ex is None or not p.resolve().is_relative_to(ex)]
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
        precision: ``"fp32"`` or ``"bf16"`` (autocast of the model; see :mod:`cinerecon.runtime`).
    """

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    checkpoint: str = ""
    device: str = "cpu"
    precision: str = "fp32"
    slice_peak_bytes: dict = field(default_factory=dict, repr=False)  # (C, T, H, W) -> measured peak of one slice
    fit_checked: dict = field(default_factory=dict, repr=False)  # (C, T, H, W) -> largest batch that passed
    fit_checked_bytes: int = field(default=0, repr=False)  # largest estimate that passed (heap it may leave)

    def __call__(self, sample: CineSample) -> torch.Tensor:
        return self.batch([sample])[0]

    def weight_set(self, sample: CineSample) -> str:
        """``"main"`` or ``"k-t"``: the weight set of a two-set model that reconstructs ``sample``
        (:meth:`~cinerecon.models.unrolled.Unrolled.main_weight_items`), ``""`` for other methods."""
        if getattr(self.fn, "uncalibrated_cascades", None) is None:
            return ""
        main = self.fn.main_weight_items(sample.kspace[None], sample.mask[None].to(sample.kspace.real.dtype))
        return "main" if main[0] else "k-t"

    def _check_cpu_fit(self, samples: list[CineSample], batch_size: int | None) -> list[torch.Tensor]:
        """On the CPU, refuse a batch that would not fit the available memory (before running it).

        The first slice of each shape runs alone while the rise of the peak RSS is measured;
        the batch is refused when that many slices would need more than 90 % of what is available:
        MemAvailable plus the freed heap this process holds for reuse. The tuned allocator
        (:func:`cinerecon.runtime.tune_cpu_allocator`) keeps the memory of earlier batches in the
        heap, which MemAvailable does not count, so without it a later batch of a size that ran
        before would be refused after outputs were written. Hence each shape is checked before its
        first batch runs (before any of its outputs exist) and again only for a larger batch; the
        credit for the heap is its free bytes (``mallinfo2``), capped by the largest estimate that
        passed here. Where the heap cannot be read, only the first batch of each shape is checked.
        Returns the outputs already computed (the measured slice, or nothing).
        """
        from ..runtime import available_memory_bytes, measure_peak_rss, reusable_heap_bytes

        key, n, done = tuple(samples[0].kspace.shape), len(samples), []
        if key not in self.slice_peak_bytes:
            out, peak = measure_peak_rss(lambda: self._run(samples[:1]))
            done = out
            self.slice_peak_bytes[key] = peak
        peak, passed = self.slice_peak_bytes[key], self.fit_checked.get(key, 0)
        if n <= passed:  # this shape already passed with at least as many slices
            return done
        heap = reusable_heap_bytes() if self.fit_checked_bytes else 0
        if passed and heap is None:  # heap unknown: the first batch of each shape was the check
            return done
        avail = available_memory_bytes()
        if avail is not None and heap:  # what earlier batches left in the heap is ours to reuse
            avail += min(heap, self.fit_checked_bytes)
        if peak and avail and peak * n > 0.9 * avail:
            fits = max(1, int(0.9 * avail // peak))
            raise ConfigError(f"--batch-size {batch_size or n}: a batch of {n} slice(s) of "
                              f"(C, T, H, W) = {key} needs about {peak * n / 2**30:.1f} GiB (one slice "
                              f"measured {peak / 2**30:.2f} GiB) and {avail / 2**30:.1f} GiB are available; use "
                              f"--batch-size {fits} or less")
        self.fit_checked[key] = n
        self.fit_checked_bytes = max(self.fit_checked_bytes, (peak or 0) * n)
        return done

    def _run(self, samples: list[CineSample]) -> list[torch.Tensor]:
        from ..runtime import precision_context

        dev = torch.device(self.device)
        with torch.no_grad(), precision_context(self.precision, dev):
            out = self.fn(torch.stack([s.kspace for s in samples]).to(dev),
                          torch.stack([s.mask for s in samples]).to(dev),
                          torch.stack([s.maps for s in samples]).to(dev))
        return list(out.detach().cpu().to(torch.complex64))

    def batch(self, samples: list[CineSample], batch_size: int | None = None) -> list[torch.Tensor]:
        """Reconstruct slices of equal shapes in one call: (T, H, W) complex64 on the CPU each.

        ``batch_size`` is the ``--batch-size`` asked for (named in the out-of-memory message).

        Raises:
            ConfigError: the batch does not fit the device's memory (naming ``--batch-size``).
            DataError: a reconstruction has NaN/Inf pixels (naming the slice and checkpoint).
        """
        dev = torch.device(self.device)
        try:
            outs = self._check_cpu_fit(samples, batch_size) if dev.type == "cpu" and len(samples) > 1 else []
            if len(outs) < len(samples):
                outs = outs + self._run(samples[len(outs):])
        except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
            text = " ".join(str(e).split())
            if not isinstance(e, torch.cuda.OutOfMemoryError) and "out of memory" not in text.lower() \
                    and "can't allocate memory" not in text:
                raise
            raise ConfigError(f"--batch-size {batch_size or len(samples)}: a batch of {len(samples)} slice(s) of "
                              f"(C, T, H, W) = {tuple(samples[0].kspace.shape)} does not fit in {dev} memory "
                              f"({text[:160]}); use a smaller --batch-size") from None
        for sample, image in zip(samples, outs):
            if not bool(torch.isfinite(torch.view_as_real(image)).all()):
                bad = int((~torch.isfinite(torch.view_as_real(image))).any(-1).sum())
                by = f"checkpoint {self.checkpoint}" if self.checkpoint else f"method {self.name!r}"
                raise DataError(f"{sample.meta.source or sample.meta.name}: slice {sample.meta.name!r}: {by} produced "
                                f"{bad} NaN/Inf pixels of {image.numel()} in (T, H, W) = {tuple(image.shape)}; nothing "
                                "written for it (check the checkpoint's weights and the input scaling)")
        return outs


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
        from ..models import PRETRAINED

        if method in PRETRAINED:  # the shipped weights (see cinerecon.models.load_pretrained)
            checkpoint = PRETRAINED[method]
        else:
            known = sorted(classical) or ["zero_filled", "cg_sense", "grappa", "lplus_s"]
            raise ConfigError(f"method {method!r} is not a classical method ({known}) and has no shipped weights "
                              f"({sorted(PRETRAINED)}); a learned model needs --checkpoint PATH")
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
    """``out/<folder below root>/<input stem>_<method>_<mask key>``, names made safe, kept under ``out``."""
    rel = f.relative_to(root).parent if root.is_dir() else Path()
    stem = out / rel / f"{safe_name(f.stem)}_{safe_name(method)}_{safe_name(mask_key or 'stored')}"
    return inside(out, stem, "reconstruction output")


def require_accel(inputs: list[Path]) -> None:
    """Raise ConfigError when ``--accel`` was not given and some input is fully sampled.

    Reconstructing fully sampled k-space gives the reference itself (R = 1), which looks
    perfect and is rarely what was meant.
    """
    from ..data.h5 import h5_info

    for f in inputs:
        info = h5_info(f)
        if info.fully_sampled:
            keys = ", ".join(info.mask_keys) or "none stored"
            raise ConfigError(f"{f} is fully sampled: give --accel with one of its masks ({keys}) to reconstruct "
                              "undersampled data, or --accel none to reconstruct it fully sampled (R = 1) on purpose")


def reconstruct_files(inputs: list[Path], root: Path, out: Path, rec: Reconstructor, mask_key: str | None,
                      formats: list[str], no_acs_maps: bool = False, fps: float = DEFAULT_FPS,
                      overwrite: bool = False, verbose: bool = True, scale: int | None = None,
                      batch_size: int = 1) -> list[dict[str, Path]]:
    """Reconstruct each file; returns the written paths per file.

    ``mask_key`` None reconstructs the k-space as stored. ``scale`` enlarges GIF / MP4 frames
    (default: to at least 256 px on the short side). ``batch_size`` slices (consecutive
    files of equal shapes) go through the method in one call; the time written per slice is
    its share of the call.
    """
    from ..data.h5 import h5_info, read_h5, read_mask, read_sampling_mask

    fps = check_fps(fps)
    check_scale(scale)
    if "mp4" in formats:
        require_mp4()
    as_stored = set()
    if mask_key is not None:  # fail before any work when a file lacks the mask
        for f in inputs:
            info = h5_info(f)
            if mask_key not in info.mask_keys:
                hint = nearest_mask_key(mask_key, info.mask_keys)
                raise DataError(f"{f}: missing mask 'masks/{mask_key}' (found {list(info.mask_keys)}); "
                                + (f"{hint}; or use" if hint else "use") + " --accel none for the k-space as stored")
            if not info.fully_sampled:  # undersampled-only data: the key names the mask it was acquired with
                as_stored.add(f)
    if rec.name == "grappa":  # before any work: GRAPPA interpolates phase-encode lines only
        for f in inputs:
            stored = mask_key is None or f in as_stored
            m = read_sampling_mask(f) if stored else read_mask(f, mask_key)[0]
            if varies_along_readout(m):
                which = "'mask'" if stored else f"'masks/{mask_key}'"
                raise DataError(f"{f}: mask {which} {tuple(m.shape)} varies along the readout H (pseudo-radial or "
                                "2-D k-t sampling); GRAPPA takes phase-encode line masks only: cg_sense, lplus_s or "
                                "crunet reconstruct it")
    stems = [_stem(out, root, f, rec.name, mask_key) for f in inputs]
    check_writable([p for s in stems for p in output_paths(s, formats).values()], overwrite)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")

    irregular_said = False

    def load(f: Path) -> CineSample:
        nonlocal irregular_said
        sample = read_h5(f, mask_key=None if f in as_stored else mask_key)
        if rec.name == "grappa" and not irregular_said and not regular_lines(sample.mask):
            irregular_said = True
            print(f"reconstruct: warning: {f}: mask {mask_key or 'as stored'} is not an equispaced line grid (k-t "
                  "random lines?); GRAPPA interpolates regular grids and can fall below zero-filling on such "
                  "masks: cg_sense, lplus_s or crunet suit them", file=sys.stderr, flush=True)
        if no_acs_maps:
            from ..coils import maps_from_time_average

            which = "'mask'" if mask_key is None or f in as_stored else f"'masks/{mask_key}'"
            try:  # the estimator says why a mask cannot calibrate (coils.time_average_pattern_problem)
                maps = maps_from_time_average(sample.kspace, sample.mask)
            except DataError as e:
                raise DataError(f"{f}: --no-acs-maps: mask {which} (1, T, H|1, W) = {tuple(sample.mask.shape)}: "
                                f"{e}; drop --no-acs-maps to use the stored maps") from None
            sample = CineSample(sample.kspace, sample.mask, maps, sample.target, sample.meta)
        return sample

    def results():  # (file, stem, sample, image, seconds), in input order, batch_size files at a time
        jobs = list(zip(inputs, stems))
        for start in range(0, len(jobs), batch_size):
            chunk = [(f, stem, load(f)) for f, stem in jobs[start:start + batch_size]]
            groups: dict[tuple, list[int]] = {}
            for i, (_, _, s) in enumerate(chunk):
                groups.setdefault((tuple(s.kspace.shape), tuple(s.mask.shape), tuple(s.maps.shape)), []).append(i)
            images: dict[int, tuple[torch.Tensor, float]] = {}
            for idx in groups.values():
                t0 = time.perf_counter()
                try:
                    outs = rec.batch([chunk[i][2] for i in idx], batch_size)
                except CineReconError as e:  # a method's own message may not know the files
                    if any(str(chunk[i][0]) in str(e) for i in idx):
                        raise
                    raise type(e)(", ".join(str(chunk[i][0]) for i in idx) + f": {e}") from None
                share = (time.perf_counter() - t0) / len(idx)
                images.update({i: (o, share) for i, o in zip(idx, outs)})
            for i, (f, stem, sample) in enumerate(chunk):
                yield f, stem, sample, *images[i]

    written: list[dict[str, Path]] = []
    try:
        for f, stem, sample, image, seconds in results():
            if tuple(image.shape) != tuple(sample.kspace.shape[1:]):
                raise DataError(f"{f}: method {rec.name!r} returned shape {tuple(image.shape)}, expected (T, H, W) = "
                                f"{tuple(sample.kspace.shape[1:])}")
            m = sample.meta
            record = ReconRecord(image, name=m.name, method=rec.name, source=str(f), mask_key=mask_key or "",
                                 accel=float(m.accel), acs=int(m.acs), checkpoint=rec.checkpoint,
                                 weight_set=rec.weight_set(sample), seconds=seconds,
                                 view=m.view, pixel_spacing=m.pixel_spacing, frame_times_ms=m.frame_times_ms,
                                 geometry=m.geometry)
            paths = write_outputs(stem, record, formats, fps=fps, overwrite=overwrite, scale=scale)
            if verbose:
                used = f", {record.weight_set} weights" if record.weight_set else ""
                print(f"{m.name}: {rec.name} ({mask_key or 'as stored'}, R={m.accel:g}{used}) {seconds:.2f} s -> "
                      + ", ".join(str(p) for p in paths.values()))
            written.append(paths)
    except CineReconError as e:
        if written:  # say what a rerun has to deal with: the earlier slices' outputs are there
            raise type(e)(f"{e} (the {len(written)} slice(s) before it were written and are kept: rerun the rest, "
                          "or everything with --overwrite)") from None
        raise
    return written


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``reconstruct`` subcommand."""
    p = subparsers.add_parser("reconstruct", help="reconstruct cinerecon HDF5 slices (classical or trained model)",
                              description="Reconstruct our HDF5 slices. " + " ".join(
                                  __doc__.split("\n\n")[1].replace("``", "").split()))
    p.add_argument("input", type=Path, help="one of our .h5 files or a folder of them (searched recursively)")
    p.add_argument("--method", required=True,
                   help="zero_filled | view_sharing | cg_sense | grappa | lplus_s | a model name (crunet without "
                        "--checkpoint: the shipped model; others with --checkpoint) | model")
    p.add_argument("--checkpoint", type=Path,
                   help="our checkpoint, or the authors' CRUNet-MR, CRNN-MRI (crnn_mri_d5_c5.pth) or PromptMR "
                        "checkpoint (default for --method crunet: the shipped "
                        "CRUNet-MR trained on real anatomy, see cinerecon.models.load_pretrained)")
    p.add_argument("--accel", default=NOT_GIVEN,
                   help="stored mask to apply: 4 / R04, 8 / R08, R10, R24, R08_ktGaussian, ... (the CMRxRecon2024 "
                        "names ktGaussian8, Uniform8, ktRadial8 are aliases of R08_ktGaussian, R08, R08_ktRadial); "
                        "'none' for the k-space as stored (R = 1 on fully sampled data). Required for fully sampled "
                        "inputs")
    p.add_argument("--no-acs-maps", action="store_true",
                   help="estimate coil maps from the time-averaged centre instead of using the stored maps")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--formats", nargs="+", default=["h5", "nifti", "gif"], choices=FORMATS,
                   help="files written per slice: h5 (complex recon + metadata), nifti (magnitude, scanner "
                        "geometry when known), gif, mp4 (needs imageio-ffmpeg) (default: %(default)s)")
    p.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frames per second of GIF/MP4 (default: %(default)s)")
    p.add_argument("--scale", type=int, default=None,
                   help=f"integer enlargement of GIF/MP4 frames (default: to at least {MIN_MOVIE_SIDE} px on the "
                        "short side)")
    p.add_argument("--device", default="cpu", help="device of learned models: cpu, cuda, cuda:N (default: cpu)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="slices per model call (learned models; consecutive inputs of equal shapes) (default: 1)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "bf16-or-fp32"),
                   help="learned models: fp32, or bf16 autocast (refused on a CPU/GPU without bf16 arithmetic; "
                        "bf16-or-fp32 falls back to fp32 there) (default: fp32)")
    p.add_argument("--tf32", action="store_true",
                   help="CUDA: let matmuls and cuDNN convolutions use TensorFloat-32 (faster, ~1e-3 relative "
                        "precision); off by default (full float32)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="do not print a line per reconstructed slice")
    return p


def run(args: argparse.Namespace) -> int:
    """Check every flag, then reconstruct each input file."""
    check_fps(args.fps)
    check_scale(args.scale)
    check_device(args.device)
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder")
    check_can_write(args.out)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    from ..runtime import check_precision, configure_cuda

    if torch.device(args.device).type == "cuda":
        configure_cuda(args.tf32)
    rec = build_reconstructor(args.method, args.checkpoint, args.device)
    if not rec.checkpoint and (args.precision != "fp32" or args.batch_size != 1):
        flag = "--precision" if args.precision != "fp32" else "--batch-size"
        raise ConfigError(f"{flag} applies to learned models; {args.method!r} is classical")
    rec.precision = check_precision(args.precision, args.device) if rec.checkpoint else "fp32"
    files = input_files(args.input, exclude=args.out)
    if args.accel is NOT_GIVEN:
        require_accel(files)
    reconstruct_files(files, args.input, args.out, rec, normalise_accel(args.accel), list(args.formats),
                      args.no_acs_maps, args.fps, args.overwrite, verbose=not args.quiet, scale=args.scale,
                      batch_size=args.batch_size)
    return 0
