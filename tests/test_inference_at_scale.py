"""Inference at scale: batched ``reconstruct``, bf16 precision, TF32 settings, the CPU allocator."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from cinerecon import runtime
from cinerecon.cli import main
from cinerecon.errors import ConfigError
from cinerecon.models import build_model
from cinerecon.train.checkpoints import save_checkpoint
from test_reconstruct_cli import make_file


@pytest.fixture
def world(tmp_path):
    """Three slices (two of one shape, one of another) and a tiny CRUNet-MR checkpoint."""
    (tmp_path / "in").mkdir()
    make_file(tmp_path / "in" / "a.h5", seed=1)
    make_file(tmp_path / "in" / "b.h5", h=14, seed=2)
    make_file(tmp_path / "in" / "c.h5", seed=3)
    torch.manual_seed(0)
    model = build_model("crunet", chans=4, cascades=2)
    ckpt = tmp_path / "crunet.pt"
    save_checkpoint(ckpt, model, None, None, 1, {"model": {"name": "crunet", "kwargs": {"chans": 4, "cascades": 2}}})
    return tmp_path, ckpt


def _recons(out):
    return {p.name.split("_")[0]: h5py.File(p, "r")["recon"][()] for p in sorted(out.glob("*.h5"))}


def _run(tmp_path, ckpt, out, *extra):
    return main(["reconstruct", str(tmp_path / "in"), "--method", "crunet", "--checkpoint", str(ckpt), "--accel", "4",
                 "--out", str(tmp_path / out), "--formats", "h5", "--quiet", *extra])


def test_batched_reconstruct_equals_one_slice_at_a_time(world):
    tmp_path, ckpt = world
    assert _run(tmp_path, ckpt, "one") == 0
    assert _run(tmp_path, ckpt, "three", "--batch-size", "3") == 0  # a and c batched, b alone (other H)
    one, three = _recons(tmp_path / "one"), _recons(tmp_path / "three")
    assert sorted(one) == sorted(three) == ["a", "b", "c"]
    for k in one:
        np.testing.assert_allclose(three[k], one[k], rtol=1e-5, atol=1e-5 * np.abs(one[k]).max())


def test_batch_too_large_for_memory_names_the_flag_and_size(world, monkeypatch, capsys):
    tmp_path, ckpt = world
    from cinerecon.commands import reconstruct

    real = reconstruct.build_reconstructor

    def hungry(*a, **k):
        rec = real(*a, **k)

        def run(kspace, mask, maps):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 bytes")
        rec.fn = run
        return rec

    monkeypatch.setattr(reconstruct, "build_reconstructor", hungry)
    assert _run(tmp_path, ckpt, "big", "--batch-size", "3") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--batch-size 3: a batch of 2 slice(s) of (C, T, H, W) = (3, 4, 12, 10) does not fit in cpu memory" in err
    assert _run(tmp_path, ckpt, "zero", "--batch-size", "0") == 2
    assert "--batch-size must be >= 1, got 0" in capsys.readouterr().err


def test_batch_beyond_available_memory_is_refused_before_it_runs(world, monkeypatch, capsys):
    tmp_path, ckpt = world
    monkeypatch.setattr(runtime, "measure_peak_rss", lambda fn: (fn(), 300 * 2**20))  # one slice: 300 MiB
    monkeypatch.setattr(runtime, "available_memory_bytes", lambda: 2**30)  # 1 GiB available
    assert _run(tmp_path, ckpt, "ok", "--batch-size", "3") == 0  # 2 slices of one shape: 600 MiB fit
    monkeypatch.setattr(runtime, "available_memory_bytes", lambda: 500 * 2**20)
    assert _run(tmp_path, ckpt, "no", "--batch-size", "3") == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert ("--batch-size 3: a batch of 2 slice(s) of (C, T, H, W) = (3, 4, 12, 10) needs about 0.6 GiB (one slice "
            "measured 0.29 GiB) and 0.5 GiB are available; use --batch-size 1 or less") in err


def test_bf16_refused_in_one_line_without_cpu_support_unless_fallback_asked(world, monkeypatch, capsys):
    tmp_path, ckpt = world
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "fma"})
    assert _run(tmp_path, ckpt, "bf", "--precision", "bf16") == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "--precision bf16: this CPU has neither avx512_bf16 nor amx_bf16" in err
    assert not (tmp_path / "bf").exists()
    assert _run(tmp_path, ckpt, "fb", "--precision", "bf16-or-fp32") == 0
    assert "computing in fp32" in capsys.readouterr().err
    assert _run(tmp_path, ckpt, "fp") == 0
    fb, fp = _recons(tmp_path / "fb"), _recons(tmp_path / "fp")
    assert all(np.array_equal(fb[k], fp[k]) for k in fp)
    with pytest.raises(ConfigError, match="choose one of"):
        runtime.check_precision("fp16", "cpu")


def test_bf16_inference_is_close_to_fp32_where_supported(world):
    if not runtime.bf16_support("cpu")[0]:
        pytest.skip("this CPU has no bf16 arithmetic")
    tmp_path, ckpt = world
    assert _run(tmp_path, ckpt, "bf", "--precision", "bf16") == 0
    assert _run(tmp_path, ckpt, "fp") == 0
    bf, fp = _recons(tmp_path / "bf"), _recons(tmp_path / "fp")
    for k in fp:
        rel = np.linalg.norm(bf[k] - fp[k]) / np.linalg.norm(fp[k])
        assert 0 < rel < 2e-2, (k, rel)  # computed in bf16 (differs), yet close


def test_classical_methods_refuse_model_only_flags(world, capsys):
    tmp_path, _ = world
    assert main(["reconstruct", str(tmp_path / "in"), "--method", "zero_filled", "--accel", "4", "--out",
                 str(tmp_path / "zf"), "--batch-size", "2"]) == 2
    assert "--batch-size applies to learned models" in capsys.readouterr().err


def test_cuda_settings_are_explicit():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        runtime.configure_cuda(True, benchmark=True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark
        runtime.configure_cuda(False)
        assert not (torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
                    or torch.backends.cudnn.benchmark)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def test_allocator_tuning_honours_the_environment(monkeypatch):
    for var in ("CINERECON_MALLOC", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                "MALLOC_TOP_PAD_"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(runtime, "_tuned", None)
    monkeypatch.setenv("CINERECON_MALLOC", "system")
    assert runtime.tune_cpu_allocator() == "system allocator (CINERECON_MALLOC=system)"
    monkeypatch.setattr(runtime, "_tuned", None)
    monkeypatch.delenv("CINERECON_MALLOC")
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "0")
    assert runtime.tune_cpu_allocator() == "glibc malloc as set by MALLOC_MMAP_MAX_"
    monkeypatch.setattr(runtime, "_tuned", None)
    monkeypatch.delenv("MALLOC_MMAP_MAX_")
    done = runtime.tune_cpu_allocator()  # this process (the CLI does the same at start-up)
    assert done in ("glibc malloc: no mmap, no trim (freed memory reused)", "system allocator (no glibc mallopt here)")
    assert runtime.tune_cpu_allocator() == done  # once per process
    big = torch.ones(2**24)  # 64 MiB: served from the heap now, and still correct
    assert float(big.sum()) == 2**24
