"""Tables: per-slice records, Table-1 style summaries with significance marks, statistics,
dynamic-region and Table-2 style timing tables, as Markdown and CSV.

Records hold DISTS as a distance (:mod:`.metrics`); Table 1 (:func:`summarise`,
:func:`table1_markdown`, ``table1.csv``) shows it as 1 - DISTS (higher is better) like the
paper, under the metric name ``"1-dists"``. Statistics test every method against a reference:
the method given as ``reference`` (the paper tests against its proposed model), else the
best mean of each group and metric.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass, make_dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import atomic_output
from .metrics import HIGHER_IS_BETTER, METRIC_NAMES
from .stats import DEFAULT_ALPHA, Comparison, SignificanceResult, compare_to_best, min_pairs
from .timing import TimingResult

LABELS = {"psnr": "PSNR", "ssim": "SSIM", "nmse": "NMSE", "haarpsi": "HaarPSI", "dists": "DISTS",
          "1-dists": "1 − DISTS"}
DECIMALS = {"psnr": 2}
DEFAULT_DECIMALS = 4
SIG_MARK = "*"
#: Metrics that Table 1 shows transformed: record name -> (table name, transform); the paper
#: tabulates 1 - DISTS (a similarity) where records hold the DISTS distance.
TABLE_FORM = {"dists": ("1-dists", lambda v: 1.0 - v)}
TABLE_HIGHER_IS_BETTER = {**HIGHER_IS_BETTER, "1-dists": True}
#: Name prefixes that make a method the default statistical reference (see :func:`default_reference`).
REFERENCE_PREFIXES = ("crunet",)


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
        view, accel, method, metric: the cell; ``metric`` is the table name (``"1-dists"``
            for DISTS, whose mean and std are then those of 1 - DISTS).
        mean, std: over slices, or volumes under the cmrxrecon protocol (population std, ddof 0).
        n: number of slices (volumes).
        is_best: best mean of the group and metric.
        p_adjusted: Bonferroni-adjusted Wilcoxon p against the reference (None for the reference).
        significant: differs significantly from the reference.
        is_reference: the method the statistics test the others against.
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
    is_reference: bool = False


def _ordered(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def groups(records: Sequence[SliceRecord | DynamicRecord]) -> list[tuple[str, str]]:
    """(view, accel) groups in order of appearance."""
    return _ordered((r.view, r.accel) for r in records)  # type: ignore[arg-type]


def metrics_present(records: Sequence[SliceRecord]) -> list[str]:
    """Metric names with a value in every record, in canonical order."""
    return [m for m in METRIC_NAMES if records and all(r.value(m) is not None for r in records)]


def default_reference(methods: Iterable[str]) -> str | None:
    """The proposed model among ``methods``: the first whose name, lower-cased without ``-``, ``_``
    or spaces, starts with ``crunet`` (CRUNet-MR); None when there is none."""
    for m in methods:
        key = "".join(ch for ch in m.lower() if ch.isalnum())
        if key.startswith(REFERENCE_PREFIXES):
            return m
    return None


def table_metric(metric: str) -> str:
    """The name Table 1 uses for a record metric (``"dists"`` -> ``"1-dists"``)."""
    return TABLE_FORM[metric][0] if metric in TABLE_FORM else metric


def table_value(metric: str, value: float) -> float:
    """A record value as Table 1 shows it (1 - DISTS for ``"dists"``)."""
    return TABLE_FORM[metric][1](value) if metric in TABLE_FORM else value


def paired_values(records: Sequence[SliceRecord], metric: str) -> dict[str, np.ndarray]:
    """method -> values ordered by slice file, keeping only slices every method has."""
    by_method: dict[str, dict[str, float]] = {}
    for r in records:
        by_method.setdefault(r.method, {})[r.file] = float(r.value(metric))
    common = sorted(set.intersection(*(set(v) for v in by_method.values()))) if by_method else []
    return {m: np.array([v[f] for f in common]) for m, v in by_method.items()}


def significance(records: Sequence[SliceRecord], metrics: Sequence[str] | None = None,
                 alpha: float = DEFAULT_ALPHA, reference: str | None = None) -> list[SignificanceResult]:
    """Wilcoxon + Bonferroni per (view, accel) and metric: a reference against every other method.

    ``reference`` is the method tested against all others (the paper's proposed model); None
    tests the best mean of each group and metric. A ``reference`` missing from a group raises
    DataError.

    Groups with fewer paired slices than :func:`~.stats.min_pairs` (where no difference could
    be significant) are left out.
    """
    out = []
    metrics = metrics_present(records) if metrics is None else metrics
    for view, accel in groups(records):
        rs = [r for r in records if r.view == view and r.accel == accel]
        for m in metrics:
            vals = paired_values(rs, m)
            if len(vals) < 2 or min(len(v) for v in vals.values()) < min_pairs(len(vals) - 1, alpha):
                continue
            if reference is not None and reference not in vals:
                raise DataError(f"reference method {reference!r} is not among the methods of group "
                                f"'{view} {accel}': {sorted(vals)}")
            out.append(compare_to_best(vals, m, HIGHER_IS_BETTER[m], alpha, best=reference, group=f"{view} {accel}"))
    return out


def summarise(records: Sequence[SliceRecord], sig: Sequence[SignificanceResult] = (),
              metrics: Sequence[str] | None = None, reference: str | None = None) -> list[SummaryRow]:
    """Mean ± std per (view, accel, method, metric) with best, reference and significance flags.

    Values are shown as Table 1 shows them (:func:`table_value`: 1 - DISTS), under
    :func:`table_metric` names; the best is the best mean; the reference is ``reference``
    when given (also where too few slices left the tests out), else the method the
    significance results ``sig`` tested against (their ``best`` field).
    """
    metrics = metrics_present(records) if metrics is None else metrics
    sig_by = {(s.group, s.metric): s for s in sig}
    rows = []
    for view, accel in groups(records):
        rs = [r for r in records if r.view == view and r.accel == accel]
        methods = _ordered(r.method for r in rs)
        for m in metrics:
            tm = table_metric(m)
            means = {}
            for meth in methods:
                v = np.array([table_value(m, float(r.value(m))) for r in rs if r.method == meth])
                means[meth] = (float(v.mean()), float(v.std()), int(v.size))
            s = sig_by.get((f"{view} {accel}", m))
            finite = {k: mu for k, (mu, _, _) in means.items() if math.isfinite(mu)}
            pick = max if TABLE_HIGHER_IS_BETTER[tm] else min
            best = pick(finite, key=finite.__getitem__) if finite else None
            for meth, (mu, sd, n) in means.items():
                comp = next((c for c in s.comparisons if c.other == meth), None) if s is not None else None
                rows.append(SummaryRow(view, accel, meth, tm, mu, sd, n, meth == best,
                                       None if comp is None else comp.p_adjusted,
                                       False if comp is None else comp.significant,
                                       meth == (reference if reference is not None else s.best if s else None)))
    return rows


def _fmt(x: float, metric: str) -> str:
    return f"{x:.{DECIMALS.get(metric, DEFAULT_DECIMALS)}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def table1_markdown(rows: Sequence[SummaryRow], protocol: str = "", unit: str = "slices",
                    order: Sequence[str] = ()) -> str:
    """Table-1 style Markdown: one table per view, columns (accel, metric), cells mean ± std.

    The best mean per column is bold; ``*`` marks a method whose paired values differ
    significantly from the reference method (two-sided Wilcoxon, Bonferroni-adjusted
    p < 0.05), itself marked "(ref.)" when one method is the reference throughout; DISTS is
    shown as 1 − DISTS; a method without an entry in a column (not run at that acceleration)
    shows "–". ``unit`` names what n counts (``"volumes"`` under the cmrxrecon protocol).
    Methods come in ``order`` (those in it), then in order of appearance.
    """
    parts = []
    if protocol:
        parts.append(f"Metric protocol: `{protocol}`.")
    refs = {r.method for r in rows if r.is_reference}
    ref = next(iter(refs)) if len(refs) == 1 else None
    for view in _ordered(r.view for r in rows):
        vr = [r for r in rows if r.view == view]
        cols = _ordered((r.accel, r.metric) for r in vr)
        present = _ordered(r.method for r in vr)
        methods = [m for m in order if m in present] + [m for m in present if m not in order]
        cell = {(r.method, r.accel, r.metric): r for r in vr}
        header = ["Method"] + [f"{a} {LABELS.get(m, m)}{' ↓' if not TABLE_HIGHER_IS_BETTER.get(m, True) else ''}"
                               for a, m in cols]
        body = []
        for meth in methods:
            line = [f"{meth} (ref.)" if meth == ref else meth]
            for a, m in cols:
                r = cell.get((meth, a, m))
                if r is None:
                    line.append("–")
                    continue
                txt = f"{_fmt(r.mean, m)} ± {_fmt(r.std, m)}"
                txt = (f"**{txt}**" if r.is_best else txt) + (SIG_MARK if r.significant else "")
                line.append(txt)
            body.append(line)
        n = max(r.n for r in vr)
        parts.append(f"### View: {view} (n = {n} {unit})\n\n" + markdown_table(header, body))
    against = f"the reference {ref}" if ref is not None else "the best mean"
    notes = [f"Bold: best mean. {SIG_MARK}: significantly different from {against} "
             "(two-sided Wilcoxon signed-rank test, Bonferroni-corrected p < 0.05)."]
    if any(r.metric == "1-dists" for r in rows):
        notes.append("DISTS is tabulated as 1 − DISTS (higher is better), as in the paper; the per-slice "
                     "files hold the DISTS distance.")
    parts.append(" ".join(notes))
    return "\n\n".join(parts) + "\n"


def stats_markdown(results: Sequence[SignificanceResult]) -> str:
    """One row per comparison: group, metric, reference, other, n, W, p, adjusted p (DISTS as a distance)."""
    header = ["Group", "Metric", "Reference", "Other", "n", "W", "p", "p (Bonferroni)", "Significant"]
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
    """Write dataclass rows to CSV; the header comes from the fields of ``row_type`` (or of the rows).

    Written atomically like :func:`cinerecon.files.atomic_write_text` (replaces an existing ``path``).
    """
    path = Path(path)
    kind = row_type if row_type is not None else (type(rows[0]) if rows else None)
    columns = [f.name for f in fields(kind)] if kind is not None and is_dataclass(kind) else []
    with atomic_output(path, overwrite=True) as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            d = asdict(r)  # type: ignore[call-overload]
            w.writerow(["" if d[c] is None else d[c] for c in columns])
    return path
