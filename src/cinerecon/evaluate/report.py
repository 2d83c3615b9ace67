"""Tables: per-slice records, Table-1 style summaries with significance marks, statistics,
dynamic-region and Table-2 style timing tables, as Markdown and CSV.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass, make_dataclass
from pathlib import Path

import numpy as np

from .metrics import HIGHER_IS_BETTER
from .stats import DEFAULT_ALPHA, Comparison, SignificanceResult, compare_to_best
from .timing import TimingResult

LABELS = {"psnr": "PSNR", "ssim": "SSIM", "nmse": "NMSE", "haarpsi": "HaarPSI", "dists": "DISTS"}
DECIMALS = {"psnr": 2}
DEFAULT_DECIMALS = 4
SIG_MARK = "*"


@dataclass(frozen=True)
class SliceRecord:
    """Metrics of one method on one slice (series) at one acceleration.

    Attributes:
        file: source file.
        name: slice name.
        view: ``sax`` / ``lax`` / ...
        accel: mask key, e.g. ``R04``.
        method: method name.
        psnr, ssim, nmse: series values.
        haarpsi, dists: series values or None when not computed.
    """

    file: str
    name: str
    view: str
    accel: str
    method: str
    psnr: float
    ssim: float
    nmse: float
    haarpsi: float | None = None
    dists: float | None = None

    def value(self, metric: str) -> float | None:
        """Value of ``metric``."""
        return getattr(self, metric)


@dataclass(frozen=True)
class DynamicRecord:
    """Dynamic-region metrics of one method on one slice."""

    file: str
    name: str
    view: str
    accel: str
    method: str
    psnr_dynamic: float
    psnr_static: float
    ssim_dynamic: float
    ssim_static: float


DYNAMIC_FIELDS = ("psnr_dynamic", "psnr_static", "ssim_dynamic", "ssim_static")


@dataclass(frozen=True)
class SummaryRow:
    """Mean and standard deviation of one metric for one method in one (view, accel) group.

    Attributes:
        view, accel, method, metric: the cell.
        mean, std: over slices (population std, ddof 0).
        n: number of slices.
        is_best: best mean of the group and metric.
        p_adjusted: Bonferroni-adjusted Wilcoxon p against the best (None for the best).
        significant: differs significantly from the best.
    """

    view: str
    accel: str
    method: str
    metric: str
    mean: float
    std: float
    n: int
    is_best: bool
    p_adjusted: float | None
    significant: bool


def _ordered(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def groups(records: Sequence[SliceRecord | DynamicRecord]) -> list[tuple[str, str]]:
    """(view, accel) groups in order of appearance."""
    return _ordered((r.view, r.accel) for r in records)  # type: ignore[arg-type]


def metrics_present(records: Sequence[SliceRecord]) -> list[str]:
    """Metric names with a value in every record, in canonical order."""
    return [m for m in LABELS if records and all(r.value(m) is not None for r in records)]


def paired_values(records: Sequence[SliceRecord], metric: str) -> dict[str, np.ndarray]:
    """method -> values ordered by slice file, keeping only slices every method has."""
    by_method: dict[str, dict[str, float]] = {}
    for r in records:
        by_method.setdefault(r.method, {})[r.file] = float(r.value(metric))
    common = sorted(set.intersection(*(set(v) for v in by_method.values()))) if by_method else []
    return {m: np.array([v[f] for f in common]) for m, v in by_method.items()}


def significance(records: Sequence[SliceRecord], metrics: Sequence[str] | None = None,
                 alpha: float = DEFAULT_ALPHA) -> list[SignificanceResult]:
    """Wilcoxon + Bonferroni of the best method against the others, per (view, accel) and metric."""
    out = []
    metrics = metrics_present(records) if metrics is None else metrics
    for view, accel in groups(records):
        rs = [r for r in records if r.view == view and r.accel == accel]
        for m in metrics:
            vals = paired_values(rs, m)
            if len(vals) < 2 or min(len(v) for v in vals.values()) == 0:
                continue
            out.append(compare_to_best(vals, m, HIGHER_IS_BETTER[m], alpha, group=f"{view} {accel}"))
    return out


def summarise(records: Sequence[SliceRecord], sig: Sequence[SignificanceResult] = (),
              metrics: Sequence[str] | None = None) -> list[SummaryRow]:
    """Mean ± std per (view, accel, method, metric) with best and significance flags."""
    metrics = metrics_present(records) if metrics is None else metrics
    sig_by = {(s.group, s.metric): s for s in sig}
    rows = []
    for view, accel in groups(records):
        rs = [r for r in records if r.view == view and r.accel == accel]
        methods = _ordered(r.method for r in rs)
        for m in metrics:
            means = {}
            for meth in methods:
                v = np.array([float(r.value(m)) for r in rs if r.method == meth])
                means[meth] = (float(v.mean()), float(v.std()), int(v.size))
            s = sig_by.get((f"{view} {accel}", m))
            finite = {k: mu for k, (mu, _, _) in means.items() if math.isfinite(mu)}
            pick = max if HIGHER_IS_BETTER[m] else min
            best = s.best if s is not None else (pick(finite, key=finite.__getitem__) if finite else None)
            for meth, (mu, sd, n) in means.items():
                comp = next((c for c in s.comparisons if c.other == meth), None) if s is not None else None
                rows.append(SummaryRow(view, accel, meth, m, mu, sd, n, meth == best,
                                       None if comp is None else comp.p_adjusted,
                                       False if comp is None else comp.significant))
    return rows


def _fmt(x: float, metric: str) -> str:
    return f"{x:.{DECIMALS.get(metric, DEFAULT_DECIMALS)}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def table1_markdown(rows: Sequence[SummaryRow], protocol: str = "") -> str:
    """Table-1 style Markdown: one table per view, columns (accel, metric), cells mean ± std.

    The best mean per column is bold; ``*`` marks a method whose paired values differ
    significantly from the best (two-sided Wilcoxon, Bonferroni-adjusted p < 0.05).
    """
    parts = []
    if protocol:
        parts.append(f"Metric protocol: `{protocol}`.")
    for view in _ordered(r.view for r in rows):
        vr = [r for r in rows if r.view == view]
        cols = _ordered((r.accel, r.metric) for r in vr)
        methods = _ordered(r.method for r in vr)
        cell = {(r.method, r.accel, r.metric): r for r in vr}
        header = ["Method"] + [f"{a} {LABELS.get(m, m)}{' ↓' if not HIGHER_IS_BETTER.get(m, True) else ''}"
                               for a, m in cols]
        body = []
        for meth in methods:
            line = [meth]
            for a, m in cols:
                r = cell.get((meth, a, m))
                if r is None:
                    line.append("–")
                    continue
                txt = f"{_fmt(r.mean, m)} ± {_fmt(r.std, m)}"
                txt = f"**{txt}**" if r.is_best else txt + (SIG_MARK if r.significant else "")
                line.append(txt)
            body.append(line)
        n = max(r.n for r in vr)
        parts.append(f"### View: {view} (n = {n} slices)\n\n" + markdown_table(header, body))
    parts.append(f"Bold: best mean. {SIG_MARK}: significantly different from the best "
                 "(two-sided Wilcoxon signed-rank test, Bonferroni-corrected p < 0.05).")
    return "\n\n".join(parts) + "\n"


def stats_markdown(results: Sequence[SignificanceResult]) -> str:
    """One row per comparison: group, metric, best, other, n, W, p, adjusted p."""
    header = ["Group", "Metric", "Best", "Other", "n", "W", "p", "p (Bonferroni)", "Significant"]
    body = [[s.group, LABELS.get(s.metric, s.metric), s.best, c.other, str(c.n),
             "nan" if math.isnan(c.statistic) else f"{c.statistic:g}", f"{c.p_value:.3g}", f"{c.p_adjusted:.3g}",
             "yes" if c.significant else "no"] for s in results for c in s.comparisons]
    return markdown_table(header, body) + "\n"


StatsRow = make_dataclass(
    "StatsRow", [("group", "str"), ("metric", "str")] + [(f.name, f.type) for f in fields(Comparison)], frozen=True,
    namespace={"__module__": __name__,
               "__doc__": "Flat CSV row of one comparison: group, metric, then the fields of :class:`Comparison`."})


def stats_rows(results: Sequence[SignificanceResult]) -> list[StatsRow]:
    """Flatten significance results for CSV."""
    return [StatsRow(s.group, s.metric, **asdict(c)) for s in results for c in s.comparisons]


@dataclass(frozen=True)
class DynamicSummaryRow:
    """Mean ± std of dynamic-region metrics for one method in one group."""

    view: str
    accel: str
    method: str
    n: int
    psnr_dynamic: float
    psnr_dynamic_std: float
    psnr_static: float
    psnr_static_std: float
    ssim_dynamic: float
    ssim_dynamic_std: float
    ssim_static: float
    ssim_static_std: float


def summarise_dynamic(records: Sequence[DynamicRecord]) -> list[DynamicSummaryRow]:
    """Mean ± std of each dynamic-region metric per (view, accel, method)."""
    out = []
    for view, accel in groups(records):
        rs = [r for r in records if r.view == view and r.accel == accel]
        for meth in _ordered(r.method for r in rs):
            mr = [r for r in rs if r.method == meth]
            vals = []
            for f in DYNAMIC_FIELDS:
                v = np.array([getattr(r, f) for r in mr], dtype=float)
                vals += [float(v.mean()), float(v.std())]
            out.append(DynamicSummaryRow(view, accel, meth, len(mr), *vals))
    return out


def dynamic_markdown(rows: Sequence[DynamicSummaryRow], percentile: float = 90.0) -> str:
    """Markdown of dynamic vs static PSNR / SSIM."""
    header = ["View", "Accel", "Method", "PSNR dynamic", "PSNR static", "SSIM dynamic", "SSIM static"]
    body = [[r.view, r.accel, r.method, f"{r.psnr_dynamic:.2f} ± {r.psnr_dynamic_std:.2f}",
             f"{r.psnr_static:.2f} ± {r.psnr_static_std:.2f}", f"{r.ssim_dynamic:.4f} ± {r.ssim_dynamic_std:.4f}",
             f"{r.ssim_static:.4f} ± {r.ssim_static_std:.4f}"] for r in rows]
    return (f"Dynamic region: temporal standard deviation of the target magnitude >= its {percentile:g}th "
            "percentile; static: the rest.\n\n" + markdown_table(header, body) + "\n")


def table2_markdown(timings: Sequence[TimingResult]) -> str:
    """Table-2 style Markdown: parameters and median inference time per slice."""
    header = ["Method", "Parameters", "Time per slice (s)", "Device"]
    body = [[t.method, f"{t.parameters:,}" if t.parameters else "–", f"{t.median_s:.4f}", t.device] for t in timings]
    return markdown_table(header, body) + "\n"


@dataclass(frozen=True)
class TimingRow:
    """Flat CSV row of a timing result."""

    method: str
    parameters: int
    median_s: float
    runs: int
    device: str


def timing_rows(timings: Sequence[TimingResult]) -> list[TimingRow]:
    """Flatten timing results for CSV."""
    return [TimingRow(t.method, t.parameters, t.median_s, len(t.times_s), t.device) for t in timings]


def write_csv(path: str | Path, rows: Sequence[object], row_type: type | None = None) -> Path:
    """Write dataclass rows to CSV; the header comes from the fields of ``row_type`` (or of the rows)."""
    path = Path(path)
    kind = row_type if row_type is not None else (type(rows[0]) if rows else None)
    columns = [f.name for f in fields(kind)] if kind is not None and is_dataclass(kind) else []
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            d = asdict(r)  # type: ignore[call-overload]
            w.writerow(["" if d[c] is None else d[c] for c in columns])
    return path
