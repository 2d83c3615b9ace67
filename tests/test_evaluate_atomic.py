"""``evaluate`` writes its tables and figures atomically (temporary file + rename, umask honoured).

Every output appears only complete, with the mode ``open()`` would give (0o666 & ~umask), no
``.part`` temporary file is left behind, a failed write keeps the previous file, and
``--no-figures`` creates no ``figures/`` folder.
"""

from __future__ import annotations

import os
import stat

import pytest
import torch

from cinerecon.evaluate.figures import FigureConfig, plot_dynamic_bars, plot_reconstructions
from cinerecon.evaluate.report import DynamicSummaryRow, SliceRecord, write_csv
from cinerecon.files import atomic_write_text
from cinerecon.evaluate.runner import EvaluationOptions
from cinerecon.evaluate.timing import TimingConfig
from cinerecon.files import TEMP_SUFFIX
from cinerecon.masks import equispaced
from cinerecon.operators import SenseOp

T, H, W, C = 4, 20, 18, 2
FAST = EvaluationOptions(timing=TimingConfig(warmup=0, runs=1), figure=FigureConfig(dpi=30))


def zero_filled(kspace, mask, maps):
    return SenseOp(maps, mask).adjoint(kspace)


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def data_dir(tmp_path):
    from cinerecon.data.h5 import write_h5
    from cinerecon.data.sample import CineSample, SampleMeta

    root = tmp_path / "data"
    masks = {"R04": torch.from_numpy(equispaced(W, 4, acs=4)).float()[None]}
    for i in range(2):
        g = torch.Generator().manual_seed(i)
        target = (torch.rand(T, H, W, generator=g) + 0.5).to(torch.complex64)
        maps = torch.randn(C, 1, H, W, dtype=torch.complex64, generator=g)
        maps = maps / (maps.abs() ** 2).sum(0, keepdim=True).sqrt()
        kspace = SenseOp(maps[None]).expand(target[None])[0]
        write_h5(root / f"slice{i}.h5", CineSample(kspace, torch.ones(1, 1, 1, W), maps, target,
                                                   SampleMeta(name=f"s{i}", view="sax")), masks)
    return root


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def _assert_clean(root, mode=0o644):
    files = _files(root)
    assert files
    assert not [p for p in root.rglob("*") if p.name.endswith(TEMP_SUFFIX) or p.name.startswith(".")]
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == mode, (p, oct(stat.S_IMODE(p.stat().st_mode)))


def test_evaluate_outputs_honour_the_umask_and_leave_no_temp_files(data_dir, tmp_path, umask022, monkeypatch):
    from cinerecon.evaluate import dists
    from cinerecon.evaluate.runner import evaluate_dir

    monkeypatch.delenv(dists.ENV_DISTS, raising=False)
    out = tmp_path / "out"
    res = evaluate_dir(data_dir, {"zf": zero_filled}, out_dir=out, accels=("R04",), protocol="paper", options=FAST)
    names = {p.relative_to(out).as_posix() for p in _files(out)}
    assert {"table1.md", "table1.csv", "stats.md", "dynamic_per_slice.csv", "figures/recon_R04.png",
            "figures/xt_R04.png", "figures/dynamic_sax_R04.png"} <= names
    assert {p.relative_to(out).as_posix() for p in res.written} == names
    assert (out / "figures" / "recon_R04.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _assert_clean(out)
    # overwriting goes through the same path
    evaluate_dir(data_dir, {"zf": zero_filled}, out_dir=out, accels=("R04",), protocol="paper", options=FAST,
                 overwrite=True)
    _assert_clean(out)


def test_no_figures_creates_no_figures_folder(data_dir, tmp_path, umask022, monkeypatch, capsys):
    from cinerecon.cli import main
    from cinerecon.commands import evaluate as cmd
    from cinerecon.evaluate import dists

    monkeypatch.delenv(dists.ENV_DISTS, raising=False)
    monkeypatch.setattr(cmd, "build_methods", lambda names, ckpts, device: {"zf": zero_filled})
    out = tmp_path / "cli_out"
    assert main(["evaluate", str(data_dir), "--accel", "4", "--out", str(out), "--no-figures",
                 "--timing-runs", "1", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert (out / "table1.md").is_file() and not (out / "figures").exists()
    _assert_clean(out)


def test_writers_follow_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write_text(tmp_path / "a.md", "x\n")
        write_csv(tmp_path / "a.csv", [SliceRecord("f", "s", "sax", "R04", "zf", 1.0, 0.5, 0.1, None, None)])
    finally:
        os.umask(old)
    _assert_clean(tmp_path, mode=0o600)
    assert (tmp_path / "a.csv").read_text().splitlines()[0].startswith("file,")


def test_failed_writes_keep_the_previous_file_and_leave_no_temp_files(tmp_path, umask022, monkeypatch):
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("old\n")

    class Broken:  # not a dataclass: asdict fails after the header was written
        pass

    with pytest.raises(TypeError):
        write_csv(csv_path, [Broken()], SliceRecord)
    assert csv_path.read_text() == "old\n"

    fig_path = tmp_path / "bars.png"
    fig_path.write_bytes(b"old")
    import matplotlib.figure

    def fail(self, fname, *args, **kwargs):  # a write that dies half-way
        if hasattr(fname, "write"):
            fname.write(b"partial")
        else:
            with open(fname, "wb") as fh:
                fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", fail)
    row = DynamicSummaryRow("sax", "R04", "zf", 2, 30.0, 1.0, 31.0, 1.0, 0.9, 0.01, 0.95, 0.01)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_dynamic_bars([row], fig_path)
    assert fig_path.read_bytes() == b"old"
    monkeypatch.undo()
    plot_reconstructions(torch.rand(T, H, W), {"zf": torch.rand(T, H, W)}, tmp_path / "fig" / "r.png",
                         cfg=FigureConfig(dpi=30))
    assert (tmp_path / "fig" / "r.png").read_bytes()[:4] == b"\x89PNG"
    _assert_clean(tmp_path)
