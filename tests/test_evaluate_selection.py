"""evaluate: slices without a fully sampled reference, the shipped model by name, GRAPPA on irregular masks."""

from __future__ import annotations

import csv

import pytest
import torch

from cinerecon.commands import evaluate as cmd
from cinerecon.errors import DataError
from cinerecon.masks import MaskSpec, equispaced, make_mask, regular_lines

from test_evaluate_cli import FAST, W, _sample, half, zero_filled

H5 = pytest.importorskip("cinerecon.data.h5")
T = 4
EQUI = torch.from_numpy(equispaced(W, 4, acs=4)).float()[None]  # (1, W): regular
KT = make_mask(MaskSpec("random_acs", accel=4, acs=4), T, W, seed=3)[0, :, 0, :]  # (T, W): k-t random lines
BASE = ["--no-figures", "--timing-runs", "1"]


@pytest.fixture(autouse=True)
def _no_dists(monkeypatch):
    from cinerecon.evaluate import dists

    monkeypatch.delenv(dists.ENV_DISTS, raising=False)


def _undersampled_only(seed):
    """A slice as `prepare cmrxrecon` writes an undersampled-only subject: stored k-t mask, no target."""
    from cinerecon.data.sample import CineSample

    s = _sample(seed, "sax")
    mask = KT[None, :, None, :]
    return CineSample(s.kspace * mask, mask, s.maps, None, s.meta), {"R04_kt": KT}


def _stderr_lines(err, start):
    return [line for line in err.splitlines() if line.startswith(start)]


def test_undersampled_only_slices_are_left_out_with_one_note(tmp_path, capsys):
    from cinerecon.cli import main
    from cinerecon.evaluate.runner import evaluate_dir

    root = tmp_path / "data"
    for i in range(3):
        H5.write_h5(root / f"full{i}.h5", _sample(i, "sax"), {"R04_kt": KT})
    for i in range(2):
        H5.write_h5(root / f"inference{i}.h5", *_undersampled_only(10 + i))
    H5.write_split(root, {"test": sorted(root.glob("*.h5"))})
    res = evaluate_dir(root, {"zf": zero_filled}, out_dir=tmp_path / "a", accels=("R04_kt",), options=FAST)
    assert {r.file.rsplit("/", 1)[1] for r in res.records} == {"full0.h5", "full1.h5", "full2.h5"}
    assert len(res.info) == 1 and "2 of 5" in res.info[0] and "undersampled only" in res.info[0]
    assert main(["evaluate", str(root), "--methods", "zero_filled", "--accel", "R04_kt", "--out",
                 str(tmp_path / "b")] + BASE) == 0
    notes = [n for n in _stderr_lines(capsys.readouterr().err, "note:") if "undersampled" in n]
    assert len(notes) == 1 and "no fully sampled reference" in notes[0]
    # nothing left to score: one line naming the split and folder and what to do
    only = tmp_path / "only"
    H5.write_h5(only / "inference0.h5", *_undersampled_only(20))
    with pytest.raises(DataError, match=r"split 'test' under .*only: none of its 1 slice") as e:
        evaluate_dir(only, {"zf": zero_filled}, out_dir=tmp_path / "c", accels=("R04_kt",), options=FAST)
    assert "reconstruct" in str(e.value) and "--split-fractions" in str(e.value)
    assert main(["evaluate", str(only), "--methods", "zero_filled", "--accel", "R04_kt", "--out",
                 str(tmp_path / "d")] + BASE) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none of its 1 slice" in err[0]


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "data"
    for i in range(3):
        H5.write_h5(root / f"slice{i}.h5", _sample(i, "sax"), {"R04": EQUI})
    return root


def test_shipped_crunet_is_evaluated_by_name(data_dir, tmp_path, capsys):
    from cinerecon.cli import main
    from cinerecon.models import build_model
    from cinerecon.models.crunet import CRUNet
    from cinerecon.train.checkpoints import save_checkpoint

    methods = cmd.build_methods(["zero_filled", "crunet"], {}, "cpu")
    assert list(methods) == ["zero_filled", "crunet (shipped)"] and isinstance(methods["crunet (shipped)"], CRUNet)
    assert cmd.resolve_reference(None, methods) == "crunet (shipped)"
    assert cmd.resolve_reference("crunet", methods) == "crunet (shipped)"
    argv = ["evaluate", str(data_dir), "--methods", "zero_filled", "crunet", "--accel", "4"] + BASE
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    assert "| crunet (shipped) (ref.) |" in capsys.readouterr().out
    with (tmp_path / "a" / "table2.csv").open() as fh:
        assert [r["method"] for r in csv.DictReader(fh)] == ["zero_filled", "crunet (shipped)"]
    # --checkpoint NAME=PATH as before; with --methods crunet it replaces the shipped model, and a trained
    # CRUNet-MR is the default reference before the shipped one
    kw = {"chans": 2, "cascades": 1}
    ck = save_checkpoint(tmp_path / "ck.pt", build_model("crunet", **kw), None, None, 0,
                         {"model": {"name": "crunet", "kwargs": kw}}, model_kwargs=kw, rng=False)
    assert list(cmd.build_methods(["crunet"], {"crunet": ck}, "cpu")) == ["crunet"]
    both = cmd.build_methods(["crunet"], {"mine": ck}, "cpu")
    assert list(both) == ["crunet (shipped)", "mine"] and cmd.default_reference(both) == "mine"
    assert main(argv + ["--out", str(tmp_path / "b"), "--checkpoint", f"mine={ck}"]) == 0
    out = capsys.readouterr().out
    assert "| mine (ref.) |" in out and "| crunet (shipped) |" in out
    assert main(argv + ["--out", str(tmp_path / "c"), "--checkpoint", "net=shipped"]) == 2
    assert "--methods crunet" in capsys.readouterr().err


def _grappa_data(root, n=7):
    """n slices with a regular mask R04 and a k-t random one R04_kt (enough slices for the Wilcoxon tests)."""
    assert regular_lines(EQUI) and not regular_lines(KT)
    for i in range(n):
        H5.write_h5(root / f"slice{i}.h5", _sample(i, "sax"), {"R04": EQUI, "R04_kt": KT})
    return root


def test_default_grappa_is_left_out_on_irregular_masks(tmp_path, monkeypatch, capsys):
    from cinerecon.cli import main

    calls = []

    def grappa(kspace, mask, maps):
        calls.append(regular_lines(mask))
        return half(kspace, mask, maps)

    def fake_build(names, ckpts, device):  # cheap stand-ins, named as given
        return {n: grappa if n == "grappa" else zero_filled if n == "zero_filled" else half for n in names}

    monkeypatch.setattr(cmd, "build_methods", fake_build)
    root = _grappa_data(tmp_path / "data")
    argv = ["evaluate", str(root), "--accel", "R04", "R04_kt"] + BASE
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0  # default methods: grappa among them
    cap = capsys.readouterr()
    assert calls and all(calls)  # grappa never ran on the k-t mask
    notes = [n for n in _stderr_lines(cap.err, "note:") if "grappa" in n]
    assert len(notes) == 1 and "R04_kt" in notes[0] and "not regular" in notes[0]
    assert not [w for w in _stderr_lines(cap.err, "warning:") if "grappa" in w]
    row = next(line for line in cap.out.splitlines() if line.startswith("| grappa |"))
    assert row.count("–") == 4 and "±" in row  # n/a at R04_kt (4 metrics), values at R04
    assert cap.out.index("| grappa |") < cap.out.index("| lplus_s |")  # rows keep the method order
    with (tmp_path / "a" / "table1.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["accel"] for r in rows if r["method"] == "grappa"} == {"R04"}
    with (tmp_path / "a" / "stats.csv").open() as fh:
        stats = list(csv.DictReader(fh))
    assert {r["group"] for r in stats} == {"sax R04", "sax R04_kt"}
    assert "grappa" in {r["other"] for r in stats if r["group"] == "sax R04"} | {r["best"] for r in stats}
    assert not [r for r in stats if r["group"] == "sax R04_kt" and "grappa" in (r["other"], r["best"])]
    # named explicitly: it runs, with one warning per mask key whose masks are not regular
    calls.clear()
    assert main(argv + ["--out", str(tmp_path / "b"), "--methods", "zero_filled", "grappa"]) == 0
    cap = capsys.readouterr()
    assert False in calls and True in calls
    warns = [w for w in _stderr_lines(cap.err, "warning:") if "grappa" in w]
    assert len(warns) == 1 and "R04_kt" in warns[0] and "not regular" in warns[0]
    assert not [n for n in _stderr_lines(cap.err, "note:") if "grappa" in n]
