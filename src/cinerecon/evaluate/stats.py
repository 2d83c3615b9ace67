"""Paired significance tests: the best method against each other one.

Two-sided Wilcoxon signed-rank tests (``scipy.stats.wilcoxon``) over paired
per-slice (or per-series) values, with the Bonferroni correction for the number of
comparisons (p * m, capped at 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ..errors import DataError

DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    """One paired test of ``best`` against ``other``.

    Attributes:
        best: reference (best) method.
        other: compared method.
        n: number of pairs.
        statistic: Wilcoxon statistic (NaN when all differences are zero).
        p_value: raw two-sided p-value (1 when all differences are zero).
        p_adjusted: Bonferroni-adjusted p-value.
        significant: ``p_adjusted < alpha``.
        median_difference: median of best - other.
    """

    best: str
    other: str
    n: int
    statistic: float
    p_value: float
    p_adjusted: float
    significant: bool
    median_difference: float


@dataclass(frozen=True)
class SignificanceResult:
    """All comparisons of one metric in one group (e.g. view and acceleration).

    Attributes:
        metric: metric name.
        best: method with the best mean.
        higher_is_better: direction of the metric.
        alpha: significance level.
        comparisons: one per other method.
        group: free label of the group (e.g. ``"sax R04"``).
    """

    metric: str
    best: str
    higher_is_better: bool
    alpha: float
    comparisons: tuple[Comparison, ...]
    group: str = ""

    def is_significant(self, method: str) -> bool:
        """Whether ``method`` differs significantly from the best (False for the best itself)."""
        return any(c.other == method and c.significant for c in self.comparisons)


def bonferroni(p_values: Sequence[float] | np.ndarray, n_comparisons: int | None = None) -> np.ndarray:
    """Bonferroni-adjusted p-values: min(p * m, 1), m = ``n_comparisons`` or ``len(p_values)``."""
    p = np.asarray(p_values, dtype=float)
    m = p.size if n_comparisons is None else int(n_comparisons)
    if m < 1 and p.size:
        raise DataError(f"number of comparisons must be >= 1, got {m}")
    return np.minimum(p * m, 1.0)


def best_method(values: Mapping[str, Sequence[float] | np.ndarray], higher_is_better: bool) -> str:
    """Method with the best mean (ties: first in order); NaN means are never best."""
    means = {k: float(np.nanmean(np.asarray(v, dtype=float))) if len(v) else float("nan") for k, v in values.items()}
    valid = {k: m for k, m in means.items() if np.isfinite(m)}
    if not valid:
        raise DataError(f"no finite values to rank methods {sorted(values)}")
    pick = max if higher_is_better else min
    return pick(valid, key=valid.__getitem__)


def min_pairs(n_comparisons: int, alpha: float = DEFAULT_ALPHA) -> int:
    """Fewest pairs with which a two-sided Wilcoxon signed-rank test can reach significance after Bonferroni.

    The smallest two-sided p-value of the exact test on n pairs is 2 / 2**n (every
    difference of one sign), so with m comparisons at level alpha a difference can only be
    significant when 2 / 2**n < alpha / m. With fewer pairs the test cannot find anything,
    and its p = 1 would read as "no difference"; such tests are left out instead.
    alpha = 0.05: 6 pairs for one comparison, 8 for four.
    """
    m = max(int(n_comparisons), 1)
    n = 1
    while 2.0 / 2 ** n >= alpha / m:
        n += 1
    return n


def wilcoxon_pair(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of paired a, b: (statistic, p-value).

    All-zero differences give (NaN, 1.0) (no evidence of a difference).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise DataError(f"paired values must be 1-D of equal length, got {a.shape} and {b.shape}")
    d = a - b
    if not np.any(d != 0):
        return float("nan"), 1.0
    res = sps.wilcoxon(a, b)
    return float(res.statistic), float(res.pvalue)


def compare_to_best(values: Mapping[str, Sequence[float] | np.ndarray], metric: str, higher_is_better: bool,
                    alpha: float = DEFAULT_ALPHA, best: str | None = None, group: str = "") -> SignificanceResult:
    """Test the best method against every other one on paired values.

    Args:
        values: method -> paired values (same order of slices for every method).
        metric: metric name (for labels).
        higher_is_better: direction used to pick the best method.
        alpha: level for ``significant``.
        best: force the reference method (default: best mean).
        group: label stored in the result.

    Returns:
        :class:`SignificanceResult`, Bonferroni over ``len(values) - 1`` comparisons.
    """
    lengths = {k: len(v) for k, v in values.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"paired values of {metric} must have equal lengths per method, got {lengths}")
    ref = best if best is not None else best_method(values, higher_is_better)
    if ref not in values:
        raise DataError(f"reference method {ref!r} not among {sorted(values)}")
    others = [k for k in values if k != ref]
    raw = [wilcoxon_pair(values[ref], values[o]) for o in others]
    adj = bonferroni([p for _, p in raw], len(others)) if others else np.array([])
    comps = tuple(
        Comparison(ref, o, lengths[o], s, p, float(pa), bool(pa < alpha),
                   float(np.median(np.asarray(values[ref], float) - np.asarray(values[o], float))))
        for o, (s, p), pa in zip(others, raw, adj))
    return SignificanceResult(metric, ref, higher_is_better, alpha, comps, group)
