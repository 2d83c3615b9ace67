"""The phantom's image statistics lie in the range of real cine series (benchmarks/phantom_realism.py).

The statistics come from the benchmark script (imported by path); its region finder is first
checked against the phantom's own labels. The bands come from the real series under
``../shared/data/real_cine*/`` (those tests skip when they are absent). The simulator before
the realism changes fails both band tests (high-frequency share about -33 dB against a real
-30 to -27 dB; moving fraction about 0.096 against a real 0.04-0.07).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cinerecon.data.simulate import LABELS, SimConfig, load_real_cine_npz, simulate_phantom
from conftest import load_benchmark

SEEDS = (0, 1, 2, 3)
CFG = SimConfig(frames=12, size=(128, 128))


def _bench():
    return load_benchmark("phantom_realism")


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.fixture(scope="module")
def phantom_stats(bench):
    """Statistics of the noise-free phantom, per (view, seed)."""
    return {(v, s): bench.measure(np.abs(simulate_phantom(replace(CFG, view=v, seed=s)).image), noisy=False)
            for v in ("sax", "lax") for s in SEEDS}


@pytest.fixture(scope="module")
def real_stats(bench):
    series = bench.real_series()
    if not series:
        pytest.skip(f"no real cine series under {bench.SHARED_DATA}/real_cine*")
    return {name: bench.measure(load_real_cine_npz(path)[0]) for name, path in series}


def test_region_finder_recovers_the_phantom_ventricle_and_end_systole(bench):
    # the measurement needs no labels; on the phantom its ventricle must match a true one
    # (the LV in short axis, the LV or the RV in the four-chamber view)
    for view, chambers in (("sax", ("lv_blood",)), ("lax", ("lv_blood", "rv_blood"))):
        ph = simulate_phantom(replace(CFG, view=view, seed=5))
        found = bench.find_regions(bench.normalise(np.abs(ph.image)))["lv"]
        iou = max((found & (ph.labels == LABELS.index(c))).sum() / (found | (ph.labels == LABELS.index(c))).sum()
                  for c in chambers)
        assert iou > 0.75, (view, iou)
        areas = found.sum(axis=(1, 2))
        assert abs(int(np.argmin(areas)) - int(np.argmax(ph.contraction))) <= 1


def test_fine_detail_adds_high_frequency_power(bench):
    plain = bench.measure(np.abs(simulate_phantom(replace(CFG, detail=0.0)).image), noisy=False)
    rich = bench.measure(np.abs(simulate_phantom(CFG).image), noisy=False)
    assert rich["hf_db"] > plain["hf_db"] + 1.0
    assert rich["texture"] > 1.3 * plain["texture"]


def test_high_frequency_share_within_real_band(phantom_stats, real_stats):
    real = [r["hf_db"] for r in real_stats.values()]
    lo, hi = min(real) - 1.5, max(real) + 1.5  # dB
    mean = float(np.mean([s["hf_db"] for s in phantom_stats.values()]))
    assert lo <= mean <= hi, (mean, (lo, hi))


def test_moving_fraction_within_real_band(phantom_stats, real_stats):
    real = [r["moving"] for r in real_stats.values()]
    lo, hi = 0.8 * min(real), 1.15 * max(real)
    mean = float(np.mean([s["moving"] for s in phantom_stats.values()]))
    assert lo <= mean <= hi, (mean, (lo, hi))
