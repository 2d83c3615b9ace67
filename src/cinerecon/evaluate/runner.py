"""Evaluate reconstruction methods on a folder of our HDF5 slices and write every table and figure.

``evaluate_dir`` reads each test slice at each acceleration (mask key), runs every
method, computes the series metrics of :mod:`.metrics` and the dynamic-region
metrics of :mod:`.dynamic`, tests the best method against the others
(:mod:`.stats`), times each method on one slice (:mod:`.timing`) and writes:

``table1.md`` / ``table1.csv``  mean ± std per view and acceleration, significance marks
``stats.md`` / ``stats.csv``    Wilcoxon + Bonferroni comparisons
``dynamic.md`` / ``dynamic.csv`` PSNR / SSIM inside and outside the dynamic region
``table2.md`` / ``table2.csv``  parameters and inference time per slice
``metrics_per_slice.csv``, ``dynamic_per_slice.csv``  raw per-slice values
``figures/*.png``               reconstructions + error maps, x-t profiles, dynamic bars
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.transforms import mask_key
from ..errors import DataError, OutputExistsError
from ..operators import SenseOp
from .dists import try_load_dists
from .dynamic import DEFAULT_PERCENTILE, region_metrics
from .figures import FigureConfig, plot_dynamic_bars, plot_reconstructions, plot_xt_profiles
from .metrics import HAARPSI_MIN_SIZE, get_protocol, series_metrics
from .report import (
    DynamicRecord,
    DynamicSummaryRow,
    SliceRecord,
    StatsRow,
    SummaryRow,
    TimingRow,
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
from .stats import DEFAULT_ALPHA, SignificanceResult
from .timing import TimingConfig, TimingResult, time_call

Method = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
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


def accel_key(accel: int | str) -> str:
    """Mask key for an acceleration: 4 -> ``"R04"``; strings pass through (``"R08_uniform"``)."""
    if isinstance(accel, int) or (isinstance(accel, str) and accel.isdigit()):
        return mask_key(int(accel))
    return str(accel)


def _prepare_out(out_dir: Path, overwrite: bool) -> None:
    clashes = [out_dir / n for n in OUTPUT_NAMES if (out_dir / n).exists()]
    if clashes and not overwrite:
        raise OutputExistsError(f"{out_dir} already holds evaluation outputs ({', '.join(p.name for p in clashes)}); "
                                "pass overwrite=True / --overwrite to replace them")
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)


def _target(path: Path, sample, read_h5) -> torch.Tensor:  # noqa: ANN001 - CineSample / reader from data.h5
    if sample.target is not None:
        return sample.target
    full = read_h5(path)
    return SenseOp(full.maps[None]).reduce(full.kspace[None])[0]


def _run_method(name: str, fn: Method, k: torch.Tensor, m: torch.Tensor, s: torch.Tensor, src: Path) -> torch.Tensor:
    with torch.no_grad():
        out = fn(k, m, s)
    b, _, t, h, w = k.shape
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (b, t, h, w):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(f"method {name!r} on {src}: expected an image (B, T, H, W) = {(b, t, h, w)}, got {shape}")
    return out


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
        protocol: ``"paper"`` or ``"global"`` (see :mod:`.metrics`).
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
    get_protocol(protocol)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    splits = read_split(data_dir)
    files = list(splits.get(options.split) or [])
    if not files:
        counts = ", ".join(f"{k}: {len(v)}" for k, v in splits.items())
        raise DataError(f"no HDF5 slices in split {options.split!r} under {data_dir} ({counts})")
    _prepare_out(out_dir, overwrite)
    dev = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dists_model = try_load_dists(dists_weights, device=dev)
    res = EvaluationResult(out_dir, protocol, dists=dists_model is not None)
    fig_dir = out_dir / "figures"
    for a_index, accel in enumerate(accel_key(a) for a in accels):
        for i, path in enumerate(files):
            sample = read_h5(path, mask_key=accel)
            meta = sample.meta
            target = _target(path, sample, read_h5).to(dev)
            k, m, s = sample.kspace[None].to(dev), sample.mask[None].to(dev), sample.maps[None].to(dev)
            with_haarpsi = min(target.shape[-2:]) >= HAARPSI_MIN_SIZE
            recons = {}
            for name, fn in methods.items():
                rec = _run_method(name, fn, k, m, s, path)[0]
                sm = series_metrics(rec, target, protocol, with_haarpsi=with_haarpsi, dists_model=dists_model)
                rm = region_metrics(rec, target, protocol, options.percentile)
                res.records.append(SliceRecord(
                    str(path), meta.name, meta.view, accel, name, float(sm.psnr), float(sm.ssim), float(sm.nmse),
                    None if sm.haarpsi is None else float(sm.haarpsi), None if sm.dists is None else float(sm.dists)))
                res.dynamic.append(DynamicRecord(str(path), meta.name, meta.view, accel, name, float(rm.psnr_dynamic),
                                                 float(rm.psnr_static), float(rm.ssim_dynamic), float(rm.ssim_static)))
                if i == 0:
                    recons[name] = rec.cpu()
            if i == 0 and options.figures:
                label = f"{meta.name} {accel}"
                res.written.append(plot_reconstructions(target.cpu(), recons, fig_dir / f"recon_{accel}.png",
                                                        title=label, cfg=options.figure))
                res.written.append(plot_xt_profiles(target.cpu(), recons, fig_dir / f"xt_{accel}.png",
                                                    options.profile_point, options.profile_axis, label, options.figure))
            if i == 0 and a_index == 0:
                res.timings = [time_call(fn, k, m, s, cfg=options.timing, name=name, device=dev)
                               for name, fn in methods.items()]
    _write_reports(res, options)
    return res


def _write_reports(res: EvaluationResult, options: EvaluationOptions) -> None:
    out = res.out_dir
    res.significance = significance(res.records, alpha=options.alpha)
    res.summary = summarise(res.records, res.significance)
    res.dynamic_summary = summarise_dynamic(res.dynamic)
    res.table1_markdown = table1_markdown(res.summary, res.protocol)
    note = "" if res.dists else "\nDISTS not computed (no weights configured; see cinerecon.evaluate.dists).\n"
    (out / "table1.md").write_text(res.table1_markdown + note)
    (out / "stats.md").write_text(stats_markdown(res.significance))
    (out / "dynamic.md").write_text(dynamic_markdown(res.dynamic_summary, options.percentile))
    (out / "table2.md").write_text(table2_markdown(res.timings))
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
        for view, accel in dict.fromkeys((r.view, r.accel) for r in res.dynamic_summary):
            rows = [r for r in res.dynamic_summary if r.view == view and r.accel == accel]
            res.written.append(plot_dynamic_bars(rows, out / "figures" / f"dynamic_{view}_{accel}.png",
                                                 f"{view} {accel}", options.figure))
