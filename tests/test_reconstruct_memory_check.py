"""reconstruct's CPU batch memory check: once per shape and batch size, crediting the reusable heap."""

from __future__ import annotations

import pytest
import torch

from cinerecon import runtime
from cinerecon.commands.reconstruct import Reconstructor
from cinerecon.data.sample import CineSample, SampleMeta
from cinerecon.errors import ConfigError

MiB, GiB = 2**20, 2**30
PEAK = 300 * MiB  # what one slice "measures"


def _samples(n: int, h: int = 6) -> list[CineSample]:
    g = torch.Generator().manual_seed(h)
    out = []
    for i in range(n):
        k = torch.randn(2, 3, h, 5, dtype=torch.complex64, generator=g)
        maps = torch.ones(2, 1, h, 5, dtype=torch.complex64) / 2**0.5
        out.append(CineSample(k, torch.ones(1, 1, 1, 5), maps, meta=SampleMeta(name=f"s{i}")))
    return out


class Memory:
    """Fake MemAvailable and heap readers, and a counter of the slices actually run."""

    def __init__(self, monkeypatch, avail: int, heap: int | None):
        self.avail, self.heap, self.ran = avail, heap, 0
        monkeypatch.setattr(runtime, "measure_peak_rss", lambda fn: (fn(), PEAK))
        monkeypatch.setattr(runtime, "available_memory_bytes", lambda: self.avail)
        monkeypatch.setattr(runtime, "reusable_heap_bytes", lambda: self.heap)

    def rec(self) -> Reconstructor:
        def fn(kspace, mask, maps):
            self.ran += kspace.shape[0]
            return (maps.conj() * kspace).sum(1)
        return Reconstructor("fake", fn)

    def used(self, nbytes: int) -> None:
        """A batch ran: the tuned allocator keeps its memory, so MemAvailable drops and the heap holds it."""
        self.avail -= nbytes
        self.heap = None if self.heap is None else self.heap + nbytes


def test_second_batch_of_same_shape_not_refused_when_the_heap_holds_the_memory(monkeypatch):
    mem = Memory(monkeypatch, GiB, 0)
    rec = mem.rec()
    outs = rec.batch(_samples(3), 3)  # 900 MiB <= 90 % of 1 GiB
    assert len(outs) == 3 and mem.ran == 3
    mem.used(3 * PEAK)  # MemAvailable: 124 MiB; the heap holds 900 MiB
    assert len(rec.batch(_samples(3), 3)) == 3  # old check: 900 MiB > 90 % of 124 MiB -> refused
    assert len(rec.batch(_samples(2), 3)) == 2  # the last, smaller batch
    assert len(rec.batch(_samples(3, h=7), 3)) == 3  # a new shape: checked, with the heap credited
    assert mem.ran == 3 + 3 + 2 + 3


def test_larger_batch_is_checked_against_memavailable_plus_reusable_heap(monkeypatch, capsys):
    mem = Memory(monkeypatch, GiB, 0)
    rec = mem.rec()
    rec.batch(_samples(3), 3)
    mem.used(3 * PEAK)
    ran = mem.ran
    with pytest.raises(ConfigError) as e:
        rec.batch(_samples(4), 4)  # 1.2 GiB > 90 % of (124 + 900) MiB
    msg = str(e.value)
    assert msg.splitlines() == [msg] and mem.ran == ran  # refused before it ran
    assert msg == ("--batch-size 4: a batch of 4 slice(s) of (C, T, H, W) = (2, 3, 6, 5) needs about 1.2 GiB (one "
                   "slice measured 0.29 GiB) and 1.0 GiB are available; use --batch-size 3 or less")


def test_heap_credit_is_capped_by_what_earlier_batches_used(monkeypatch):
    mem = Memory(monkeypatch, GiB, 0)
    rec = mem.rec()
    rec.batch(_samples(2), 3)  # 600 MiB passed and ran
    mem.avail, mem.heap = 124 * MiB, 100 * GiB  # a huge free heap is not all ours to count on
    with pytest.raises(ConfigError, match=r"--batch-size 3: a batch of 3 slice\(s\).*and 0\.7 GiB are available"):
        rec.batch(_samples(3, h=7), 3)  # new shape: 900 MiB > 90 % of (124 + 600) MiB


def test_first_check_ignores_the_heap_and_still_refuses(monkeypatch):
    mem = Memory(monkeypatch, 500 * MiB, 10 * GiB)
    with pytest.raises(ConfigError, match=r"--batch-size 3: .* needs about 0\.6 GiB .* and 0\.5 GiB are available; "
                                          r"use --batch-size 1 or less"):
        mem.rec().batch(_samples(2), 3)


def test_without_a_heap_reader_only_the_first_batch_of_each_shape_is_checked(monkeypatch):
    mem = Memory(monkeypatch, GiB, None)
    rec = mem.rec()
    rec.batch(_samples(3), 3)
    mem.used(3 * PEAK)  # MemAvailable 124 MiB, heap unknown
    assert len(rec.batch(_samples(3), 3)) == 3 and len(rec.batch(_samples(4), 4)) == 4  # same shape: not rechecked
    with pytest.raises(ConfigError, match=r"\(C, T, H, W\) = \(2, 3, 7, 5\) needs about 0\.9 GiB"):
        rec.batch(_samples(3, h=7), 3)  # a new shape is checked against MemAvailable alone


def test_reusable_heap_reader_reports_bytes_or_none():
    heap = runtime.reusable_heap_bytes()
    assert heap is None or (isinstance(heap, int) and heap >= 0)


def test_cli_batches_of_one_shape_are_all_written(tmp_path, monkeypatch):
    pytest.importorskip("cinerecon.data.h5")
    from test_inference_at_scale import _run
    from test_reconstruct_cli import make_file

    from cinerecon.models import build_model
    from cinerecon.train.checkpoints import save_checkpoint

    (tmp_path / "in").mkdir()
    for i in range(4):
        make_file(tmp_path / "in" / f"s{i}.h5", seed=i)
    torch.manual_seed(0)
    ckpt = tmp_path / "crunet.pt"
    save_checkpoint(ckpt, build_model("crunet", chans=4, cascades=1), None, None, 1,
                    {"model": {"name": "crunet", "kwargs": {"chans": 4, "cascades": 1}}})
    calls = []

    def avail():  # the first batch's freed memory stays in the heap: MemAvailable drops by it
        calls.append(1)
        return GiB if len(calls) == 1 else GiB - 2 * PEAK

    monkeypatch.setattr(runtime, "measure_peak_rss", lambda fn: (fn(), PEAK))
    monkeypatch.setattr(runtime, "available_memory_bytes", avail)
    monkeypatch.setattr(runtime, "reusable_heap_bytes", lambda: 2 * PEAK)
    assert _run(tmp_path, ckpt, "out", "--batch-size", "2") == 0
    assert len(list((tmp_path / "out").glob("*.h5"))) == 4
