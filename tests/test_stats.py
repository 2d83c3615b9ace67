"""Wilcoxon + Bonferroni against scipy and arithmetic; timing helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from cinerecon.errors import ConfigError, DataError
from cinerecon.evaluate.stats import best_method, bonferroni, compare_to_best, wilcoxon_pair
from cinerecon.evaluate.timing import TimingConfig, count_parameters, time_call


def test_bonferroni_arithmetic():
    np.testing.assert_allclose(bonferroni([0.01, 0.2, 0.6]), [0.03, 0.6, 1.0])
    np.testing.assert_allclose(bonferroni([0.01, 0.02], n_comparisons=5), [0.05, 0.1])
    np.testing.assert_allclose(bonferroni([0.5]), [0.5])
    assert bonferroni([]).size == 0


def test_wilcoxon_pair_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(30, 1, 15)
    b = a - rng.normal(0.5, 0.5, 15)
    stat, p = wilcoxon_pair(a, b)
    ref = sps.wilcoxon(a, b)
    assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    # known exact case: all 8 differences positive and distinct -> W = 0, p = 2 / 2^8
    x = np.arange(1.0, 9.0)
    stat, p = wilcoxon_pair(x + np.arange(1, 9) * 0.1, x)
    assert stat == 0.0 and p == pytest.approx(2 / 2**8)


def test_wilcoxon_pair_degenerate_and_bad_input():
    assert wilcoxon_pair([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])[1] == 1.0
    with pytest.raises(DataError):
        wilcoxon_pair([1.0, 2.0], [1.0])


def test_compare_to_best_picks_direction_and_corrects():
    rng = np.random.default_rng(1)
    base = rng.normal(30, 2, 12)
    vals = {"zf": base - 5 + rng.normal(0, 0.1, 12), "cg": base - 0.01 * rng.random(12), "net": base}
    res = compare_to_best(vals, "psnr", higher_is_better=True, group="sax R04")
    assert res.best == "net" and res.group == "sax R04"
    assert [c.other for c in res.comparisons] == ["zf", "cg"]
    for c in res.comparisons:
        ref = sps.wilcoxon(vals["net"], vals[c.other])
        assert c.p_value == pytest.approx(ref.pvalue)
        assert c.p_adjusted == pytest.approx(min(2 * ref.pvalue, 1.0))
        assert c.significant == (min(2 * ref.pvalue, 1.0) < 0.05)
        assert c.n == 12
    assert res.is_significant("zf") and not res.is_significant("net")
    low = compare_to_best({k: -v for k, v in vals.items()}, "nmse", higher_is_better=False)
    assert low.best == "net"
    forced = compare_to_best(vals, "psnr", True, best="cg")
    assert forced.best == "cg" and {c.other for c in forced.comparisons} == {"zf", "net"}


def test_compare_to_best_checks_inputs():
    with pytest.raises(DataError):
        compare_to_best({"a": [1.0, 2.0], "b": [1.0]}, "psnr", True)
    with pytest.raises(DataError):
        compare_to_best({"a": [1.0], "b": [2.0]}, "psnr", True, best="c")
    assert best_method({"a": [1.0, np.nan], "b": [0.5]}, True) == "a"


def test_count_parameters_and_time_call():
    lin = torch.nn.Linear(3, 2)
    assert count_parameters(lin) == 3 * 2 + 2
    assert count_parameters(lambda k, m, s: k) == 0

    calls = []

    def fn(x):
        calls.append(1)
        return x * 2

    res = time_call(fn, torch.ones(3), cfg=TimingConfig(warmup=2, runs=5), name="double")
    assert len(calls) == 7 and len(res.times_s) == 5
    assert res.median_s == pytest.approx(float(np.median(res.times_s)))
    assert res.method == "double" and res.device == "cpu" and res.parameters == 0
    with pytest.raises(ConfigError):
        time_call(fn, torch.ones(1), cfg=TimingConfig(runs=0))
