"""Tables (Markdown / CSV) from synthetic records, and figures."""

from __future__ import annotations

import csv

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from scipy import stats as sps

from cinerecon.errors import DataError
from cinerecon.evaluate import figures as Fg
from cinerecon.evaluate import report as R
from cinerecon.evaluate.timing import TimingResult


def _records(n=10, seed=0):
    """Three methods on n sax slices at R04: 'net' best, 'zf' far worse, 'cg' close to 'net'."""
    rng = np.random.default_rng(seed)
    base = rng.normal(32, 2, n)
    ssim = rng.uniform(0.8, 0.9, n)
    out = []
    for meth, dp, ds in (("zf", -6.0, -0.2), ("cg", -0.001, 0.0), ("net", 0.0, 0.0)):
        jitter = rng.normal(0, 0.3 if meth == "zf" else 1e-4, n)
        for i in range(n):
            out.append(R.SliceRecord(f"s{i:02d}.h5", f"s{i}", "sax", "R04", meth, base[i] + dp + jitter[i],
                                     ssim[i] + ds + 0.01 * jitter[i], 0.01 - dp / 1000, None, None))
    return out


def test_summary_means_std_best_and_significance():
    recs = _records()
    sig = R.significance(recs)
    assert {s.metric for s in sig} == {"psnr", "ssim", "nmse"}  # haarpsi / dists absent
    rows = R.summarise(recs, sig)
    by = {(r.method, r.metric): r for r in rows}
    zf = np.array([r.psnr for r in recs if r.method == "zf"])
    assert by[("zf", "psnr")].mean == pytest.approx(zf.mean()) and by[("zf", "psnr")].std == pytest.approx(zf.std())
    assert by[("net", "psnr")].is_best and by[("net", "psnr")].p_adjusted is None
    net = np.array([r.psnr for r in recs if r.method == "net"])
    p = sps.wilcoxon(net, zf).pvalue
    assert by[("zf", "psnr")].p_adjusted == pytest.approx(min(2 * p, 1.0))
    assert by[("zf", "psnr")].significant
    assert by[("net", "nmse")].is_best  # lower is better


def test_table1_markdown_marks():
    recs = _records()
    rows = R.summarise(recs, R.significance(recs))
    md = R.table1_markdown(rows, "paper")
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| Method"))
    assert "R04 PSNR" in header and "R04 NMSE ↓" in header
    zf_line = next(line for line in lines if line.startswith("| zf "))
    net_line = next(line for line in lines if line.startswith("| net "))
    zf_mean = np.mean([r.psnr for r in recs if r.method == "zf"])
    assert f"{zf_mean:.2f} ± " in zf_line and "*" in zf_line.split("|")[2]
    assert net_line.split("|")[2].strip().startswith("**")
    assert "paper" in md and "Wilcoxon" in md


def test_csv_round_trip(tmp_path):
    recs = _records(n=4)
    path = R.write_csv(tmp_path / "per_slice.csv", recs)
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(recs)
    assert float(rows[5]["psnr"]) == pytest.approx(recs[5].psnr) and rows[5]["haarpsi"] == ""
    empty = R.write_csv(tmp_path / "empty.csv", [], R.SummaryRow)
    assert empty.read_text().strip().split(",")[0] == "view"


def test_stats_left_out_where_no_difference_could_be_significant():
    from cinerecon.evaluate.stats import min_pairs

    # exact two-sided Wilcoxon: smallest p = 2 / 2**n must fall below alpha / m
    assert [min_pairs(m) for m in (1, 2, 4)] == [6, 7, 8]
    assert all(2 / 2 ** min_pairs(m) < 0.05 / m <= 2 / 2 ** (min_pairs(m) - 1) for m in range(1, 20))
    assert R.significance(_records(n=6)) == []  # 3 methods: 2 comparisons need 7 slices
    assert len(R.significance(_records(n=7))) == 3


def test_stats_and_dynamic_and_timing_tables():
    recs = _records(n=7)
    sig = R.significance(recs)
    md = R.stats_markdown(sig)
    assert md.count("\n") == 2 + 2 * 3  # header + rule + (2 comparisons x 3 metrics)
    flat = R.stats_rows(sig)
    assert len(flat) == 6 and all(r.best == "net" for r in flat if r.metric == "psnr")
    dyn = [R.DynamicRecord(f"s{i}", f"s{i}", "lax", "R08", m, 20.0 + i + (m == "b"), 30.0, 0.7, 0.9)
           for m in ("a", "b") for i in range(3)]
    ds = R.summarise_dynamic(dyn)
    assert [r.method for r in ds] == ["a", "b"]
    assert ds[1].psnr_dynamic == pytest.approx(22.0) and ds[0].psnr_dynamic_std == pytest.approx(np.std([20, 21, 22]))
    assert "21.00 ± 0.82" in R.dynamic_markdown(ds)
    t2 = R.table2_markdown([TimingResult("net", 1234567, 0.01234, (0.01234,), "cpu"),
                            TimingResult("zf", 0, 0.001, (0.001,), "cpu")])
    assert "1,234,567" in t2 and "0.0123" in t2 and "| zf | – |" in t2


def test_xt_profile_slices():
    s = np.arange(2 * 5 * 7, dtype=float).reshape(2, 5, 7)
    np.testing.assert_array_equal(Fg.xt_profile(s), s[:, :, 3].T)
    np.testing.assert_array_equal(Fg.xt_profile(s, (1, 2), "horizontal"), s[:, 1, :].T)
    with pytest.raises(DataError):
        Fg.xt_profile(s, (9, 0))
    with pytest.raises(DataError):
        Fg.xt_profile(s, axis="diagonal")


def test_figures_are_written(tmp_path):
    g = torch.Generator().manual_seed(0)
    tgt = torch.rand(4, 16, 18, generator=g) * (1 + 1j)
    recs = {"zf": tgt * 0.8, "net": tgt + 0.01}
    p1 = Fg.plot_reconstructions(tgt, recs, tmp_path / "r.png", title="t")
    p2 = Fg.plot_xt_profiles(tgt, recs, tmp_path / "x.png", point=(5, 6))
    rows = R.summarise_dynamic([R.DynamicRecord("f", "f", "sax", "R04", m, 25.0, 30.0, 0.8, 0.9) for m in recs])
    p3 = Fg.plot_dynamic_bars(rows, tmp_path / "d.png")
    for p in (p1, p2, p3):
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
        assert img[..., :3].std() > 0.01  # not a blank canvas
    with pytest.raises(DataError):
        Fg.plot_reconstructions(tgt, {"bad": tgt[:2]}, tmp_path / "bad.png")


def test_reference_method_is_tested_against_every_other():
    recs = _records(n=10)
    sig = R.significance(recs, reference="cg")  # the paper tests its proposed model, not the best mean
    psnr = next(s for s in sig if s.metric == "psnr")
    assert psnr.best == "cg" and {c.other for c in psnr.comparisons} == {"zf", "net"}
    cg = np.array([r.psnr for r in recs if r.method == "cg"])
    zf = np.array([r.psnr for r in recs if r.method == "zf"])
    zf_comp = next(c for c in psnr.comparisons if c.other == "zf")
    assert zf_comp.p_adjusted == pytest.approx(min(2 * sps.wilcoxon(cg, zf).pvalue, 1.0))
    rows = R.summarise(recs, sig)
    by = {(r.method, r.metric): r for r in rows}
    assert by[("net", "psnr")].is_best and not by[("net", "psnr")].is_reference  # bold: best mean
    assert by[("cg", "psnr")].is_reference and by[("cg", "psnr")].p_adjusted is None
    md = R.table1_markdown(rows, "paper")
    assert "| cg (ref.) |" in md and "the reference cg" in md
    net_cell = next(line for line in md.splitlines() if line.startswith("| net ")).split("|")[2].strip()
    assert by[("net", "psnr")].significant  # the best mean, not the reference: its mark must show
    assert net_cell.startswith("**") and net_cell.endswith("**" + R.SIG_MARK)
    assert "| Reference |" in R.stats_markdown(sig)
    with pytest.raises(DataError, match="reference"):
        R.significance(recs, reference="nope")


def test_default_reference_is_the_crunet_entry():
    assert R.default_reference(["zero_filled", "crnn", "CRUNet-MR", "crunet_b"]) == "CRUNet-MR"
    assert R.default_reference(["zf", "crunet_mixed"]) == "crunet_mixed"
    assert R.default_reference(["zf", "unet3d", "crnn"]) is None


def test_table1_shows_one_minus_dists():
    recs = [R.SliceRecord(f"s{i}.h5", f"s{i}", "sax", "R04", m, 30.0 + i, 0.9, 0.01, None, d + 0.01 * i)
            for m, d in (("a", 0.20), ("b", 0.05)) for i in range(6)]
    rows = R.summarise(recs, R.significance(recs))
    by = {(r.method, r.metric): r for r in rows}
    assert ("a", "dists") not in by
    a = 1 - np.array([0.20 + 0.01 * i for i in range(6)])
    assert by[("a", "1-dists")].mean == pytest.approx(a.mean()) and by[("a", "1-dists")].std == pytest.approx(a.std())
    assert by[("b", "1-dists")].is_best and not by[("a", "1-dists")].is_best  # lower distance = higher 1 - DISTS
    md = R.table1_markdown(rows)
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert "R04 1 − DISTS" in header and "DISTS ↓" not in header
    assert f"{a.mean():.4f} ± {a.std():.4f}" in md and "1 − DISTS (higher is better)" in md


def test_paper_style_figures_crop_quarters_and_label_ssim(tmp_path):
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(1)
    tgt = torch.rand(3, 30, 16, generator=g) + 0.5j
    rec = tgt + 0.1 * torch.rand(3, 30, 16, generator=g)
    np.testing.assert_array_equal(Fg.paper_crop(np.arange(30 * 2).reshape(30, 2)), np.arange(14, 46).reshape(16, 2))
    labels = Fg.ssim_labels(tgt, {"net": rec})
    g_np, r_np = np.abs(tgt.numpy())[:, 7:23], np.abs(rec.numpy())[:, 7:23]  # rows 30 // 4 .. 30 - 30 // 4
    ref = np.mean([structural_similarity(g_np[t] / g_np[t].max(), r_np[t] / r_np[t].max(), data_range=1.0)
                   for t in range(3)])
    assert labels == {"net": f"SSIM {ref:.4f}"}
    full = Fg.ssim_labels(tgt, {"net": rec}, Fg.FigureConfig(paper_style=False))
    assert full != labels
    path = Fg.plot_reconstructions(tgt, {"net": rec}, tmp_path / "p.png", cfg=Fg.FigureConfig(dpi=40))
    assert mpimg.imread(path).shape[0] > 20
