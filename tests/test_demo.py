"""The end-to-end demo (``cinerecon demo``) on tiny settings, checked against independent numbers."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np
import pytest

for _mod in ("cinerecon.classical.zero_filled", "cinerecon.classical.cg_sense", "cinerecon.classical.grappa",
             "cinerecon.classical.lowrank_sparse", "cinerecon.models.crunet", "cinerecon.train.loop",
             "cinerecon.evaluate.metrics", "cinerecon.evaluate.figures", "cinerecon.evaluate.report"):
    pytest.importorskip(_mod)

from cinerecon.cli import main  # noqa: E402
from cinerecon.data.h5 import read_h5, read_split  # noqa: E402
from cinerecon.data.simulate import HEART_LABELS, SimConfig, simulate_cine, simulate_phantom  # noqa: E402
from cinerecon.demo import DemoConfig, heart_centre  # noqa: E402
from cinerecon.errors import ConfigError  # noqa: E402
from cinerecon.evaluate.metrics import series_metrics  # noqa: E402
from cinerecon.masks import effective_acceleration  # noqa: E402
from cinerecon.operators import SenseOp  # noqa: E402

TINY = ["--subjects", "3", "--size", "32", "32", "--frames", "6", "--coils", "4", "--chans", "8", "--cascades", "2",
        "--accel", "8", "--seed", "3", "--no-progress"]
METHODS = ("Zero-filled", "CG-SENSE", "GRAPPA", "L+S", "CRUNet-MR")


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def table_rows(text: str, protocol: str) -> dict[str, list[float]]:
    """Method -> [PSNR, SSIM, NMSE, HaarPSI, time] of the ``## <Protocol> protocol`` section."""
    section = text.split(f"## {protocol.capitalize()} protocol", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] not in ("Method", "---"):
            rows[cells[0]] = [float(c) for c in cells[1:]]
    return rows


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One tiny demo run (a budget that one epoch exceeds: exactly one epoch): (out folder, stdout)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    rc, stdout, stderr = run_cli(["demo", "--out", str(out), "--train-minutes", "0.001", *TINY])
    assert rc == 0, stderr
    return out, stdout


def test_writes_figure_and_table(demo):
    out, stdout = demo
    fig, table = out / "demo_figure.png", out / "demo_table.md"
    assert fig.is_file() and table.is_file()
    import matplotlib.image

    img = matplotlib.image.imread(fig)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600
    assert img[..., :3].std() > 0.05  # not a blank canvas
    for name in (str(fig), str(table), str(out / "data"), str(out / "run" / "best.pt")):
        assert name in stdout
    epochs = (out / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(epochs) == 1  # the budget was spent after the first epoch


def test_table_has_every_method_and_finite_crunet(demo):
    out, _ = demo
    text = (out / "demo_table.md").read_text()
    for protocol in ("paper", "global"):
        rows = table_rows(text, protocol)
        assert tuple(rows) == METHODS
        psnr, ssim, nmse, haarpsi, seconds = rows["CRUNet-MR"]
        assert math.isfinite(psnr) and 5.0 < psnr < 80.0
        assert 0.0 < ssim <= 1.0 and nmse >= 0.0 and 0.0 < haarpsi <= 1.0 and seconds >= 0.0


def _test_sample(out: Path):
    (path,) = read_split(out / "data")["test"]
    return read_h5(path, mask_key="R08")


def test_zero_filled_psnr_matches_independent_computation(demo):
    out, stdout = demo
    rows_paper = table_rows((out / "demo_table.md").read_text(), "paper")
    rows_global = table_rows((out / "demo_table.md").read_text(), "global")
    s = _test_sample(out)
    zf = SenseOp(s.maps[None], s.mask[None]).adjoint(s.kspace[None])[0]
    # cinerecon.evaluate.metrics
    assert rows_paper["Zero-filled"][0] == pytest.approx(float(series_metrics(zf, s.target, "paper").psnr), abs=6e-3)
    assert rows_global["Zero-filled"][0] == pytest.approx(float(series_metrics(zf, s.target, "global").psnr),
                                                          abs=6e-3)
    # plain NumPy: paper protocol = each frame scaled by its maximum, mean of per-frame PSNR;
    # global protocol = error pooled over frames, data range = target series maximum
    x, y = np.abs(zf.numpy()).astype(np.float64), np.abs(s.target.numpy()).astype(np.float64)
    xs, ys = x / x.max(axis=(1, 2), keepdims=True), y / y.max(axis=(1, 2), keepdims=True)
    paper = np.mean(10 * np.log10(1.0 / ((xs - ys) ** 2).mean(axis=(1, 2))))
    pooled = 10 * np.log10(y.max() ** 2 / ((x - y) ** 2).mean())
    assert rows_paper["Zero-filled"][0] == pytest.approx(paper, abs=6e-3)
    assert rows_global["Zero-filled"][0] == pytest.approx(pooled, abs=6e-3)
    assert f"effective acceleration: {effective_acceleration(s.mask):.2f}" in stdout


def test_refuses_existing_output(demo):
    out, _ = demo
    before = (out / "demo_table.md").stat().st_mtime_ns
    rc, _, err = run_cli(["demo", "--out", str(out), "--epochs", "1", *TINY])
    assert rc == 2 and "--overwrite" in err
    assert (out / "demo_table.md").stat().st_mtime_ns == before


def test_checkpoint_skips_training_and_reproduces_scores(demo, tmp_path):
    out, _ = demo
    out2 = tmp_path / "again"
    rc, stdout, err = run_cli(["demo", "--out", str(out2), "--checkpoint", str(out / "run" / "best.pt"), "--phantoms",
                               *TINY])
    assert rc == 0, err
    assert not (out2 / "run").exists()
    first = table_rows((out / "demo_table.md").read_text(), "paper")
    second = table_rows((out2 / "demo_table.md").read_text(), "paper")
    for name in METHODS:  # same seeded data and the same weights: the same numbers
        assert second[name][:4] == first[name][:4]


def test_missing_checkpoint_fails_before_writing(tmp_path):
    out = tmp_path / "never"
    rc, _, err = run_cli(["demo", "--out", str(out), "--checkpoint", str(tmp_path / "missing.pt"), *TINY])
    assert rc == 2 and "missing.pt" in err
    assert not out.exists()


@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_heart_centre_lies_in_the_heart(seed):
    cfg = SimConfig(frames=6, coils=2, size=(40, 36), seed=seed)
    labels = simulate_phantom(cfg).labels
    r, c = heart_centre(simulate_cine(cfg).target)
    assert np.isin(labels[:, r, c], HEART_LABELS).all()


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError):
        DemoConfig(subjects=1)
    with pytest.raises(ConfigError):
        DemoConfig(train_minutes=0.0)
    with pytest.raises(ConfigError):
        DemoConfig(frames_window=0)



def test_overwrite_removes_only_the_demo_outputs(tmp_path):
    from cinerecon.demo import OUTPUT_NAMES, prepare_out
    from cinerecon.errors import OutputExistsError

    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "run" / "tb").mkdir(parents=True)
    (out / "data" / "sim0003_sax.h5").write_bytes(b"old")
    (out / "data" / "train.txt").write_text("sim0003_sax.h5\n")
    (out / "data" / "mine.h5").write_bytes(b"the user's")
    (out / "run" / "last.pt").write_bytes(b"old")
    (out / "run" / "mynotes.txt").write_text("the user's")
    (out / "demo_table.md").write_text("old")
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(OutputExistsError):
        prepare_out(out, overwrite=False)
    assert (out / "data" / "sim0003_sax.h5").exists()
    prepare_out(out, overwrite=True)
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    # the demo's own files are gone; files the user put beside them, even in data/ and run/, stay
    assert left == ["data", "data/mine.h5", "notes.txt", "run", "run/mynotes.txt"]
    assert not any((out / n).is_file() for n in OUTPUT_NAMES)
    prepare_out(tmp_path / "empty", overwrite=False)  # a new or empty folder is fine
    prepare_out(tmp_path / "empty", overwrite=False)


def test_weights_show_the_held_out_real_series_when_present(tmp_path):
    from cinerecon.cli import build_parser
    from cinerecon.commands.demo import config_from_args
    from cinerecon.demo import DEFAULT_REAL_SERIES

    parse = build_parser().parse_args
    cfg = config_from_args(parse(["demo", "--pretrained"]))
    assert cfg.real_series == (DEFAULT_REAL_SERIES if DEFAULT_REAL_SERIES.is_file() else None)
    assert config_from_args(parse(["demo", "--pretrained", "--phantoms"])).real_series is None
    assert config_from_args(parse(["demo"])).real_series is None  # training happens on simulated data only
    own = tmp_path / "mine.npz"
    assert config_from_args(parse(["demo", "--pretrained", "--real-series", str(own)])).real_series == own
    with pytest.raises(ConfigError, match="needs trained weights"):
        DemoConfig(real_series=own)


@pytest.mark.slow
@pytest.mark.skipif(not Path("../shared/data/real_cine_extra/rat_sax_8fr.npz").is_file(), reason="no real series")
def test_pretrained_demo_on_the_real_series(tmp_path):
    rc, stdout, err = run_cli(["demo", "--out", str(tmp_path / "d"), "--pretrained"])
    assert rc == 0, err
    rows = table_rows((tmp_path / "d" / "demo_table.md").read_text(), "global")
    assert rows["CRUNet-MR"][0] > rows["CG-SENSE"][0]
    assert "real magnitude series" in (tmp_path / "d" / "demo_table.md").read_text()
