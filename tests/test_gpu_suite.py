"""benchmarks/gpu_suite.py checked on the CPU at tiny sizes (``--device cpu --small``).

No GPU has run the suite yet; this test keeps the script working until one does. Numbers
are checked for consistency (the golden file, ours against the naive implementation, bf16
against fp32), never for speed.
"""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark


def _suite():
    return load_benchmark("gpu_suite")


def test_gpu_suite_runs_on_cpu_small(tmp_path, capsys):
    suite = _suite()
    out, md = tmp_path / "suite.json", tmp_path / "suite.md"
    rc = suite.main(["--device", "cpu", "--small", "--repeats", "1", "--out", str(out), "--markdown", str(md)])
    res = json.loads(out.read_text())["results"]
    if "failed" in res["golden"]:  # no ../shared here: the run goes on, the exit code says so
        assert "not present" in res["golden"]["failed"] and rc == 1
    else:
        assert res["golden"]["passed"] and res["golden"]["rel_error"] < 1e-4 and rc == 0
    for view in ("sax", "lax"):
        assert res[f"{view}/fp32"]["ms"] > 0 and res[f"{view}/fp32"]["max_rel_diff"] == 0.0
        assert "n/a" in res[f"{view}/fp32 + TF32"] and "n/a" in res[f"{view}/CUDA graph"]
        assert "n/a" in res[f"{view}/torch.compile"]  # not asked for on the CPU
        bf16 = res[f"{view}/bf16 autocast"]
        assert "n/a" in bf16 or 0 < bf16["max_rel_diff"] < 1e-2
    assert res["train/plain"]["ms"] > 0 and res["train/checkpoint"]["ms"] > 0
    for b in (1, 2):
        assert res[f"throughput/ours_fp32/b{b}"]["slices_per_s"] > 0
        naive = res[f"throughput/naive_fp32/b{b}"]
        assert naive["slices_per_s"] > 0 and naive["max_rel_diff"] < 1e-5  # the same function
    text = md.read_text()
    assert text.startswith("### GPU suite, ") and "CPU" in text and "| throughput/naive_fp32/b2 |" in text
    printed = capsys.readouterr().out
    assert "Summary:" in printed and "ours/naive throughput" in printed


def test_gpu_suite_refuses_cuda_without_a_gpu(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert _suite().main(["--device", "cuda"]) == 2
    assert "CUDA is not available here" in capsys.readouterr().err


def test_gpu_suite_skips_what_the_time_budget_cannot_fit(tmp_path):
    out = tmp_path / "suite.json"
    assert _suite().main(["--device", "cpu", "--small", "--budget-s", "0", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    assert res and all(v == {"skipped": "time budget spent"} for v in res.values())


def test_gpu_suite_missing_golden_file_fails_the_run_but_not_the_rest(tmp_path, capsys):
    out = tmp_path / "suite.json"
    rc = _suite().main(["--device", "cpu", "--small", "--repeats", "1", "--golden", str(tmp_path / "none.pt"),
                        "--out", str(out)])
    assert rc == 1
    data = json.loads(out.read_text())
    res = data["results"]
    assert "not present" in res["golden"]["failed"] and data["meta"]["finished"]
    assert res["sax/fp32"]["ms"] > 0 and res["train/checkpoint"]["ms"] > 0
    assert res["throughput/naive_fp32/b2"]["slices_per_s"] > 0
    printed = capsys.readouterr().out
    assert "golden check: failed" in printed and "ours/naive throughput" in printed


def test_gpu_suite_section_failure_is_one_line_and_the_next_sections_run(tmp_path, capsys, monkeypatch):
    suite = _suite()

    def broken(*args, **kwargs):
        raise RuntimeError("model build\nfailed")

    monkeypatch.setattr(suite, "training_items", broken)
    out = tmp_path / "suite.json"
    argv = ["--device", "cpu", "--small", "--repeats", "1", "--out", str(out), "--compile", "--compile-min-s", "1e9"]
    suite.main(argv)
    res = json.loads(out.read_text())["results"]
    assert res["section/train"] == {"failed": "RuntimeError: model build failed"}
    assert "train/plain" not in res and res["throughput/ours_fp32/b1"]["slices_per_s"] > 0
    for view in ("sax", "lax"):  # the compile guard: not enough budget left, said why, nothing compiled
        assert "budget left" in res[f"{view}/torch.compile"]["n/a"]
    lines = [line for line in capsys.readouterr().out.splitlines() if "section train failed" in line]
    assert len(lines) == 1 and "RuntimeError: model build failed" in lines[0]


def test_gpu_suite_writes_after_every_item_and_keeps_them_on_interrupt(tmp_path, monkeypatch):
    suite = _suite()
    out, md = tmp_path / "suite.json", tmp_path / "suite.md"

    def interrupted(*args, **kwargs):  # the time limit's SIGINT, during the throughput section
        written = json.loads(out.read_text())["results"]
        assert written["train/checkpoint"]["ms"] > 0 and written["lax/fp32"]["ms"] > 0
        assert "| train/checkpoint |" in md.read_text()
        raise KeyboardInterrupt

    monkeypatch.setattr(suite, "throughput_items", interrupted)
    rc = suite.main(["--device", "cpu", "--small", "--repeats", "1", "--out", str(out), "--markdown", str(md)])
    assert rc == 130
    data = json.loads(out.read_text())
    assert not data["meta"]["finished"] and "interrupted" in data["results"]["section/throughput"]["failed"]
    assert data["results"]["sax/fp32"]["ms"] > 0
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left


def test_compile_guard_grows_with_the_measured_first_call():
    import torch

    s = _suite().Suite(torch.device("cpu"), 1, 450.0, compile_min_s=240.0)
    assert s.compile_need_s() == 240.0
    s.compile_first_call_s = 200.0
    assert s.compile_need_s() == 300.0


def test_authors_state_dict_on_the_models_device():
    """The idle first-cascade ih2ih weights are made where the model is (the naive rows on CUDA)."""
    import torch

    from cinerecon.models import build_model
    from cinerecon.models.compat import to_authors_state_dict

    model = build_model("crunet", chans=4, cascades=2).to("meta")
    sd = to_authors_state_dict(model)
    assert sum(".ih2ih." in k for k in sd) >= 5
    assert {v.device.type for v in sd.values()} == {"meta"}
    assert {v.dtype for v in sd.values()} == {torch.float32}
    if torch.cuda.is_available():
        sd = to_authors_state_dict(build_model("crunet", chans=4, cascades=2).cuda())
        assert {v.device.type for v in sd.values()} == {"cuda"}


def test_gpu_suite_interrupt_inside_an_item_is_not_swallowed(tmp_path, monkeypatch):
    """SIGINT during an item (not between sections) ends the suite: the item is marked, later ones never run."""
    suite = _suite()
    out = tmp_path / "suite.json"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(suite, "rel_max", interrupted)  # called inside the first inference item's comparison
    rc = suite.main(["--device", "cpu", "--small", "--repeats", "1", "--out", str(out)])
    assert rc == 130
    res = json.loads(out.read_text())["results"]
    marked = [k for k, v in res.items() if "interrupted" in str(v.get("failed", ""))]
    assert len(marked) == 1 and marked[0].startswith("sax/")
    assert not any(k.startswith(("lax/", "train/", "throughput/")) for k in res)
