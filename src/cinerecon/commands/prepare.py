"""``cinerecon prepare cmrxrecon|ismrmrd SRC DST``: convert scanner data to our HDF5 (one file per slice).

Fully sampled slices are stored with coil maps estimated from the central ACS lines,
the coil-combined target, the provided masks (CMRxRecon ``R04``/``R08``/``R10``) and
our ``R24`` mask (equispaced + 24 ACS lines, seeded per slice). Undersampled-only
slices are stored as measured (``fully_sampled=False``) with their mask. Subject
splits go to ``train.txt`` / ``val.txt`` / ``test.txt`` in DST (paths relative to DST,
merged with lists already there): by default ``TrainingSet`` -> train and
``ValidationSet`` -> val for subjects with fully sampled data; slices without a fully
sampled reference (e.g. the 2023 validation set) are listed under test (inference only).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..data.h5 import SPLITS
from ..data.sample import CineSample, SampleMeta
from ..data.transforms import mask_key
from ..errors import ConfigError, DataError
from ..files import atomic_write_text, inside, safe_name
from ..masks import PAPER_ACS, MaskSpec, acs_lines, effective_acceleration, make_mask

ACQUIRED_KEY = "acquired"
MIN_ACS_FOR_ESPIRIT = 8


@dataclass(frozen=True)
class PrepareConfig:
    """Options shared by the converters.

    Attributes:
        acs: number of central phase-encode lines used to estimate coil maps, and the
            ACS size of generated masks.
        coils_virtual: compress to this many virtual coils (None keeps all).
        generated_accels: equispaced+ACS masks generated for fully sampled data (``R24``).
        seed: base seed of generated masks (combined with each slice's name).
        overwrite: replace existing output files.
    """

    acs: int = PAPER_ACS
    coils_virtual: int | None = None
    generated_accels: tuple[int, ...] = (24,)
    seed: int = 0
    overwrite: bool = False


# --------------------------------------------------------------------------- sample building


def _slice_seed(name: str, seed: int) -> int:
    return (zlib.crc32(name.encode()) ^ seed) & 0x7FFFFFFF


def _compress(kspace: torch.Tensor, cfg: PrepareConfig) -> torch.Tensor:
    if cfg.coils_virtual is None or cfg.coils_virtual >= kspace.shape[0]:
        return kspace
    from ..coils import coil_compress

    return coil_compress(kspace, cfg.coils_virtual)[0]


def estimate_maps(kspace: torch.Tensor, mask: torch.Tensor | None, acs: int) -> torch.Tensor:
    """Coil maps (C, 1, H, W) from k-space (C, T, H, W).

    ESPIRiT on the central ``acs`` lines when the data hold at least
    :data:`MIN_ACS_FOR_ESPIRIT` fully sampled central lines, or on the central block of a 2-D
    pattern (:func:`calib_block`) at least that wide both ways; otherwise from the
    time-averaged centre (``maps_from_time_average``), for masks without ACS.
    """
    from .. import coils

    lines = kspace.shape[-1] if mask is None else acs_lines(mask)
    if lines >= MIN_ACS_FOR_ESPIRIT:
        return coils.espirit_maps(kspace, acs=min(acs, lines), calib_mask=mask)
    if mask is not None and min(calib_block(mask, kspace.shape[-2])) >= MIN_ACS_FOR_ESPIRIT:
        return coils.espirit_maps(kspace, acs=None, calib_mask=mask)  # the block of a 2-D pattern
    return coils.maps_from_time_average(kspace, mask)


def calib_block(mask: torch.Tensor, height: int) -> tuple[int, int]:
    """(rows, columns) of the largest centred block sampled in every frame (0, 0 if the centre is not).

    For 2-D patterns such as pseudo-radial spokes with a calibration square (CMRxRecon2024
    ``ktRadial``), whose central phase-encode lines are not sampled along the whole
    readout; ESPIRiT on that block gives better maps than the time-averaged centre (CG-SENSE
    0.04-0.41 dB higher on two real series at R = 8 / 10, ``kt_radial`` masks).

    Args:
        mask: (1, T|1, H|1, W) 0/1.
        height: H of the k-space.
    """
    from ..coils import find_calib_region

    w = mask.shape[-1]
    every = (mask.detach().cpu().reshape(-1, mask.shape[-2], w) != 0).all(dim=0).expand(height, w)
    if not bool(every[height // 2, w // 2]):
        return 0, 0
    region = find_calib_region(every, None)
    return region.height, region.width


def time_average_problem(mask: torch.Tensor, height: int) -> str | None:
    """Why coil maps cannot come from the time-averaged centre of k-space sampled with ``mask``, or None
    (:func:`cinerecon.coils.time_average_pattern_problem` of the locations it samples in any frame).

    Args:
        mask: (1, T|1, H|1, W) 0/1.
        height: H of the k-space.
    """
    from ..coils import time_average_pattern_problem

    w = mask.shape[-1]
    m = mask.detach().cpu().reshape(-1, mask.shape[-2], w) != 0  # (T, H|1, W)
    return time_average_pattern_problem(m.any(dim=0).expand(height, w))


def calibration_problem(mask: torch.Tensor, height: int) -> str | None:
    """Why :func:`estimate_maps` cannot estimate coil maps from data sampled with ``mask``, or None.

    Mirrors it: ESPIRiT on the central lines sampled in every frame when there are at least
    :data:`MIN_ACS_FOR_ESPIRIT`, or on a central block at least that wide both ways
    (:func:`calib_block`), the time-averaged centre (:func:`time_average_problem`) otherwise.
    """
    if acs_lines(mask) >= MIN_ACS_FOR_ESPIRIT or min(calib_block(mask, height)) >= MIN_ACS_FOR_ESPIRIT:
        return None
    return time_average_problem(mask, height)


def full_sample(kspace: torch.Tensor, meta: SampleMeta, cfg: PrepareConfig) -> CineSample:
    """Fully sampled slice: maps from the ACS region, target = S^H F^-1 k (coil combination with the maps)."""
    from ..operators import SenseOp

    kspace = _compress(kspace, cfg)
    maps = estimate_maps(kspace, None, cfg.acs).to(torch.complex64)
    target = SenseOp(maps[None]).reduce(kspace[None])[0]
    mask = torch.ones(1, 1, 1, kspace.shape[-1])
    return CineSample(kspace, mask, maps, target, replace(meta, accel=1.0, acs=kspace.shape[-1]))


def undersampled_sample(kspace: torch.Tensor, mask: torch.Tensor, meta: SampleMeta, cfg: PrepareConfig,
                        accel: float | None = None) -> CineSample:
    """Undersampled-only slice stored as measured (no target).

    ``accel`` is the nominal acceleration (e.g. 4 for ``R04``); by default the effective one of ``mask``.
    """
    kspace = _compress(kspace * mask, cfg)
    maps = estimate_maps(kspace, mask, cfg.acs).to(torch.complex64)
    accel = round(effective_acceleration(mask), 2) if accel is None else float(accel)
    return CineSample(kspace, mask, maps, None, replace(meta, accel=accel, acs=acs_lines(mask)))


def check_acs(acs: int, width: int, where: str) -> None:
    """Raise ConfigError naming ``where`` and ``--acs`` when ``acs`` exceeds the ``width`` phase-encode lines."""
    if acs > width:
        raise ConfigError(f"{where}: --acs {acs} exceeds the {width} phase-encode lines (W) of this data; "
                          f"use --acs {width} or fewer")


def generated_masks(frames: int, width: int, name: str, cfg: PrepareConfig) -> dict[str, torch.Tensor]:
    """Our equispaced + ACS masks (``R24``) for a fully sampled slice, seeded by its name."""
    return {mask_key(r): make_mask(MaskSpec("equispaced_acs", r, cfg.acs), frames, width, _slice_seed(name, cfg.seed))
            for r in cfg.generated_accels}


def _write(path: Path, sample: CineSample, masks: dict[str, torch.Tensor], cfg: PrepareConfig) -> Path | None:
    """Write one slice file; a slice whose estimated maps are all zero is skipped with a line on stderr (None)."""
    from ..data.h5 import write_h5

    if not bool((sample.maps != 0).any()):  # a file that reconstruct and evaluate would refuse
        stale = path.is_file()  # an earlier run's file (only with --overwrite: checked before any job)
        if stale:
            path.unlink()
        print(f"prepare: skipped {sample.meta.name} ({sample.meta.source}): its coil maps (C, 1, H, W) = "
              f"{tuple(sample.maps.shape)} came out all zero (no signal found in the calibration region of "
              f"{cfg.acs} lines); {'removed the earlier' if stale else 'no'} file {path}", file=sys.stderr)
        return None
    return write_h5(path, sample, masks, overwrite=cfg.overwrite)


def update_split_lists(dst: Path, entries: dict[str, list[Path]]) -> dict[str, Path]:
    """Merge ``entries`` (split -> files) into ``dst/<split>.txt`` (one path relative to dst per line).

    Listed files that no longer exist (e.g. removed by a later run that skipped their slice) are
    dropped, with a note; comment lines (``#``) are kept at the top, and an entry keeps its own
    trailing comment.
    """
    out = {}
    for split, files in entries.items():
        if not files and not (dst / f"{split}.txt").exists():
            continue
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose from {SPLITS}")
        p = dst / f"{split}.txt"
        comments, listed = [], {}  # comment lines; entry -> its line as written
        for line in (p.read_text().splitlines() if p.exists() else []):
            entry = line.split("#", 1)[0].strip()
            if entry:
                listed[entry] = line.strip()
            elif line.strip():
                comments.append(line.rstrip())
        gone = sorted(e for e in listed if not (dst / e).is_file())
        if gone:
            print(f"prepare: {p}: dropped {len(gone)} listed file(s) that do not exist under {dst} "
                  f"(e.g. {gone[0]})", file=sys.stderr)
        for e in gone:
            del listed[e]
        for f in files:
            entry = f.relative_to(dst).as_posix()
            listed.setdefault(entry, entry)
        text = "".join(f"{c}\n" for c in comments) + "".join(f"{listed[e]}\n" for e in sorted(listed))
        atomic_write_text(p, text)
        out[split] = p
    return out


# --------------------------------------------------------------------------- CMRxRecon


@dataclass
class _Job:
    out: Path
    split: str
    subject_name: str
    kspace_file: Path
    slice: int
    mask_key: str | None  # None: fully sampled
    meta: SampleMeta
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # masks written with the slice


def read_split_file(path: Path) -> dict[str, str]:
    """User split list: lines ``<subject> <train|val|test>`` (``#`` comments allowed)."""
    out = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in SPLITS:
            raise ConfigError(f"{path}:{n}: expected '<subject> <train|val|test>', got {line!r}")
        out[parts[0]] = parts[1]
    return out


def _fraction_split(subjects: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ConfigError(f"--split-fractions needs three non-negative numbers (train val test), got {fractions}")
    order = sorted(set(subjects))
    random.Random(seed).shuffle(order)
    total = sum(fractions)
    n_train = round(len(order) * fractions[0] / total)
    n_val = round(len(order) * fractions[1] / total)
    return {s: ("train" if i < n_train else "val" if i < n_train + n_val else "test") for i, s in enumerate(order)}


def _check_coils(s) -> None:
    """All k-space files of one subject and view must agree on (C, H, W)."""
    from ..data.cmrxrecon import CmrxKspaceFile

    ref = None
    for path in ([s.full] if s.full is not None else []) + [s.undersampled[k] for k in sorted(s.undersampled)]:
        with CmrxKspaceFile(path) as kf:
            if ref is None:
                ref = (kf.path, kf.key, kf.coils, kf.height, kf.width)
            elif (kf.coils, kf.height, kf.width) != ref[2:]:
                raise DataError(f"{kf.path}: inconsistent coil counts or matrix for {s.name}: key {kf.key!r} has "
                                f"(C, H, W) = {(kf.coils, kf.height, kf.width)}, but {ref[0]} key {ref[1]!r} has "
                                f"{ref[2:]}")


def prepare_cmrxrecon(src: Path, dst: Path, views: tuple[str, ...] = ("sax", "lax"), cfg: PrepareConfig | None = None,
                      split_map: dict[str, str] | None = None, subjects: list[str] | None = None,
                      verbose: bool = True, notes: list[str] | None = None) -> dict[str, list[Path]]:
    """Convert a CMRxRecon cine tree to our HDF5 files.

    Args:
        src: a folder containing ``TrainingSet`` / ``ValidationSet`` (or any parent of them).
        dst: output folder; files go to ``dst/<SplitFolder>/<subject>/cine_<view>[_<key>]_sNN.h5``.
        views: which views to convert.
        cfg: conversion options.
        split_map: subject (``P001`` or ``TrainingSet/P001``) -> split, overriding the folder split.
        subjects: convert only these subjects (same naming).
        verbose: print one line per subject.
        notes: when given, receives what the user should know about the result (the masks we
            added, the split made, a suggestion when a split has no fully sampled slice).

    Returns:
        split -> written files (also merged into ``dst/<split>.txt``).
    """
    from ..data.cmrxrecon import CmrxKspaceFile, check_mask, discover, expected_name, read_masks
    from ..data.export import check_writable

    cfg = cfg or PrepareConfig()
    found = discover(src, views)
    if subjects:
        want = set(subjects)
        found = [s for s in found if s.subject in want or f"{s.split_dir}/{s.subject}" in want]
    if not found:
        raise DataError(f"{src}: no CMRxRecon cine files (cine_{{{','.join(views)}}}.mat) found"
                        + (f" for subjects {subjects}" if subjects else ""))
    jobs: list[_Job] = []
    ignored_kus: list[Path] = []  # undersampled files of subjects with fully sampled data
    no_calib: list[str] = []  # undersampled-only files whose mask cannot calibrate coil maps: skipped likewise
    for s in found:
        for p in s.unrecognised:  # said even with --quiet: a mask silently missing changes what is written
            other_view = re.match(r"^cine_(sax|lax|lvot)_([a-z0-9]+)_(mask|kus)_[A-Za-z]+\d+\.mat$", p.name)
            if other_view:
                print(f"prepare: warning: {p}: view 'cine_{other_view.group(1)}_{other_view.group(2)}' is not one "
                      "this reader converts (sax, lax, lvot), ignored", file=sys.stderr)
                continue
            print(f"prepare: warning: {p}: file name not recognised, ignored; expected "
                  f"{expected_name(next(d for d in p.parts[::-1] if d.startswith(('Mask_', 'UnderSample'))), s.view)}"
                  " (pattern and acceleration factor in the name)", file=sys.stderr)
        # slices without a fully sampled reference cannot serve training or validation: list them as "test"
        split = s.split if s.full is not None else "test"
        if split_map:
            split = split_map.get(f"{s.split_dir}/{s.subject}", split_map.get(s.subject, split))
        masks = {}
        for mf in s.mask_files:
            for m in read_masks(mf):
                masks[m.key] = m
        _check_coils(s)
        base = dst / s.split_dir / s.subject if s.split_dir else dst / s.subject
        view = "lax" if s.view == "lvot" else s.view
        if s.full is not None:
            with CmrxKspaceFile(s.full) as kf:
                c, t, h, w = kf.coils, kf.frames, kf.height, kf.width
                provided = {}
                for key, m in masks.items():  # line masks, and 2-D ones (ktRadial) stored (T|1, H, W)
                    check_mask(m.mask, t, h, w, f"{m.source} (mask {key!r} for {kf.path}, key {kf.key!r})")
                    provided[key] = m.mask
                check_acs(cfg.acs, w, f"{kf.path} key {kf.key!r} (C, T, H, W) = {(c, t, h, w)}")
                ignored_kus.extend(s.undersampled[k] for k in sorted(s.undersampled))
                for z in range(kf.slices):
                    name = f"{s.name}/slice{z:02d}"
                    meta = SampleMeta(name=name, view=view, source=str(s.full))
                    jobs.append(_Job(base / f"cine_{s.view}_s{z:02d}.h5", split, s.name, s.full, z, None, meta,
                                     {**provided, **generated_masks(t, w, name, cfg)}))
        else:
            for key, path in sorted(s.undersampled.items()):
                if key not in masks:
                    raise DataError(f"{path}: no mask {key!r} found for {s.name}; mask files: "
                                    f"{[str(p) for p in s.mask_files]}")
                with CmrxKspaceFile(path) as kf:
                    check_mask(masks[key].mask, kf.frames, kf.height, kf.width,
                               f"{masks[key].source} (mask {key!r} for {kf.path}, key {kf.key!r})")
                    problem = calibration_problem(masks[key].mask, kf.height)
                    if problem:  # decided from the mask before anything is written; the file is skipped
                        no_calib.append(f"{path} key {kf.key!r} (slices, C, T, H, W) = {kf.shape} with mask {key!r} "
                                        f"{tuple(masks[key].mask.shape)} of {masks[key].source}: {problem}")
                        continue
                    for z in range(kf.slices):
                        name = f"{s.name}/{key}/slice{z:02d}"
                        meta = SampleMeta(name=name, view=view, source=str(path))
                        jobs.append(_Job(base / f"cine_{s.view}_{key}_s{z:02d}.h5", split, s.name, path, z, key, meta,
                                         {key: masks[key].mask}))
    # said even with --quiet (what is not converted), once per kind with a count and the first case
    if no_calib:
        print(f"prepare: skipped {len(no_calib)} undersampled-only file(s) whose mask gives no central region to "
              f"estimate coil maps from, and no fully sampled reference to take them from (e.g. {no_calib[0]})",
              file=sys.stderr)
    for j in jobs:
        inside(dst, j.out)
    check_writable([j.out for j in jobs], cfg.overwrite)
    written: dict[str, list[Path]] = {k: [] for k in SPLITS}
    current: CmrxKspaceFile | None = None
    try:
        for j in jobs:
            if current is None or current.path != j.kspace_file:
                if current is not None:
                    current.close()
                current = CmrxKspaceFile(j.kspace_file)
                if verbose:
                    print(f"{j.subject_name}: {current.path.name} key {current.key!r} "
                          f"(slices, C, T, H, W) = {current.shape} -> {j.split}")
            k = current.read_slice(j.slice)
            try:
                if j.mask_key is None:
                    sample = full_sample(k, j.meta, cfg)
                else:
                    nominal = re.match(r"R(\d+)", j.mask_key)
                    sample = undersampled_sample(k, j.masks[j.mask_key], j.meta, cfg,
                                                 float(nominal.group(1)) if nominal else None)
            except DataError as e:  # coil maps not estimable (checked by mask before; the data can still fail)
                stale = j.out.is_file()  # an earlier run's file (only with --overwrite)
                if stale:
                    j.out.unlink()
                print(f"prepare: skipped {j.meta.name} ({j.kspace_file} key {current.key!r} slice {j.slice}, "
                      f"(C, T, H, W) = {tuple(k.shape)}): {e}; {'removed the earlier' if stale else 'no'} file "
                      f"{j.out}", file=sys.stderr)
                continue
            path = _write(j.out, sample, j.masks, cfg)
            if path is not None:
                written[j.split].append(path)
    finally:
        if current is not None:
            current.close()
    update_split_lists(dst, written)
    if notes is not None:
        kept = {p for files in written.values() for p in files}
        notes.extend(_cmrx_notes([j for j in jobs if j.out in kept], cfg, split_map is not None, ignored_kus))
        if len(kept) < len(jobs):
            notes.append(f"skipped {len(jobs) - len(kept)} slice(s) whose coil maps could not be estimated or came "
                         "out all zero (see above)")
    return written


def _cmrx_notes(jobs: list[_Job], cfg: PrepareConfig, user_split: bool,
                ignored_kus: list[Path] | None = None) -> list[str]:
    """What a user should know after a CMRxRecon conversion: added masks, mask keys, the split, ignored
    undersampled files, missing geometry."""
    from ..data.cmrxrecon import challenge_name

    notes = []
    full = [j for j in jobs if j.mask_key is None]
    if full and cfg.generated_accels:
        keys = ", ".join(mask_key(r) for r in cfg.generated_accels)
        notes.append(f"added our {keys} mask (equispaced + {cfg.acs} ACS lines, seeded by slice name and --seed) to "
                     f"each of the {len(full)} fully sampled slices, beside the challenge's masks")
    counts: dict[str, int] = {}
    for j in jobs:
        for k in j.masks:
            counts[k] = counts.get(k, 0) + 1
    if counts:
        stored = sorted(counts)
        aliases = [f"{challenge_name(k)} = {k}" for k in stored if challenge_name(k)]
        notes.append("mask keys stored: "
                     + ", ".join(f"{k} ({counts[k]} slice{'s' * (counts[k] != 1)})" for k in stored)
                     + " (give one to reconstruct / evaluate --accel"
                     + (f"; --accel of reconstruct, evaluate and train also takes the challenge's names: {', '.join(aliases)}" if aliases else "")
                     + ")")
    if ignored_kus:
        notes.append(f"ignored {len(ignored_kus)} undersampled file(s) of subjects with fully sampled data (e.g. "
                     f"{ignored_kus[0]}): those slices are stored fully sampled, with the challenge's masks under "
                     "masks/<key> to undersample them")
    parts, empty = [], []
    for split in SPLITS:
        mine = [j for j in jobs if j.split == split]
        n_full = sum(j.mask_key is None for j in mine)
        subjects = len({j.out.parent for j in mine})  # one folder per subject, its views inside
        parts.append(f"{split}: {subjects} subjects, {len(mine)} slices ({n_full} fully sampled)")
        if n_full == 0:
            empty.append(split)
    how = "from --split-file / --split-fractions" if user_split else \
        "from the folder names (TrainingSet -> train, ValidationSet -> val; slices without a fully sampled " \
        "reference -> test)"
    notes.append(f"split {how}: " + "; ".join(parts))
    if empty and full:
        notes.append(f"no fully sampled slice in {', '.join(empty)}: training needs train (and val to pick "
                     "best.pt), evaluate needs test; rerun with --split-fractions 0.8 0.1 0.1 --overwrite "
                     "(or --split-file) to split the fully sampled subjects")
    notes.append("CMRxRecon .mat files hold no scanner geometry (position, orientation, pixel spacing, frame "
                 "times): NIfTI exports of these slices get a diagonal 1 mm affine")
    return notes


# --------------------------------------------------------------------------- ISMRMRD


def prepare_ismrmrd(src: Path, dst: Path, cfg: PrepareConfig | None = None, name: str | None = None,
                    view: str = "unknown", split: str = "test", accels: tuple[int, ...] = (4, 8, 10, 24),
                    remove_oversampling: bool = True, verbose: bool = True) -> list[Path]:
    """Convert one ISMRMRD file to our HDF5, one file per slice: ``dst/<name>_sNN.h5``.

    Fully sampled slices get equispaced + ACS masks ``R04``... for ``accels``;
    undersampled slices are stored as acquired with the mask key ``acquired``.
    ``name`` (default: the file stem) is reduced to a safe file name (no separators, no
    ``..``). The scanner geometry and TR of the headers are stored with each slice.
    """
    from ..data.export import check_writable
    from ..data.ismrmrd_io import IsmrmrdConfig, ismrmrd_slices, iter_ismrmrd

    cfg = cfg or PrepareConfig()
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose from {SPLITS}")
    bad = [a for a in accels if not isinstance(a, int) or a < 1]
    if bad or not accels:
        raise ConfigError(f"--accels must be positive integers (R >= 1), got {list(accels)}")
    name = safe_name(name or src.stem, "ismrmrd")
    icfg = IsmrmrdConfig(remove_oversampling=remove_oversampling)
    outs = [inside(dst, dst / f"{name}_s{i:02d}.h5") for i in range(len(ismrmrd_slices(src, icfg)))]
    check_writable(outs, cfg.overwrite)
    written = []
    for out, sl in zip(outs, iter_ismrmrd(src, icfg)):
        meta = SampleMeta(name=f"{name}/slice{sl.slice_index:02d}", view=view, source=str(src),
                          pixel_spacing=sl.pixel_spacing, frame_times_ms=sl.frame_times_ms, geometry=sl.geometry)
        c, t, h, w = sl.kspace.shape
        check_acs(cfg.acs, w, f"{src} slice {sl.slice_index} (C, T, H, W) = {(c, t, h, w)}")
        if sl.fully_sampled:
            sample = full_sample(sl.kspace, meta, cfg)
            masks = generated_masks(t, w, meta.name, replace(cfg, generated_accels=tuple(accels)))
        else:
            sample = undersampled_sample(sl.kspace, sl.mask, meta, cfg)
            masks = {ACQUIRED_KEY: sl.mask}
        if verbose:
            print(f"{src.name} slice {sl.slice_index}: (C, T, H, W) = {(c, t, h, w)}, "
                  f"{'fully sampled' if sl.fully_sampled else f'R~{sample.meta.accel}'}, "
                  f"{'scanner geometry kept' if sl.geometry else 'no scanner geometry in the headers'} -> {out}")
        path = _write(out, sample, masks, cfg)
        if path is not None:
            written.append(path)
    update_split_lists(dst, {split: written})
    return written


# --------------------------------------------------------------------------- CLI


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``prepare cmrxrecon`` and ``prepare ismrmrd``."""
    p = subparsers.add_parser("prepare", help="convert CMRxRecon .mat or ISMRMRD raw data to cinerecon HDF5",
                              description=__doc__.split("\n\n")[0] + " See docs/hdf5_layout.md for the format.")
    sub = p.add_subparsers(dest="source", required=True, metavar="{cmrxrecon,ismrmrd}")
    c = sub.add_parser("cmrxrecon", help="CMRxRecon 2023/2024 multi-coil cine (.mat v7.3)",
                       description="Convert a CMRxRecon cine tree (.mat v7.3 or v5) to our HDF5, one file per slice, "
                                   "with coil maps, the challenge's masks and our R24 mask; writes train/val/test.txt.")
    c.add_argument("src", type=Path, help="folder containing TrainingSet/ValidationSet (any parent works)")
    c.add_argument("dst", type=Path, help="output folder")
    c.add_argument("--views", nargs="+", default=["sax", "lax"], choices=["sax", "lax", "lvot"],
                   help="views to convert (default: %(default)s)")
    c.add_argument("--subjects", nargs="+", help="only these subjects (P001 or TrainingSet/P001)")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--split-file", type=Path, help="lines '<subject> <train|val|test>' overriding the folder split")
    g.add_argument("--split-fractions", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                   help="random subject split of the fully sampled subjects (seeded by --seed), e.g. 0.8 0.1 0.1")
    i = sub.add_parser("ismrmrd", help="ISMRMRD/MRD Cartesian cine raw data (.h5)",
                       description="Convert one ISMRMRD/MRD Cartesian cine file to our HDF5, one file per slice "
                                   "(DST/<name>_sNN.h5), keeping the scanner geometry and TR for NIfTI export.")
    i.add_argument("src", type=Path, help="ISMRMRD file")
    i.add_argument("dst", type=Path, help="output folder")
    i.add_argument("--name", help="sample name and file prefix (default: the file stem; reduced to a safe file name)")
    i.add_argument("--view", default="unknown", choices=["sax", "lax", "unknown"],
                   help="view stored with each slice (default: %(default)s)")
    i.add_argument("--split", default="test", choices=SPLITS, help="split list the slices join (default: %(default)s)")
    i.add_argument("--accels", type=int, nargs="+", default=[4, 8, 10, 24],
                   help="accelerations R of the equispaced + ACS masks generated for fully sampled data "
                        "(default: %(default)s)")
    i.add_argument("--keep-oversampling", action="store_true", help="do not crop readout oversampling")
    for q in (c, i):
        q.add_argument("--acs", type=int, default=PAPER_ACS,
                       help="central lines used for coil maps and in generated masks (default: %(default)s)")
        q.add_argument("--coils-virtual", type=int, default=None,
                       help="compress to N virtual coils (files with N coils or fewer are kept as they are)")
        q.add_argument("--seed", type=int, default=0, help="seed of generated masks and random splits "
                                                           "(default: %(default)s)")
        q.add_argument("--overwrite", action="store_true", help="replace existing output files")
        q.add_argument("--quiet", action="store_true", help="print only the summary lines")
    return p


def run(args: argparse.Namespace) -> int:
    """Convert and print what was written (and what the user should know about it)."""
    if args.acs < 1:
        raise ConfigError(f"--acs must be positive, got {args.acs}")
    if args.coils_virtual is not None and args.coils_virtual < 1:
        raise ConfigError(f"--coils-virtual must be positive, got {args.coils_virtual}")
    cfg = PrepareConfig(acs=args.acs, coils_virtual=args.coils_virtual, seed=args.seed, overwrite=args.overwrite)
    if args.source == "cmrxrecon":
        split_map = None
        if args.split_file:
            split_map = read_split_file(args.split_file)
        elif args.split_fractions:
            from ..data.cmrxrecon import discover

            full = [f"{s.split_dir}/{s.subject}" for s in discover(args.src, tuple(args.views)) if s.full is not None]
            split_map = _fraction_split(full, tuple(args.split_fractions), args.seed)
        notes: list[str] = []
        written = prepare_cmrxrecon(args.src, args.dst, tuple(args.views), cfg, split_map, args.subjects,
                                    verbose=not args.quiet, notes=notes)
        total = sum(len(v) for v in written.values())
        if total == 0:
            raise DataError(f"{args.src}: nothing written to {args.dst}: every file found was skipped (see the lines "
                            "above)")
        print(f"wrote {total} files to {args.dst} (" + ", ".join(f"{k}: {len(v)}" for k, v in written.items()) + ")")
        for n in notes:
            print(f"note: {n}")
    else:
        files = prepare_ismrmrd(args.src, args.dst, cfg, args.name, args.view, args.split, tuple(args.accels),
                                remove_oversampling=not args.keep_oversampling, verbose=not args.quiet)
        print(f"wrote {len(files)} files to {args.dst} (split {args.split})")
    return 0
