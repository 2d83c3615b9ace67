"""GPU suite for CRUNet-MR: one script, one GPU, under 8 minutes; tested on the CPU with ``--small``.

Prints, in one run (and writes as JSON with ``--out``, as a Markdown section with ``--markdown``):

1. the golden check on the device with TF32 off (the authors' output, ``../shared/reference``);
2. inference of one SAX slice of CMRxRecon2023 size (12 frames, 10 coils, 204 x 448) and one
   LAX slice (12 frames, 10 coils, 246 x 512), chans 64, 5 cascades, random weights: fp32
   (TF32 off), fp32 with TF32, bf16 autocast, ``torch.compile`` and a CUDA graph (the eager
   model captured with ``torch.cuda.graph``), each with its max difference to fp32;
3. one training step (forward, the paper's loss, backward, AdamW) at full SAX size: time and
   peak memory, without and with activation checkpointing;
4. throughput in slices per second at batch 1, 4 and 8 for ours (fp32 and bf16) and for the
   naive per-frame implementation ``tests/crunet_naive.py``.

Every item runs on its own; a failure (out of memory, a compiler error) is reported and the
suite goes on. Items still to run when ``--budget-s`` is spent are reported as skipped.

Usage (repository root)::

    .venv/bin/python benchmarks/gpu_suite.py --out runs/gpu_suite.json --markdown runs/gpu_suite.md
    .venv/bin/python benchmarks/gpu_suite.py --device cpu --small          # the CPU check of the script

TF32 is off everywhere except the row that says TF32 (``cinerecon.runtime.configure_cuda``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cinerecon import runtime  # noqa: E402
from cinerecon.models import build_model  # noqa: E402
from cinerecon.models.compat import load_authors_checkpoint, to_authors_state_dict  # noqa: E402
from cinerecon.operators import SenseOp  # noqa: E402
from crunet_naive import naive_crunet  # noqa: E402

GOLDEN = ROOT.parent / "shared" / "reference" / "crunet_golden.pt"


@dataclass(frozen=True)
class Sizes:
    """Problem and model sizes of a suite run."""

    sax: tuple[int, int, int, int] = (12, 10, 204, 448)  # T, C, H, W
    lax: tuple[int, int, int, int] = (12, 10, 246, 512)
    chans: int = 64
    cascades: int = 5
    batches: tuple[int, ...] = (1, 4, 8)


SMALL = Sizes(sax=(4, 3, 20, 36), lax=(4, 3, 22, 40), chans=8, cascades=2, batches=(1, 2))


class NotApplicable(Exception):
    """An item that does not apply to this device or run (reported as n/a)."""


@dataclass
class Suite:
    """Collected results and the time budget."""

    device: torch.device
    repeats: int
    budget_s: float
    compile_min_s: float = 240.0
    start: float = field(default_factory=time.monotonic)
    results: dict[str, Any] = field(default_factory=dict)

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def run(self, key: str, label: str, fn: Callable[[], dict]) -> dict | None:
        """Run one item; record and print its result, or why it failed or was skipped."""
        if self.left() <= 0:
            self.results[key] = {"skipped": "time budget spent"}
            print(f"  {label:34s}: skipped (time budget spent)", flush=True)
            return None
        try:
            res = fn()
        except NotApplicable as e:
            self.results[key] = {"n/a": str(e)}
            print(f"  {label:34s}: n/a ({e})", flush=True)
            return None
        except Exception as e:  # noqa: BLE001 - every item is optional; report and go on
            oom = isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()
            msg = "out of memory" if oom else f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            self.results[key] = {"failed": msg}
            print(f"  {label:34s}: failed ({msg})", flush=True)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            return None
        self.results[key] = res
        print(f"  {label:34s}: {describe(res)}", flush=True)
        return res


def describe(res: dict) -> str:
    parts = []
    if "ms" in res:
        parts.append(f"{res['ms']:9.2f} ms")
    if "slices_per_s" in res:
        parts.append(f"{res['slices_per_s']:8.2f} slices/s")
    if "peak_mib" in res:
        parts.append(f"peak {res['peak_mib']:9.1f} MiB")
    if "first_call_s" in res:
        parts.append(f"first call {res['first_call_s']:.1f} s")
    if "max_rel_diff" in res:
        parts.append(f"max rel diff to fp32 {res['max_rel_diff']:.1e}")
    if "rel_error" in res:
        parts.append(f"relative error {res['rel_error']:.2e} ({'pass' if res['passed'] else 'FAIL'})")
    return ", ".join(parts)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> tuple[float, Any]:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs, and the last output."""
    out = None
    for _ in range(warmup):
        out = fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def problem(shape: tuple[int, int, int, int], batch: int, device: torch.device, seed: int = 0):
    """Random image, unit-norm maps, R = 4 equispaced mask with 24 ACS lines: (kspace, mask, maps)."""
    t, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, t, h, w, dtype=torch.complex64, generator=g)
    maps = torch.randn(batch, c, 1, h, w, dtype=torch.complex64, generator=g)
    maps = maps / (maps.abs() ** 2).sum(1, keepdim=True).sqrt()
    mask = torch.zeros(w)
    mask[::4] = 1
    acs = min(24, w // 4)
    mask[w // 2 - acs // 2:w // 2 + acs // 2] = 1
    k = SenseOp(maps, mask).forward(x)
    return k.to(device), mask.to(device), maps.to(device)


def rel_max(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def build(sizes: Sizes, device: torch.device, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("crunet", chans=sizes.chans, cascades=sizes.cascades, **kw).to(device)


# ----------------------------------------------------------------------------- items

def golden_check(device: torch.device) -> dict:
    if not GOLDEN.exists():
        raise FileNotFoundError(f"{GOLDEN} not present")
    runtime.configure_cuda(tf32=False)
    g = torch.load(GOLDEN, weights_only=False)
    maps = g["sens_maps"][None, :, None]
    mask = g["mask"]
    k0 = SenseOp(maps, mask).forward(g["image"][None])
    model = load_authors_checkpoint(g["state_dict"]).to(device)
    with torch.no_grad():
        out = model(k0.to(device), mask.to(device), maps.to(device))[0].cpu()
    err = float((out - g["expected"]).norm() / g["expected"].norm())
    return {"rel_error": err, "passed": err < 1e-4}


def inference_items(suite: Suite, sizes: Sizes, view: str, shape, compile_ok: bool,
                    which: tuple[str, ...] = ("fp32", "fp32 + TF32", "bf16 autocast", "CUDA graph")) -> None:
    dev = suite.device
    model = build(sizes, dev).eval()
    inputs = problem(shape, 1, dev)
    runtime.configure_cuda(tf32=False)
    with torch.no_grad():
        ref = model(*inputs)

    def fp32() -> dict:
        runtime.configure_cuda(tf32=False)
        with torch.no_grad():
            t, out = timed(lambda: model(*inputs), dev, suite.repeats)
        return {"ms": 1e3 * t, "max_rel_diff": rel_max(out, ref)}

    def tf32() -> dict:
        if dev.type != "cuda":
            raise NotApplicable("TF32 is a CUDA setting")
        runtime.configure_cuda(tf32=True)
        try:
            with torch.no_grad():
                t, out = timed(lambda: model(*inputs), dev, suite.repeats)
        finally:
            runtime.configure_cuda(tf32=False)
        return {"ms": 1e3 * t, "max_rel_diff": rel_max(out, ref)}

    def bf16() -> dict:
        ok, why = runtime.bf16_support(dev)
        if not ok:
            raise NotApplicable(why)
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16):
            t, out = timed(lambda: model(*inputs), dev, suite.repeats)
        return {"ms": 1e3 * t, "max_rel_diff": rel_max(out.to(torch.complex64), ref)}

    def compiled() -> dict:
        if not compile_ok:
            raise NotApplicable("not asked for (--no-compile, or the CPU without --compile)")
        if suite.left() < suite.compile_min_s:
            raise NotApplicable(f"{suite.left():.0f} s of the budget left; compiling takes minutes "
                                f"(--compile-min-s {suite.compile_min_s:.0f})")
        m2 = build(sizes, dev).eval()
        m2.load_state_dict(model.state_dict())
        for c in m2.cascades:  # the denoisers are real-valued inside; one graph serves cascades 2..N
            c.forward = torch.compile(c.forward)
        t0 = time.perf_counter()
        with torch.no_grad():
            m2(*inputs)
            sync(dev)
            first = time.perf_counter() - t0
            t, out = timed(lambda: m2(*inputs), dev, suite.repeats)
        return {"ms": 1e3 * t, "first_call_s": first, "max_rel_diff": rel_max(out, ref)}

    def graph() -> dict:
        if dev.type != "cuda":
            raise NotApplicable("CUDA graphs need a GPU")
        static = tuple(x.clone() for x in inputs)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(3):
                model(*static)
        torch.cuda.current_stream().wait_stream(stream)
        g = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(g):
            static_out = model(*static)
        t, _ = timed(g.replay, dev, suite.repeats)
        return {"ms": 1e3 * t, "max_rel_diff": rel_max(static_out, ref)}

    items = {"fp32": fp32, "fp32 + TF32": tf32, "bf16 autocast": bf16, "CUDA graph": graph,
             "torch.compile": compiled}
    for name in which:
        suite.run(f"{view}/{name}", f"{view} {name}", items[name])
    del model


def training_items(suite: Suite, sizes: Sizes) -> None:
    from cinerecon.train.config import LossConfig
    from cinerecon.train.losses import reconstruction_loss

    dev = suite.device

    def step(checkpointing: bool) -> dict:
        model = build(sizes, dev, checkpoint_cascades=checkpointing).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        k0, mask, maps = problem(sizes.sax, 1, dev)
        target = SenseOp(maps).reduce(k0)

        def one():
            opt.zero_grad(set_to_none=True)
            loss = reconstruction_loss(model(k0, mask, maps), target, maps, LossConfig()).total
            loss.backward()
            opt.step()
            return loss.detach()

        one()  # warm-up (allocates the optimiser state)
        sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        t, loss = timed(one, dev, max(1, suite.repeats // 3), warmup=0)
        res = {"ms": 1e3 * t}
        if dev.type == "cuda":
            res["peak_mib"] = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
        if not torch.isfinite(loss):
            raise RuntimeError("non-finite loss")
        return res

    suite.run("train/plain", "SAX train step, no checkpointing", lambda: step(False))
    suite.run("train/checkpoint", "SAX train step, checkpointing", lambda: step(True))


def throughput_items(suite: Suite, sizes: Sizes, naive_max_batch: int) -> None:
    dev = suite.device
    model = build(sizes, dev).eval()
    sd = to_authors_state_dict(model)
    ok, _ = runtime.bf16_support(dev)
    runtime.configure_cuda(tf32=False)
    for b in sizes.batches:
        inputs = problem(sizes.sax, b, dev, seed=b)

        def ours(precision: str) -> dict:
            with torch.no_grad(), runtime.precision_context(precision, dev):
                t, _ = timed(lambda: model(*inputs), dev, suite.repeats)
            return {"slices_per_s": b / t, "ms": 1e3 * t}

        def naive() -> dict:
            if b > naive_max_batch:
                raise NotApplicable(f"not run above batch {naive_max_batch} (--naive-max-batch)")
            with torch.no_grad():
                t, out = timed(lambda: naive_crunet(sd, *inputs), dev, 1, warmup=1 if dev.type == "cuda" else 0)
                ref = model(*inputs)
            return {"slices_per_s": b / t, "ms": 1e3 * t, "max_rel_diff": rel_max(out, ref)}

        suite.run(f"throughput/ours_fp32/b{b}", f"SAX batch {b}, ours fp32", lambda: ours("fp32"))
        if ok:
            suite.run(f"throughput/ours_bf16/b{b}", f"SAX batch {b}, ours bf16", lambda: ours("bf16"))
        suite.run(f"throughput/naive_fp32/b{b}", f"SAX batch {b}, naive fp32", naive)


# ----------------------------------------------------------------------------- report

def summary(suite: Suite, sizes: Sizes) -> list[str]:
    """Ratios and the targets of the issue, as lines."""
    r, lines = suite.results, []
    best = [(v["ms"], k) for k, v in r.items() if k.startswith("sax/") and "ms" in v]
    if best:
        ms, key = min(best)
        lines.append(f"best SAX variant: {key.split('/', 1)[1]} {ms:.1f} ms per slice (target < 50 ms at full size)")
    for b in sizes.batches:
        o, n = r.get(f"throughput/ours_fp32/b{b}", {}), r.get(f"throughput/naive_fp32/b{b}", {})
        if "slices_per_s" in o and "slices_per_s" in n:
            lines.append(f"batch {b}: ours/naive throughput {o['slices_per_s'] / n['slices_per_s']:.1f}x (fp32)"
                         " (target >= 10x)")
    ck = r.get("train/checkpoint", {})
    if "peak_mib" in ck:
        lines.append(f"training at SAX size with checkpointing: {ck['peak_mib'] / 1024:.2f} GiB (target < 24 GB)")
    return lines


def markdown(suite: Suite, sizes: Sizes, name: str) -> str:
    day = datetime.date.today().isoformat()
    rows = []
    for key, v in suite.results.items():
        other = [f"{k}: {v[k]}" for k in ("failed", "skipped", "n/a") if k in v]
        rows.append(f"| {key} | {other[0] if other else describe(v)} |")
    head = (f"### GPU suite, {day}, {name}\n\n`benchmarks/gpu_suite.py`, torch {torch.__version__}; SAX (T, C, H, W) = "
            f"{sizes.sax}, LAX {sizes.lax}, chans {sizes.chans}, {sizes.cascades} cascades, random weights; TF32 off "
            "unless stated.\n\n| Item | Result |\n| --- | --- |\n")
    tail = "\n".join(f"- {line}" for line in summary(suite, sizes))
    return head + "\n".join(rows) + "\n\n" + tail + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--small", action="store_true", help="tiny sizes: a functional check of the script (CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per item (default 10 on CUDA, 2 on CPU)")
    p.add_argument("--budget-s", type=float, default=450.0, help="skip items once this many seconds have passed")
    p.add_argument("--compile", dest="compile", action="store_true", default=None,
                   help="run torch.compile on the CPU too (minutes); on CUDA it runs unless --no-compile")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--compile-min-s", type=float, default=240.0,
                   help="skip torch.compile when less of the budget is left (default: %(default)s)")
    p.add_argument("--naive-max-batch", type=int, default=8, help="largest batch timed for the naive implementation")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    p.add_argument("--markdown", type=Path, help="write a Markdown section for benchmarks/README.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    runtime.tune_cpu_allocator()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"--device {args.device}: CUDA is not available here; use --device cpu --small to check the script",
              file=sys.stderr)
        return 2
    sizes = SMALL if args.small else Sizes()
    repeats = args.repeats or (10 if device.type == "cuda" else 2)
    compile_ok = args.compile if args.compile is not None else device.type == "cuda"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    suite = Suite(device, repeats, args.budget_s, compile_min_s=args.compile_min_s)
    print(f"GPU suite on {name}, torch {torch.__version__}, {datetime.date.today().isoformat()}; "
          f"{'small sizes' if args.small else 'full sizes'}; budget {args.budget_s:.0f} s", flush=True)
    print("Golden check (TF32 off):")
    suite.run("golden", "CRUNet-MR golden file", lambda: golden_check(device))
    for view, shape in (("sax", sizes.sax), ("lax", sizes.lax)):
        print(f"Inference, one {view.upper()} slice (T, C, H, W) = {shape}:")
        inference_items(suite, sizes, view, shape, compile_ok)
    print(f"Training step at SAX size {sizes.sax}:")
    training_items(suite, sizes)
    print("Throughput at SAX size:")
    throughput_items(suite, sizes, args.naive_max_batch)
    print("torch.compile (last: its first call compiles for minutes):")
    for view, shape in (("sax", sizes.sax), ("lax", sizes.lax)):
        inference_items(suite, sizes, view, shape, compile_ok, which=("torch.compile",))
    print("Summary:")
    for line in summary(suite, sizes):
        print(f"  {line}")
    print(f"({time.monotonic() - suite.start:.0f} s)")
    meta = {"device": name, "torch": torch.__version__, "date": datetime.date.today().isoformat(),
            "small": args.small, "sizes": sizes.__dict__}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "results": suite.results}, indent=1, default=str))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(suite, sizes, name))
    golden = suite.results.get("golden", {})
    return 1 if golden.get("passed") is False else 0


if __name__ == "__main__":
    raise SystemExit(main())
