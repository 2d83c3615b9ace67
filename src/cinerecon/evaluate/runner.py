"""Evaluate reconstruction methods on a folder of our HDF5 slices and write every table and figure.

``evaluate_dir`` reads each test slice at each acceleration (mask key), runs every
method, computes the series metrics of :mod:`.metrics` and the dynamic-region
metrics of :mod:`.dynamic`, tests a reference method against the others (:mod:`.stats`;
the paper's proposed model: ``options.reference``, by default the CRUNet-MR entry when
there is one, else the best mean), times each method on one slice (:mod:`.timing`) and writes:

``table1.md`` / ``table1.csv``  mean ± std per view and acceleration, significance marks
``stats.md`` / ``stats.csv``    Wilcoxon + Bonferroni comparisons
``dynamic.md`` / ``dynamic.csv`` PSNR / SSIM inside and outside the dynamic region
``table2.md`` / ``table2.csv``  parameters and inference time per slice
``metrics_per_slice.csv``, ``dynamic_per_slice.csv``  raw per-slice values
``figures/*.png``               reconstructions + error maps, x-t profiles, dynamic bars

Under the ``"cmrxrecon"`` protocol (the CMRxRecon2023 ranking) only the central slices of
each volume are evaluated (:func:`ranking_files`), and Table 1 and the statistics are over
volumes: each record is the mean of its volume's scored slices (frames and crop as
:mod:`.metrics` says), as the challenge averages per subject. Volumes come from the slice
names our ``prepare`` writes (``P001/cine_sax/slice03``).

Slices whose k-space is undersampled only (``fully_sampled`` false: ``prepare cmrxrecon``
puts such subjects in the test split, for inference) have no reference to score against:
they are left out with one note (an error when no slice is left). Methods made for regular
line patterns (:data:`REGULAR_LINE_METHODS`: GRAPPA) are left out, with one note, at a mask
key whose masks are not regular (:func:`cinerecon.masks.regular_lines`: k-t random lines)
when ``options.skip_irregular`` names them, and run with one warning per such key when
``options.warn_irregular`` does; tables show "–" where a method has no entry.

Every metric written is finite: a value that is not (NaN or inf: an all-zero target, where
the metrics are undefined) stops the run with a :class:`~cinerecon.errors.DataError` naming the slice, method and
metric, before any table is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.transforms import mask_key, parse_mask_key
from ..errors import ConfigError, DataError, OutputExistsError
from ..files import atomic_write_text, check_can_write, check_writable, inside, safe_name
from ..masks import regular_lines, varies_along_readout
from ..operators import SenseOp
from .dists import try_load_dists
from .dynamic import DEFAULT_PERCENTILE, region_metrics
from .figures import FigureConfig, plot_dynamic_bars, plot_reconstructions, plot_xt_profiles
from .metrics import (
    HAARPSI_MIN_SIZE,
    METRIC_NAMES,
    RankingSelection,
    get_protocol,
    ranking_slices,
    scored_size,
    series_metrics,
)
from .report import (
    DYNAMIC_FIELDS,
    DynamicRecord,
    DynamicSummaryRow,
    SliceRecord,
    StatsRow,
    SummaryRow,
    TimingRow,
    default_reference,
    dynamic_markdown,
    significance,
    stats_markdown,
    stats_rows,
    summarise,
    summarise_dynamic,
    table1_markdown,
    table2_markdown,
    timing_rows,
    write_csv,
)
from .stats import DEFAULT_ALPHA, SignificanceResult, min_pairs
from .timing import TimingConfig, TimingResult, time_call

Method = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: Methods made for regular (equispaced) line patterns; on k-t random masks GRAPPA scores below zero-filling.
REGULAR_LINE_METHODS = ("grappa",)
FEW_SLICES = 5  # below this many slices per (view, accel) group the run warns that means and stds are fragile
OUTPUT_NAMES = ("table1.md", "table1.csv", "stats.md", "stats.csv", "dynamic.md", "dynamic.csv", "table2.md",
                "table2.csv", "metrics_per_slice.csv", "dynamic_per_slice.csv", "figures")


@dataclass(frozen=True)
class EvaluationOptions:
    """Options of :func:`evaluate_dir` beyond the main arguments.

    Attributes:
        split: which list of ``read_split`` to evaluate (falls back to all files).
        alpha: significance level.
        percentile: dynamic-region threshold percentile.
        timing: warm-up and runs for Table 2.
        figures: write figures.
        figure: figure settings.
        profile_point: (row, col) of the x-t profile line (default: image centre).
        profile_axis: ``"vertical"`` or ``"horizontal"``.
        device: device for methods and metrics (default: CUDA when available, else CPU).
        reference: the method the statistics test every other method against (the paper tests
            against its proposed model); None: the CRUNet-MR entry when there is one
            (:func:`~.report.default_reference`), else the best mean of each group and metric.
        skip_irregular: methods left out (one note each) at a mask key where some slice's mask
            is not a regular line pattern (:func:`cinerecon.masks.regular_lines`); the command
            line puts GRAPPA here when it comes only from the default method list.
        warn_irregular: methods run anyway at such a key, with one warning per key.
    """

    split: str = "test"
    alpha: float = DEFAULT_ALPHA
    percentile: float = DEFAULT_PERCENTILE
    timing: TimingConfig = TimingConfig()
    figures: bool = True
    figure: FigureConfig = FigureConfig()
    profile_point: tuple[int, int] | None = None
    profile_axis: str = "vertical"
    device: str | None = None
    reference: str | None = None
    skip_irregular: tuple[str, ...] = ()
    warn_irregular: tuple[str, ...] = REGULAR_LINE_METHODS


@dataclass
class EvaluationResult:
    """Everything computed by :func:`evaluate_dir`.

    Attributes:
        out_dir: output folder.
        protocol: metric protocol name.
        records: per-slice metrics.
        dynamic: per-slice dynamic-region metrics.
        summary: Table-1 rows.
        significance: statistical comparisons.
        dynamic_summary: dynamic-region summary rows.
        timings: Table-2 rows.
        table1_markdown: the Table-1 Markdown text.
        written: files written.
        dists: whether DISTS was computed.
        notes: warnings for the user (few slices per group, statistics left out, a method run on
            masks it is not made for).
        info: notes for the user on what was left out (slices without a fully sampled
            reference, methods skipped at a mask key).
        methods: the method names, in the order given (the order of the tables' rows).
        reference: the statistics' reference method (None: the best mean per group and metric).
        unit: what a record and n count, ``"slices"`` or ``"volumes"`` (cmrxrecon protocol).
    """

    out_dir: Path
    protocol: str
    records: list[SliceRecord] = field(default_factory=list)
    dynamic: list[DynamicRecord] = field(default_factory=list)
    summary: list[SummaryRow] = field(default_factory=list)
    significance: list[SignificanceResult] = field(default_factory=list)
    dynamic_summary: list[DynamicSummaryRow] = field(default_factory=list)
    timings: list[TimingResult] = field(default_factory=list)
    table1_markdown: str = ""
    written: list[Path] = field(default_factory=list)
    dists: bool = False
    notes: list[str] = field(default_factory=list)
    reference: str | None = None
    info: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    unit: str = "slices"


#: A slice name as ``prepare`` writes it: ``<volume>/slice<index>``.
SLICE_NAME = re.compile(r"^(?P<volume>.+)/slice(?P<index>\d+)$")


def volume_slice(path: Path) -> tuple[str, int]:
    """(volume, 0-based slice index) of one of our HDF5 slices, from its ``name`` attribute.

    ``P001/cine_sax/slice03`` -> (``P001/cine_sax``, 3); a name without a ``/slice<NN>``
    suffix is a volume of one slice, keyed by the file path.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            name = f.attrs.get("name", path.stem)
    except OSError as e:
        raise DataError(f"{path}: cannot read its 'name' attribute: {e}") from e
    try:
        name = name.decode() if isinstance(name, bytes) else str(name)
    except UnicodeDecodeError:
        raise DataError(f"{path}: attribute 'name' is not UTF-8 text: {name[:40]!r}") from None
    m = SLICE_NAME.match(name)
    return (m["volume"], int(m["index"])) if m else (str(path), 0)


def ranking_files(files: Sequence[Path], sel: RankingSelection) -> tuple[list[Path], dict[Path, str]]:
    """The files the CMRxRecon ranking scores: the central slices of every volume.

    A volume of n slices (n = its highest slice index + 1) is scored on
    :func:`~.metrics.ranking_slices` (n), which must all be among ``files``.

    Returns:
        (the scored files in volume order, file -> volume).
    """
    volumes: dict[str, dict[int, Path]] = {}
    for path in files:
        volume, index = volume_slice(Path(path))
        slices = volumes.setdefault(volume, {})
        if index in slices:
            raise DataError(f"{path}: slice {index} of volume {volume!r} is also {slices[index]}")
        slices[index] = Path(path)
    scored, volume_of = [], {}
    for volume, slices in volumes.items():
        n = max(slices) + 1
        want = ranking_slices(n, sel)
        missing = [i for i in want if i not in slices]
        if missing:
            raise DataError(f"volume {volume!r}: the cmrxrecon protocol scores slices {list(want)} of {n}, but "
                            f"slice(s) {missing} are not among its files ({sorted(slices)} found)")
        for i in want:
            scored.append(slices[i])
            volume_of[slices[i]] = volume
    return scored, volume_of


def _mean_value(records: Sequence[SliceRecord], metric: str) -> float | None:
    """Mean of a metric over records (None when one of them lacks it)."""
    vals = [r.value(metric) for r in records]
    return None if any(v is None for v in vals) else sum(vals) / len(vals)


def _volume_records(per_slice: Mapping[tuple[str, str], list[SliceRecord]]) -> list[SliceRecord]:
    """One record per (volume, method): the mean of its slices' records (the challenge's per-subject mean)."""
    out = []
    for (volume, _), recs in per_slice.items():
        r0 = recs[0]
        out.append(SliceRecord(volume, volume, r0.view, r0.accel, r0.method,
                               *(_mean_value(recs, m) for m in ("psnr", "ssim", "nmse", "haarpsi", "dists"))))
    return out


def _resolve_reference(reference: str | None, methods: Mapping[str, Method]) -> str | None:
    """The given reference (checked to be a method), else :func:`~.report.default_reference`."""
    if reference is None:
        return default_reference(methods)
    if reference not in methods:
        raise ConfigError(f"reference method {reference!r} is not among the evaluated methods {list(methods)}")
    return reference


def accel_key(accel: int | str) -> str:
    """Mask key for an acceleration: 4, ``"4"``, ``"R4"``, ``"r04"`` -> ``"R04"``; other keys pass through (``"R08_uniform"``)."""
    return mask_key(int(accel)) if isinstance(accel, int) else parse_mask_key(str(accel))


def _with_reference(files: Sequence[Path], split: str, data_dir: Path) -> tuple[list[Path], str | None]:
    """The files with a fully sampled reference, and a note on those left out (None when none is).

    Decided from each file's structure (:func:`~cinerecon.data.h5.h5_info`: the stored
    ``mask`` and ``fully_sampled`` attribute, no k-space read).

    Raises:
        DataError: no file has a reference (naming the split and folder, and what to do).
    """
    from ..data.h5 import h5_info

    kept, left = [], []
    for path in files:
        (kept if h5_info(path).fully_sampled else left).append(Path(path))
    if not left:
        return kept, None
    shown = ", ".join(str(p.relative_to(data_dir)) if p.is_relative_to(data_dir) else str(p) for p in left[:2])
    more = f" and {len(left) - 2} more" if len(left) > 2 else ""
    if not kept:
        raise DataError(f"split {split!r} under {data_dir}: none of its {len(left)} slice(s) has fully sampled k-space "
                        f"to score against ({shown}{more}: undersampled only; `prepare cmrxrecon` puts subjects "
                        "without fully sampled data in the test split, for inference); reconstruct them with "
                        "`cinerecon reconstruct`, or put fully sampled subjects in the split (`prepare cmrxrecon "
                        "--split-fractions TRAIN VAL TEST` or --split-file)")
    return kept, (f"left out {len(left)} of {len(files)} slices of split {split!r}: their k-space is undersampled "
                  f"only, with no fully sampled reference to score against ({shown}{more}); {len(kept)} with one remain")


def _mask_patterns(files: Sequence[Path], accel: str) -> tuple[tuple[Path, tuple[int, ...]] | None, int]:
    """One read of each slice's mask ``accel`` (the masks only): the first that varies along the readout
    H, with its shape (None if none), and how many are not regular line patterns."""
    from ..data.h5 import read_mask

    planar, irregular = None, 0
    for path in files:
        m = read_mask(path, accel)[0]
        if planar is None and varies_along_readout(m):
            planar = path, tuple(m.shape)
        irregular += not regular_lines(m)
    return planar, irregular


def _active_methods(methods: Mapping[str, Method], files: Sequence[Path], accel: str, options: EvaluationOptions,
                    res: EvaluationResult) -> dict[str, Method]:
    """The methods run at mask key ``accel``: those of ``options.skip_irregular`` are left out where the masks
    are not regular line patterns (a note; not the statistics' reference), those of ``options.warn_irregular``
    run with a warning."""
    skip = [n for n in methods if n in options.skip_irregular and n != res.reference]
    warn = [n for n in methods if n in options.warn_irregular + options.skip_irregular and n not in skip]
    if not skip and not warn:
        return dict(methods)
    planar, n = _mask_patterns(files, accel)
    if planar is not None:  # a line method cannot run on a 2-D pattern at all
        if warn:  # asked for by name: refused for every key before any slice is scored
            path, shape = planar
            raise DataError(f"{path}: mask 'masks/{accel}' {shape} varies along the readout H (pseudo-radial or 2-D "
                            f"k-t sampling); {', '.join(warn)} take(s) phase-encode line masks only: leave it out of "
                            "--methods")
        for name in skip:
            res.info.append(f"{name} left out at {accel}: its masks vary along the readout H (pseudo-radial); it "
                            "takes phase-encode line masks only")
        return {k: v for k, v in methods.items() if k not in skip}
    if not n:
        return dict(methods)
    why = (f"the {accel} masks of {n} of {len(files)} slice(s) are not regular (equispaced) line patterns, which "
           "its interpolation is made for (on k-t random lines it scores below zero-filling)")
    for name in skip:
        res.info.append(f"{name} left out at {accel}: {why}; name it in --methods to run it anyway")
    for name in warn:
        res.notes.append(f"{name} at {accel}: {why}; its scores there are not representative")
    return {k: v for k, v in methods.items() if k not in skip}


def _prepare_out(out_dir: Path, overwrite: bool) -> None:
    clashes = [out_dir / n for n in OUTPUT_NAMES if (out_dir / n).exists()]
    if clashes and not overwrite:
        raise OutputExistsError(f"{out_dir} already holds evaluation outputs ({', '.join(p.name for p in clashes)}); "
                                "--overwrite (overwrite=True in Python) replaces them")
    check_can_write(out_dir)  # before any metric is computed
    out_dir.mkdir(parents=True, exist_ok=True)  # figures/ appears with the first figure (none with figures=False)


def _target(path: Path, sample, read_h5) -> torch.Tensor:  # noqa: ANN001 - CineSample / reader from data.h5
    if sample.target is not None:
        return sample.target
    full = read_h5(path)
    return SenseOp(full.maps[None]).reduce(full.kspace[None])[0]


def _run_method(name: str, fn: Method, k: torch.Tensor, m: torch.Tensor, s: torch.Tensor, src: Path,
                slice_name: str = "", accel: str = "") -> torch.Tensor:
    with torch.no_grad():
        out = fn(k, m, s)
    b, _, t, h, w = k.shape
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (b, t, h, w):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(f"method {name!r} on {src}: expected an image (B, T, H, W) = {(b, t, h, w)}, got {shape}")
    finite = torch.isfinite(torch.view_as_real(out) if out.is_complex() else out)
    if not bool(finite.all()):
        ck = getattr(fn, "source_checkpoint", None)
        by = f"method {name!r}" + (f" (checkpoint {ck})" if ck else "")
        raise DataError(f"{src}: slice {slice_name!r} at {accel}: {by} produced NaN/Inf values in its (B, T, H, W) = "
                        f"{tuple(out.shape)} output; no tables written")
    return out


def _check_finite(values: Mapping[str, float | None], src: Path, slice_name: str, accel: str, method: str) -> None:
    """Raise DataError, naming the slice, method and metric, at the first value that is not finite."""
    for metric, v in values.items():
        if v is not None and not math.isfinite(v):
            raise DataError(f"{src}: slice {slice_name!r} at {accel}: method {method!r}: metric {metric} is {v} "
                            "(undefined for an all-zero target); no tables written")


def _group_notes(records: list[SliceRecord], alpha: float, unit: str = "slices") -> list[str]:
    """Warnings for (view, accel) groups with few slices (or volumes), and where the Wilcoxon tests are left out."""
    notes = []
    for view, accel in dict.fromkeys((r.view, r.accel) for r in records):
        rs = [r for r in records if r.view == view and r.accel == accel]
        n = len({r.file for r in rs})
        methods = len({r.method for r in rs})
        need = min_pairs(methods - 1, alpha)
        if n < FEW_SLICES:
            notes.append(f"{view} {accel}: only {n} {unit}; means and standard deviations over so few {unit} "
                         f"are fragile (use at least {FEW_SLICES})")
        if methods > 1 and n < need:
            notes.append(f"{view} {accel}: Wilcoxon tests left out: with {n} {unit} and {methods - 1} Bonferroni "
                         f"comparison(s) no difference can reach p < {alpha:g} (the exact test needs at least "
                         f"{need} {unit})")
    return notes


def evaluate_dir(data_dir: str | Path, methods: Mapping[str, Method], *, out_dir: str | Path,
                 accels: tuple[int | str, ...] = ("R04", "R08"), protocol: str = "paper",
                 dists_weights: str | Path | None = None, overwrite: bool = False,
                 options: EvaluationOptions = EvaluationOptions()) -> EvaluationResult:
    """Evaluate ``methods`` on every slice of ``data_dir`` at each acceleration.

    Args:
        data_dir: folder of our HDF5 files (optionally with ``test.txt``).
        methods: name -> ``method(kspace (B,C,T,H,W), mask, maps (B,C,1,H,W)) -> (B,T,H,W)``
            (nn.Modules count parameters in Table 2).
        out_dir: output folder.
        accels: mask keys (``"R04"``) or integers (4 -> ``"R04"``).
        protocol: ``"paper"``, ``"global"`` or ``"cmrxrecon"`` (see :mod:`.metrics` and above).
        dists_weights: DISTS weights (file or folder; see :mod:`.dists`); None uses the
            environment variables and skips DISTS when they are unset.
        overwrite: replace existing outputs in ``out_dir``.
        options: further settings.

    Returns:
        :class:`EvaluationResult`.
    """
    from ..data.h5 import read_h5, read_split  # helper C's module; imported lazily

    if not methods:
        raise DataError("no methods to evaluate")
    p = get_protocol(protocol)
    reference = _resolve_reference(options.reference, methods)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    splits = read_split(data_dir)
    files = list(splits.get(options.split) or [])
    if not files:
        counts = ", ".join(f"{k}: {len(v)}" for k, v in splits.items())
        raise DataError(f"no HDF5 slices in split {options.split!r} under {data_dir} ({counts})")
    files, skipped = _with_reference(files, options.split, data_dir)
    volume_of: dict[Path, str] = {}
    if p.ranking is not None:
        files, volume_of = ranking_files(files, p.ranking)
    dyn_protocol = "paper" if p.ranking is not None else protocol  # dynamic regions need whole series
    _prepare_out(out_dir, overwrite)
    dev = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dists_model = try_load_dists(dists_weights, device=dev)
    res = EvaluationResult(out_dir, protocol, dists=dists_model is not None, reference=reference,
                           unit="volumes" if volume_of else "slices", info=[skipped] if skipped else [],
                           methods=list(methods))
    timings: dict[str, TimingResult] = {}
    fig_dir = out_dir / "figures"
    figures: list[tuple[str, str, torch.Tensor, dict[str, torch.Tensor]]] = []  # (label, accel, target, recons)
    keys = list(dict.fromkeys(accel_key(a) for a in accels))  # R8 and 8 are one group
    actives = {accel: _active_methods(methods, files, accel, options, res) for accel in keys}  # before any scoring
    for accel in keys:
        per_volume: dict[tuple[str, str], list[SliceRecord]] = {}
        active = actives[accel]
        for i, path in enumerate(files):
            sample = read_h5(path, mask_key=accel)
            meta = sample.meta
            target = _target(path, sample, read_h5).to(dev)
            k, m, s = sample.kspace[None].to(dev), sample.mask[None].to(dev), sample.maps[None].to(dev)
            scored = scored_size(*target.shape[-2:], p)
            if min(scored) < p.ssim.size:
                raise DataError(f"{path}: the {protocol!r} protocol scores {scored[0]}x{scored[1]} images of this "
                                f"{tuple(target.shape[-2:])} slice, smaller than the {p.ssim.size}x{p.ssim.size} "
                                "SSIM window")
            with_haarpsi = min(scored) >= HAARPSI_MIN_SIZE
            recons = {}
            for name, fn in active.items():
                rec = _run_method(name, fn, k, m, s, path, meta.name, accel)[0]
                sm = series_metrics(rec, target, protocol, with_haarpsi=with_haarpsi, dists_model=dists_model)
                rm = region_metrics(rec, target, dyn_protocol, options.percentile)
                record = SliceRecord(
                    str(path), meta.name, meta.view, accel, name, float(sm.psnr), float(sm.ssim), float(sm.nmse),
                    None if sm.haarpsi is None else float(sm.haarpsi), None if sm.dists is None else float(sm.dists))
                dyn = DynamicRecord(str(path), meta.name, meta.view, accel, name, float(rm.psnr_dynamic),
                                    float(rm.psnr_static), float(rm.ssim_dynamic), float(rm.ssim_static))
                _check_finite({m: record.value(m) for m in METRIC_NAMES}
                              | {f: getattr(dyn, f) for f in DYNAMIC_FIELDS}, path, meta.name, accel, name)
                if volume_of:
                    per_volume.setdefault((volume_of[path], name), []).append(record)
                else:
                    res.records.append(record)
                res.dynamic.append(dyn)
                if i == 0:
                    recons[name] = rec.cpu()
            if i == 0 and options.figures:  # drawn once every slice has been scored (nothing before a refusal)
                figures.append((f"{meta.name} {accel}", accel, target.cpu(), recons))
            if i == 0:  # each method timed on the first slice it runs on
                timings.update({name: time_call(fn, k, m, s, cfg=options.timing, name=name, device=dev)
                                for name, fn in active.items() if name not in timings})
        res.records += _volume_records(per_volume)
    res.timings = [timings[name] for name in methods if name in timings]
    for label, accel, target, recons in figures:
        res.written.append(plot_reconstructions(target, recons, _figure_path(fig_dir, ("recon", accel), overwrite),
                                                title=label, cfg=options.figure))
        res.written.append(plot_xt_profiles(target, recons, _figure_path(fig_dir, ("xt", accel), overwrite),
                                            options.profile_point, options.profile_axis, label, options.figure))
    res.notes += _group_notes(res.records, options.alpha, res.unit)
    _write_reports(res, options, overwrite)
    return res


def _figure_path(fig_dir: Path, parts: tuple[str, ...], overwrite: bool) -> Path:
    """``fig_dir/<part>_<part>....png`` with each part made a safe name, checked to stay in ``fig_dir`` and
    not to replace a file without ``overwrite``.

    Parts of figure names come from the data (a slice's ``view`` attribute) and flags (mask keys).
    The check is against the output folder holding ``fig_dir``, symbolic links resolved, so a
    ``figures`` link pointing elsewhere is refused.
    """
    path = inside(fig_dir.parent, fig_dir / ("_".join(safe_name(p) for p in parts) + ".png"), "figure")
    check_writable([path], overwrite)
    return path


def _write_reports(res: EvaluationResult, options: EvaluationOptions, overwrite: bool = False) -> None:
    out = res.out_dir
    res.significance = significance(res.records, alpha=options.alpha, reference=res.reference)
    res.summary = summarise(res.records, res.significance, reference=res.reference)
    res.dynamic_summary = summarise_dynamic(res.dynamic)
    res.table1_markdown = table1_markdown(res.summary, res.protocol, res.unit, res.methods)
    note = "" if res.dists else "\nDISTS not computed (no weights configured; see cinerecon.evaluate.dists).\n"
    note += "".join(f"\nNote: {n}.\n" for n in res.info + res.notes)
    # every file atomically (temporary file + rename, umask honoured); clashes were checked by _prepare_out
    atomic_write_text(out / "table1.md", res.table1_markdown + note)
    atomic_write_text(out / "stats.md", stats_markdown(res.significance))
    dyn_note = ("Under the cmrxrecon protocol the dynamic regions use the paper protocol on the whole series "
                "of the scored slices (one row per slice).\n\n" if res.unit == "volumes" else "")
    atomic_write_text(out / "dynamic.md", dyn_note + dynamic_markdown(res.dynamic_summary, options.percentile))
    atomic_write_text(out / "table2.md", table2_markdown(res.timings))
    res.written += [out / n for n in ("table1.md", "stats.md", "dynamic.md", "table2.md")]
    res.written += [
        write_csv(out / "table1.csv", res.summary, SummaryRow),
        write_csv(out / "stats.csv", stats_rows(res.significance), StatsRow),
        write_csv(out / "dynamic.csv", res.dynamic_summary, DynamicSummaryRow),
        write_csv(out / "table2.csv", timing_rows(res.timings), TimingRow),
        write_csv(out / "metrics_per_slice.csv", res.records, SliceRecord),
        write_csv(out / "dynamic_per_slice.csv", res.dynamic, DynamicRecord),
    ]
    if options.figures:
        names: dict[str, str] = {}  # view -> its file-name part, unique even where safe names collide
        for view in dict.fromkeys(r.view for r in res.dynamic_summary):
            base, n = safe_name(view), 1
            while (name := base if n == 1 else f"{base}-{n}") in names.values():
                n += 1
            names[view] = name
        for view, accel in dict.fromkeys((r.view, r.accel) for r in res.dynamic_summary):
            rows = [r for r in res.dynamic_summary if r.view == view and r.accel == accel]
            res.written.append(plot_dynamic_bars(rows, _figure_path(out / "figures", ("dynamic", names[view], accel),
                                                                    overwrite), f"{view} {accel}", options.figure))
