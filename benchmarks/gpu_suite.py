"""GPU suite for CRUNet-MR: one script, one GPU, under 8 minutes; tested on the CPU with ``--small``.

Prints, in one run (and writes as JSON with ``--out``, as a Markdown section with ``--markdown``,
both rewritten atomically after every item, so a run killed at its time limit keeps what finished):

1. the golden check on the device with TF32 and cuDNN autotuning off (the authors' output,
   ``--golden``, default ``../shared/reference/crunet_golden.pt``); a missing or failing golden
   check makes the exit code 1 (everything else still runs);
2. inference of one SAX slice of CMRxRecon2023 size (12 frames, 10 coils, 204 x 448) and one
   LAX slice (12 frames, 10 coils, 246 x 512), chans 64, 5 cascades, random weights: fp32
   (TF32 off), fp32 with TF32 and bf16 autocast, each with its max difference to fp32;
3. one training step (forward, the paper's loss, backward, AdamW) at full SAX size: time and
   peak memory (absolute, GB = 1e9 bytes), without and with activation checkpointing;
4. throughput in slices per second at batch 1, 4 and 8 for ours (fp32 and bf16) and for the
   naive per-frame implementation ``tests/crunet_naive.py`` (the faster of two timed runs);
5. a CUDA graph of the eager model (``torch.cuda.graph``) for both views: after the numbers
   above, since a failed capture can leave the CUDA context unusable;
6. ``torch.compile`` (``dynamic=False``, dynamo reset before each view, so each view gets its
   own specialised code and an honest first-call time), last and only with time left.

Every item runs on its own; a failure (out of memory, a compiler error) is reported and the
suite goes on; a failure outside an item (building the model or the problem) is one line and the
next section runs. Items still to run when ``--budget-s`` is spent are reported as skipped; an
interrupt (SIGINT, e.g. ``timeout --preserve-status -s INT``) writes what finished and exits with 130
(plain ``timeout`` reports 124 instead).
Timed items run with cuDNN autotuning on (``cudnn.benchmark``).

Usage (repository root)::

    .venv/bin/python benchmarks/gpu_suite.py --out runs/gpu_suite.json --markdown runs/gpu_suite.md
    .venv/bin/python benchmarks/gpu_suite.py --device cpu --small          # the CPU check of the script

On the device machine (a copy of the working tree without .venv and ../shared; copy the golden
file into the ignored folder ``.gpu/`` first and carry it: ``mkdir -p .gpu && cp
../shared/reference/crunet_golden.pt .gpu/``, tool argument ``carry: [".gpu"]``)::

    PYTHONUNBUFFERED=1 PYTHONPATH=src timeout --preserve-status -k 30 -s INT 560 python3 benchmarks/gpu_suite.py --golden .gpu/crunet_golden.pt --out $OUT/gpu_suite.json --markdown $OUT/gpu_suite.md

TF32 is off everywhere except the row that says TF32 (``cinerecon.runtime.configure_cuda``).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))  # a bare checkout (the device machine): torch installed, cinerecon not

from cinerecon import runtime  # noqa: E402
from cinerecon.models import build_model  # noqa: E402
from cinerecon.models.compat import load_authors_checkpoint, to_authors_state_dict  # noqa: E402
from cinerecon.operators import SenseOp  # noqa: E402
from crunet_naive import naive_crunet  # noqa: E402

GOLDEN = ROOT.parent / "shared" / "reference" / "crunet_golden.pt"
GB = 1e9  # memory in GB (1e9 bytes), as the 24 GB target is stated

say = functools.partial(print, flush=True)


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


def failure(e: BaseException) -> str:
    """An exception in one line: its type and (the start of) its message."""
    text = " ".join(str(e).split())
    if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower():
        return f"out of memory ({type(e).__name__}: {text[:160]})"
    return f"{type(e).__name__}: {text[:200]}"


@dataclass
class Suite:
    """Collected results, the time budget, and where they are written after every item."""

    device: torch.device
    repeats: int
    budget_s: float
    compile_min_s: float = 240.0
    start: float = field(default_factory=time.monotonic)
    results: dict[str, Any] = field(default_factory=dict)
    save: Callable[[], None] | None = None  # writes --out and --markdown (atomically)
    compile_first_call_s: float = 0.0  # the longest first compiled call measured so far
    current: str | None = None  # the item or section running now (named if an interrupt stops it)

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def compile_need_s(self) -> float:
        """Budget a compile item needs: ``--compile-min-s``, or 1.5x a first call already measured."""
        return max(self.compile_min_s, 1.5 * self.compile_first_call_s)

    def write(self) -> None:
        if self.save is None:
            return
        try:
            self.save()
        except Exception as e:  # noqa: BLE001 - a full disk must not end the run
            say(f"  (could not write the results: {failure(e)})")

    def free(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def record(self, key: str, label: str, res: dict, text: str) -> None:
        self.results[key] = res
        say(f"  {label:34s}: {text}")
        self.write()

    def run(self, key: str, label: str, fn: Callable[[], dict]) -> dict | None:
        """Run one item; record, print and write its result, or why it failed or was skipped."""
        if self.left() <= 0:
            self.record(key, label, {"skipped": "time budget spent"}, "skipped (time budget spent)")
            return None
        outer, self.current = self.current, key
        try:
            res = fn()
        except NotApplicable as e:
            self.record(key, label, {"n/a": str(e)}, f"n/a ({e})")
            res = None
        except Exception as e:  # noqa: BLE001 - every item is optional; report and go on
            msg = failure(e)
            self.record(key, label, {"failed": msg}, f"failed ({msg})")
            res = None
        else:
            self.record(key, label, res, describe(res))
        self.current = outer
        if res is None:
            self.free()  # after the except block: its traceback no longer holds the item's tensors
        return res

    def section(self, name: str, header: str | None, fn: Callable[[], None]) -> None:
        """Run a section of items; a failure outside its items is one line, and the next section runs."""
        if header:
            say(header)
        self.current = f"section/{name}"
        failed = None
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a section is optional too
            failed = failure(e)
        self.current = None
        if failed is not None:
            self.results[f"section/{name}"] = {"failed": failed}
            say(f"  section {name} failed ({failed}); going on with the next section")
        self.free()
        self.write()


def describe(res: dict) -> str:
    parts = []
    if "ms" in res:
        parts.append(f"{res['ms']:9.2f} ms")
    if "slices_per_s" in res:
        parts.append(f"{res['slices_per_s']:8.2f} slices/s")
    if "timing" in res:
        parts.append(res["timing"])
    if "peak_alloc_gb" in res:
        parts.append(f"peak {res['peak_alloc_gb']:.2f} GB allocated, {res['peak_reserved_gb']:.2f} GB reserved "
                     f"(absolute; {res['start_alloc_gb']:.2f} GB allocated before the step)")
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


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1,
          reduce: Callable[[list[float]], float] = statistics.median) -> tuple[float, Any]:
    """``reduce`` (default median) of the seconds of ``fn()`` over ``repeats`` runs after ``warmup``
    runs, and the last output."""
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
    return reduce(times), out


def timing_mode(tf32: bool = False) -> None:
    """CUDA settings of the timed items: cuDNN autotuning on (the golden check turns it off)."""
    runtime.configure_cuda(tf32=tf32, benchmark=True)


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


def lazy(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn()`` made once, on first use inside an item (a failure is that item's, and is retried)."""
    return functools.cache(fn)


# ----------------------------------------------------------------------------- items

def golden_check(device: torch.device, path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} not present (--golden)")
    runtime.configure_cuda(tf32=False, benchmark=False)
    g = torch.load(path, map_location="cpu", weights_only=False)
    maps = g["sens_maps"][None, :, None]
    mask = g["mask"]
    k0 = SenseOp(maps, mask).forward(g["image"][None])
    model = load_authors_checkpoint(g["state_dict"]).to(device)
    with torch.no_grad():
        out = model(k0.to(device), mask.to(device), maps.to(device))[0].cpu()
    err = float((out - g["expected"]).norm() / g["expected"].norm())
    return {"rel_error": err, "passed": err < 1e-4}


def inference_items(suite: Suite, sizes: Sizes, view: str, shape, compile_ok: bool,
                    which: tuple[str, ...] = ("fp32", "fp32 + TF32", "bf16 autocast")) -> None:
    dev = suite.device
    get_model = lazy(lambda: build(sizes, dev).eval())
    get_inputs = lazy(lambda: problem(shape, 1, dev))

    @lazy
    def get_ref() -> torch.Tensor:
        timing_mode(tf32=False)
        with torch.no_grad():
            return get_model()(*get_inputs())

    def fp32() -> dict:
        model, inputs, ref = get_model(), get_inputs(), get_ref()
        timing_mode(tf32=False)
        with torch.no_grad():
            t, out = timed(lambda: model(*inputs), dev, suite.repeats)
        return {"ms": 1e3 * t, "max_rel_diff": rel_max(out, ref)}

    def tf32() -> dict:
        if dev.type != "cuda":
            raise NotApplicable("TF32 is a CUDA setting")
        model, inputs, ref = get_model(), get_inputs(), get_ref()
        timing_mode(tf32=True)
        try:
            with torch.no_grad():
                t, out = timed(lambda: model(*inputs), dev, suite.repeats)
        finally:
            timing_mode(tf32=False)
        return {"ms": 1e3 * t, "max_rel_diff": rel_max(out, ref)}

    def bf16() -> dict:
        ok, why = runtime.bf16_support(dev)
        if not ok:
            raise NotApplicable(why)
        model, inputs, ref = get_model(), get_inputs(), get_ref()
        timing_mode(tf32=False)
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16):
            t, out = timed(lambda: model(*inputs), dev, suite.repeats)
        return {"ms": 1e3 * t, "max_rel_diff": rel_max(out.to(torch.complex64), ref)}

    def compiled() -> dict:
        if not compile_ok:
            raise NotApplicable("not asked for (--no-compile, or the CPU without --compile)")
        need = suite.compile_need_s()
        if suite.left() < need:
            raise NotApplicable(f"{suite.left():.0f} s of the budget left, {need:.0f} s needed (--compile-min-s "
                                f"{suite.compile_min_s:.0f}, or 1.5x the first compiled call so far)")
        import torch._dynamo

        torch._dynamo.reset()  # this view compiles from scratch: its own specialised code, an honest first call
        model, inputs, ref = get_model(), get_inputs(), get_ref()
        timing_mode(tf32=False)
        m2 = build(sizes, dev).eval()
        m2.load_state_dict(model.state_dict())
        for c in m2.cascades:  # the denoisers are real-valued inside; one graph serves cascades 2..N
            c.forward = torch.compile(c.forward, dynamic=False)
        t0 = time.perf_counter()
        with torch.no_grad():
            m2(*inputs)
            sync(dev)
            first = time.perf_counter() - t0
            suite.compile_first_call_s = max(suite.compile_first_call_s, first)
            t, out = timed(lambda: m2(*inputs), dev, suite.repeats)
        return {"ms": 1e3 * t, "first_call_s": first, "max_rel_diff": rel_max(out, ref)}

    def graph() -> dict:
        if dev.type != "cuda":
            raise NotApplicable("CUDA graphs need a GPU")
        model, inputs, ref = get_model(), get_inputs(), get_ref()
        timing_mode(tf32=False)
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


def training_items(suite: Suite, sizes: Sizes) -> None:
    from cinerecon.train.config import LossConfig
    from cinerecon.train.losses import reconstruction_loss

    dev = suite.device

    def step(checkpointing: bool) -> dict:
        timing_mode(tf32=False)
        if dev.type == "cuda":  # the peak of the whole step: weights, optimiser state, activations
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
            start = torch.cuda.memory_allocated(dev)
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
        t, loss = timed(one, dev, max(1, suite.repeats // 3), warmup=0)
        res = {"ms": 1e3 * t}
        if dev.type == "cuda":
            res["peak_alloc_gb"] = torch.cuda.max_memory_allocated(dev) / GB
            res["peak_reserved_gb"] = torch.cuda.max_memory_reserved(dev) / GB
            res["start_alloc_gb"] = start / GB  # held by the process before the step (included in the peak)
        if not torch.isfinite(loss):
            raise RuntimeError("non-finite loss")
        return res

    suite.run("train/plain", "SAX train step, no checkpointing", lambda: step(False))
    suite.run("train/checkpoint", "SAX train step, checkpointing", lambda: step(True))


def throughput_items(suite: Suite, sizes: Sizes, naive_max_batch: int) -> None:
    dev = suite.device
    get_model = lazy(lambda: build(sizes, dev).eval())
    get_sd = lazy(lambda: to_authors_state_dict(get_model()))
    ok, _ = runtime.bf16_support(dev)
    for b in sizes.batches:
        get_inputs = lazy(functools.partial(problem, sizes.sax, b, dev, seed=b))

        def ours(precision: str) -> dict:
            model, inputs = get_model(), get_inputs()
            timing_mode(tf32=False)
            with torch.no_grad(), runtime.precision_context(precision, dev):
                t, _ = timed(lambda: model(*inputs), dev, suite.repeats)
            return {"slices_per_s": b / t, "ms": 1e3 * t}

        def naive() -> dict:
            if b > naive_max_batch:
                raise NotApplicable(f"not run above batch {naive_max_batch} (--naive-max-batch)")
            model, inputs, sd = get_model(), get_inputs(), get_sd()
            timing_mode(tf32=False)
            with torch.no_grad():
                t, out = timed(lambda: naive_crunet(sd, *inputs), dev, 2, warmup=1 if dev.type == "cuda" else 0,
                               reduce=min)
                ref = model(*inputs)
            return {"slices_per_s": b / t, "ms": 1e3 * t, "timing": "faster of 2 timed runs",
                    "max_rel_diff": rel_max(out, ref)}

        suite.run(f"throughput/ours_fp32/b{b}", f"SAX batch {b}, ours fp32", lambda: ours("fp32"))
        if ok:
            suite.run(f"throughput/ours_bf16/b{b}", f"SAX batch {b}, ours bf16", lambda: ours("bf16"))
        suite.run(f"throughput/naive_fp32/b{b}", f"SAX batch {b}, naive fp32", naive)


# ----------------------------------------------------------------------------- report

def golden_ok(results: dict[str, Any]) -> bool:
    """False when the golden check is missing (file absent, an error) or failed; a skip is not a failure."""
    g = results.get("golden", {})
    return "failed" not in g and g.get("passed") is not False and "section/golden" not in results


def summary(suite: Suite, sizes: Sizes) -> list[str]:
    """The golden check, ratios and the targets of the issue, as lines."""
    r, lines = suite.results, []
    g = r.get("golden", r.get("section/golden", {}))
    state = ("pass" if g.get("passed") else "FAIL") if "passed" in g else next(
        (f"{k}: {g[k]}" for k in ("failed", "skipped", "n/a") if k in g), "not run")
    lines.append(f"golden check: {state}")
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
    if "peak_alloc_gb" in ck:
        lines.append(f"training at SAX size with checkpointing: peak {ck['peak_alloc_gb']:.2f} GB allocated, "
                     f"{ck['peak_reserved_gb']:.2f} GB reserved (GB = 1e9 bytes; target < 24 GB allocated: "
                     f"{'met' if ck['peak_alloc_gb'] < 24 else 'MISSED'})")
    return lines


def markdown(suite: Suite, sizes: Sizes, name: str) -> str:
    day = datetime.date.today().isoformat()
    rows = []
    for key, v in suite.results.items():
        other = [f"{k}: {v[k]}" for k in ("failed", "skipped", "n/a") if k in v]
        rows.append(f"| {key} | {other[0] if other else describe(v)} |")
    head = (f"### GPU suite, {day}, {name}\n\n`benchmarks/gpu_suite.py`, torch {torch.__version__}; SAX (T, C, H, W) = "
            f"{sizes.sax}, LAX {sizes.lax}, chans {sizes.chans}, {sizes.cascades} cascades, random weights; TF32 off "
            "unless stated; cuDNN autotuning on for the timed items, off for the golden check; memory in GB "
            "(1e9 bytes).\n\n| Item | Result |\n| --- | --- |\n")
    tail = "\n".join(f"- {line}" for line in summary(suite, sizes))
    return head + "\n".join(rows) + "\n\n" + tail + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
                   help="skip torch.compile when less of the budget is left, or less than 1.5x the first "
                        "compiled call measured so far (default: %(default)s)")
    p.add_argument("--naive-max-batch", type=int, default=8, help="largest batch timed for the naive implementation")
    p.add_argument("--golden", type=Path, default=GOLDEN,
                   help="the authors' golden file (default: %(default)s); missing or failing: exit code 1")
    p.add_argument("--out", type=Path, help="write the results as JSON (rewritten after every item)")
    p.add_argument("--markdown", type=Path, help="write a Markdown section for benchmarks/README.md (likewise)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    for stream in (sys.stdout, sys.stderr):  # every line out at once, also through a pipe
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError, OSError):
            pass
    args = parse_args(argv)
    runtime.tune_cpu_allocator()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"--device {args.device}: CUDA is not available here; use --device cpu --small to check the script",
              file=sys.stderr, flush=True)
        return 2
    sizes = SMALL if args.small else Sizes()
    repeats = args.repeats or (10 if device.type == "cuda" else 2)
    compile_ok = args.compile if args.compile is not None else device.type == "cuda"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    suite = Suite(device, repeats, args.budget_s, compile_min_s=args.compile_min_s)
    meta = {"device": name, "torch": torch.__version__, "date": datetime.date.today().isoformat(),
            "small": args.small, "sizes": sizes.__dict__, "golden": str(args.golden), "budget_s": args.budget_s,
            "finished": False}

    def save() -> None:
        meta["elapsed_s"] = round(time.monotonic() - suite.start, 1)
        if args.out:
            write_atomic(args.out, json.dumps({"meta": meta, "results": suite.results}, indent=1, default=str))
        if args.markdown:
            write_atomic(args.markdown, markdown(suite, sizes, name))

    suite.save = save
    say(f"GPU suite on {name}, torch {torch.__version__}, {datetime.date.today().isoformat()}; "
        f"{'small sizes' if args.small else 'full sizes'}; budget {args.budget_s:.0f} s")
    views = (("sax", sizes.sax), ("lax", sizes.lax))
    interrupted = False
    try:
        suite.section("golden", "Golden check (TF32 and cuDNN autotuning off):",
                      lambda: suite.run("golden", "CRUNet-MR golden file", lambda: golden_check(device, args.golden)))
        for view, shape in views:
            suite.section(f"inference/{view}", f"Inference, one {view.upper()} slice (T, C, H, W) = {shape}:",
                          lambda: inference_items(suite, sizes, view, shape, compile_ok))
        suite.section("train", f"Training step at SAX size {sizes.sax}:", lambda: training_items(suite, sizes))
        suite.section("throughput", "Throughput at SAX size:",
                      lambda: throughput_items(suite, sizes, args.naive_max_batch))
        say("CUDA graphs (after the numbers above: a failed capture can leave the CUDA context unusable):")
        for view, shape in views:
            suite.section(f"graph/{view}", None,
                          lambda: inference_items(suite, sizes, view, shape, compile_ok, which=("CUDA graph",)))
        say("torch.compile (last: its first call compiles for minutes):")
        for view, shape in views:
            suite.section(f"compile/{view}", None,
                          lambda: inference_items(suite, sizes, view, shape, compile_ok, which=("torch.compile",)))
    except KeyboardInterrupt:  # e.g. ``timeout -s INT``: keep what finished
        interrupted = True
        key = suite.current or "interrupted"
        if key not in suite.results:  # an item whose result was stored as the signal came stays as it is
            suite.results[key] = {"failed": "interrupted (SIGINT, e.g. the time limit)"}
        say(f"Interrupted during {suite.current or 'the suite'}; writing what finished.")
    meta["finished"] = not interrupted
    say("Summary:")
    for line in summary(suite, sizes):
        say(f"  {line}")
    say(f"({time.monotonic() - suite.start:.0f} s)")
    suite.write()
    if interrupted:
        return 130
    return 0 if golden_ok(suite.results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
