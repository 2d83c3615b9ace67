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
    assert suite.main(["--device", "cpu", "--small", "--repeats", "1", "--out", str(out), "--markdown", str(md)]) == 0
    res = json.loads(out.read_text())["results"]
    if "failed" in res["golden"]:
        assert "not present" in res["golden"]["failed"]
    else:
        assert res["golden"]["passed"] and res["golden"]["rel_error"] < 1e-4
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
