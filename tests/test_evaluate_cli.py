"""evaluate_dir and ``cinerecon evaluate`` on tiny HDF5 files with plain-callable methods."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cinerecon.commands import evaluate as cmd
from cinerecon.errors import ConfigError, OutputExistsError
from cinerecon.evaluate.figures import FigureConfig
from cinerecon.evaluate.runner import EvaluationOptions, accel_key
from cinerecon.evaluate.timing import TimingConfig
from cinerecon.masks import equispaced
from cinerecon.operators import SenseOp

T, H, W, C = 4, 20, 18, 3
FAST = EvaluationOptions(timing=TimingConfig(warmup=0, runs=1), figure=FigureConfig(dpi=40))


def zero_filled(kspace, mask, maps):
    return SenseOp(maps, mask).adjoint(kspace)


def half(kspace, mask, maps):
    return 0.5 * zero_filled(kspace, mask, maps) + 0.1 * zero_filled(kspace, mask, maps).abs().mean()


def _sample(seed, view):
    from cinerecon.data.sample import CineSample, SampleMeta

    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    r = torch.linspace(0.3, 0.5, T)[:, None, None]
    img = (xx**2 + yy**2 < r**2).float() + 0.3 + 0.05 * torch.rand(T, H, W, generator=g)
    target = (img * torch.exp(1j * 0.3 * xx)).to(torch.complex64)
    maps = torch.randn(C, 1, H, W, dtype=torch.complex64, generator=g)
    maps = maps / (maps.abs() ** 2).sum(0, keepdim=True).sqrt()
    kspace = SenseOp(maps[None]).expand(target[None])[0]
    return CineSample(kspace, torch.ones(1, 1, 1, W), maps, target, SampleMeta(name=f"s{seed}", view=view))


@pytest.fixture
def data_dir(tmp_path):
    h5 = pytest.importorskip("cinerecon.data.h5")
    root = tmp_path / "data"
    masks = {k: torch.from_numpy(equispaced(W, r, acs=4)).float()[None] for k, r in (("R04", 4), ("R08", 8))}
    for i, view in enumerate(("sax", "sax", "lax")):
        h5.write_h5(root / f"slice{i}.h5", _sample(i, view), masks)
    return root


def test_evaluate_dir_writes_tables_and_matches_direct_metrics(data_dir, tmp_path, monkeypatch):
    from cinerecon.data.h5 import read_h5
    from cinerecon.evaluate import dists
    from cinerecon.evaluate.runner import evaluate_dir

    monkeypatch.delenv(dists.ENV_DISTS, raising=False)
    out = tmp_path / "out"
    res = evaluate_dir(data_dir, {"zf": zero_filled, "half": half}, out_dir=out, accels=("R04", 8), protocol="paper",
                       options=FAST)
    for name in ("table1.md", "table1.csv", "stats.md", "stats.csv", "dynamic.md", "dynamic.csv", "table2.md",
                 "table2.csv", "metrics_per_slice.csv", "dynamic_per_slice.csv", "figures/recon_R04.png",
                 "figures/xt_R08.png", "figures/dynamic_sax_R04.png", "figures/dynamic_lax_R08.png"):
        assert (out / name).is_file(), name
    assert len(res.records) == 3 * 2 * 2 and not res.dists
    assert {(r.view, r.accel) for r in res.records} == {("sax", "R04"), ("lax", "R04"), ("sax", "R08"),
                                                        ("lax", "R08")}
    # per-slice values equal the authors' recipe computed here with skimage
    s = read_h5(data_dir / "slice2.h5", mask_key="R08")
    rec = zero_filled(s.kspace[None], s.mask[None], s.maps[None])[0].abs().numpy()
    gt = s.target.abs().numpy()
    ps, ss = [], []
    for t in range(T):
        g, p = gt[t] / gt[t].max(), rec[t] / rec[t].max()
        ps.append(peak_signal_noise_ratio(g, p, data_range=1.0))
        ss.append(structural_similarity(g, p, data_range=1.0))
    with (out / "metrics_per_slice.csv").open() as fh:
        row = next(r for r in csv.DictReader(fh) if r["method"] == "zf" and r["accel"] == "R08"
                   and r["file"].endswith("slice2.h5"))
    assert float(row["psnr"]) == pytest.approx(np.mean(ps), abs=1e-3)
    assert float(row["ssim"]) == pytest.approx(np.mean(ss), abs=1e-4)
    assert row["view"] == "lax" and row["dists"] == ""
    assert "### View: sax" in res.table1_markdown and "| zf |" in res.table1_markdown
    assert [t.method for t in res.timings] == ["zf", "half"]
    with pytest.raises(OutputExistsError):
        evaluate_dir(data_dir, {"zf": zero_filled}, out_dir=out, accels=("R04",), options=FAST)
    again = evaluate_dir(data_dir, {"zf": zero_filled}, out_dir=out, accels=("R04",), overwrite=True,
                         options=EvaluationOptions(figures=False, timing=TimingConfig(warmup=0, runs=1)))
    assert len(again.records) == 3


def test_cli_evaluate_prints_table_and_refuses_overwrite(data_dir, tmp_path, monkeypatch, capsys):
    from cinerecon.cli import main
    from cinerecon.evaluate import dists

    monkeypatch.delenv(dists.ENV_DISTS, raising=False)
    monkeypatch.setattr(cmd, "build_methods", lambda names, ckpts, device: {"zf": zero_filled})
    out = tmp_path / "cli_out"
    argv = ["evaluate", str(data_dir), "--accel", "4", "--out", str(out), "--protocol", "global", "--no-figures",
            "--timing-runs", "1"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "R04 PSNR" in text and "| zf |" in text and "global" in text
    assert main(argv) == 2  # outputs exist
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0


def test_parse_checkpoints_and_accel_keys():
    assert cmd.parse_checkpoints(["net=a/b.pt", "x=c.pt"]) == {"net": cmd.Path("a/b.pt"), "x": cmd.Path("c.pt")}
    for bad in (["net"], ["=a.pt"], ["a=x", "a=y"]):
        with pytest.raises(ConfigError):
            cmd.parse_checkpoints(bad)
    assert [accel_key(a) for a in (4, "8", "R10", "R8", "r08", "R08_uniform")] == ["R04", "R08", "R10", "R08", "R08",
                                                                              "R08_uniform"]


def test_parser_defaults():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cmd.add_parser(sub)
    args = parser.parse_args(["evaluate", "d", "--out", "o"])
    assert args.methods is None and args.accel == ["4", "8"] and args.protocol == "paper"  # None: DEFAULT_METHODS
    assert "grappa" in cmd.DEFAULT_METHODS
    assert parser.parse_args(["evaluate", "d", "--out", "o", "--methods", "grappa"]).methods == ["grappa"]
    assert args.dists_weights is None and not args.overwrite


def test_cli_reference_method_and_default_crunet_reference(data_dir, tmp_path, monkeypatch, capsys):
    from cinerecon.cli import main
    from cinerecon.evaluate import dists
    from cinerecon.models import build_model

    monkeypatch.delenv(dists.ENV_DISTS, raising=False)
    torch.manual_seed(0)
    net = build_model("crunet", chans=2, cascades=1).eval()  # found as the reference by its type, any name
    monkeypatch.setattr(cmd, "build_methods", lambda names, ckpts, device: {"zf": zero_filled, "half": half,
                                                                            "ours": net})
    base = ["evaluate", str(data_dir), "--accel", "4", "--no-figures", "--timing-runs", "1"]
    assert main(base + ["--out", str(tmp_path / "a"), "--reference", "half"]) == 0
    assert "| half (ref.) |" in capsys.readouterr().out
    assert main(base + ["--out", str(tmp_path / "b")]) == 0
    assert "| ours (ref.) |" in capsys.readouterr().out
    assert main(base + ["--out", str(tmp_path / "c"), "--reference", "nope"]) == 2
    assert "--reference 'nope'" in capsys.readouterr().err
    parser = argparse.ArgumentParser()
    cmd.add_parser(parser.add_subparsers())
    assert parser.parse_args(["evaluate", "d", "--out", "o", "--protocol", "cmrxrecon"]).protocol == "cmrxrecon"


def test_repeated_accelerations_colliding_views_and_a_figures_link(tmp_path):
    """R08 and 8 are one group; views with one safe name get two figures; figures/ linked outside is refused."""
    import h5py
    from cinerecon.data.h5 import write_h5
    from cinerecon.errors import ConfigError
    from cinerecon.evaluate.runner import evaluate_dir

    root = tmp_path / "data"
    masks = {"R08": torch.from_numpy(equispaced(W, 8, acs=4)).float()[None]}
    for i, view in enumerate(("sax", "sax?", "sax")):
        write_h5(root / f"slice{i}.h5", _sample(i, "sax"), masks)
        with h5py.File(root / f"slice{i}.h5", "r+") as f:
            f.attrs["view"] = view
    out = tmp_path / "out"
    res = evaluate_dir(root, {"zf": zero_filled}, out_dir=out, accels=(8, "R08"), options=FAST)
    assert len(res.records) == 3  # one group, each slice once
    figs = sorted(p.name for p in (out / "figures").glob("dynamic_*.png"))
    assert figs == ["dynamic_sax-2_R08.png", "dynamic_sax_R08.png"]
    linked = tmp_path / "linked"
    linked.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (linked / "figures").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ConfigError, match="outside"):
        evaluate_dir(root, {"zf": zero_filled}, out_dir=linked, accels=(8,), options=FAST, overwrite=True)
    assert not any((tmp_path / "elsewhere").iterdir())
