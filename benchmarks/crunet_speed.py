"""CRUNet-MR speed and memory: our batched implementation vs a literal frame-by-frame one.

Prints, in one run:
  * inference time of ``build_model("crunet")`` and of ``tests/crunet_naive.py`` (every
    convolution run per frame, temporal Conv1d per pixel, recurrence terms as written) with
    the same weights, their speed ratio, and the outputs' max relative difference;
  * throughput of ``--throughput-batch`` slices (default 4) in one call of ours against the
    naive implementation called once per slice, in fp32 and (where the device computes bf16)
    with bf16 autocast, with bf16's max difference to fp32;
  * ours at that batch with the system allocator (a child process with
    ``CINERECON_MALLOC=system``) against the tuned one (``cinerecon.runtime``);
  * with ``--variants``: ours with channels-last weights, against the default layout;
  * with ``--accuracy CKPT``: PSNR of a trained checkpoint on the dev real series in fp32 and
    with bf16 autocast, and the change;
  * peak memory of one training step (forward + backward) without and with activation
    checkpointing (``checkpoint_cascades=True``);
  * with ``--cuda``: fp32, bf16 autocast, torch.compile and CUDA-graph timings.

The allocator is tuned at start-up (as the ``cinerecon`` CLI does), for ours and the naive
implementation alike; ``--system-malloc`` keeps the system's.

Usage (from the repository root)::

    .venv/bin/python benchmarks/crunet_speed.py                      # CPU, 96x96
    .venv/bin/python benchmarks/crunet_speed.py --accuracy runs/crunet_real/best.pt
    .venv/bin/python benchmarks/crunet_speed.py --cuda --size 204 448 --train-size 204 448

See benchmarks/README.md for what each number measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cinerecon import runtime  # noqa: E402
from cinerecon.models import build_model  # noqa: E402
from cinerecon.models.compat import to_authors_state_dict  # noqa: E402
from cinerecon.operators import SenseOp  # noqa: E402
from crunet_naive import naive_crunet  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=(96, 96), metavar=("H", "W"))
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--coils", type=int, default=10)
    p.add_argument("--chans", type=int, default=64)
    p.add_argument("--cascades", type=int, default=5)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per variant, median reported (default 1 on CPU, 10 on CUDA)")
    p.add_argument("--train-size", type=int, nargs=2, default=(48, 48), metavar=("H", "W"),
                   help="image size of the training-step memory measurement")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.add_argument("--cuda", action="store_true", help="run on the GPU (adds bf16/compile/graph timings)")
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--throughput-batch", type=int, default=4,
                   help="slices per call of the throughput comparison (0 skips it)")
    p.add_argument("--skip-allocator", action="store_true", help="skip the system-allocator comparison")
    p.add_argument("--system-malloc", action="store_true", help="do not tune the allocator in this process")
    p.add_argument("--variants", action="store_true", help="also time channels-last weights")
    p.add_argument("--accuracy", metavar="CKPT", help="PSNR fp32 vs bf16 of this checkpoint on the real series")
    p.add_argument("--series", default=str(ROOT.parent / "shared" / "data" / "real_cine" / "subj1_sax_EC.npz"),
                   help="real series of --accuracy (default: the dev series)")
    p.add_argument("--allocator-child", choices=["ours", "naive"], help=argparse.SUPPRESS)
    p.add_argument("--memstep", choices=["plain", "checkpoint"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def problem(args, size, device):
    """Random image, unit-norm maps and an R=4 equispaced mask with 8 ACS lines."""
    g = torch.Generator().manual_seed(0)
    h, w = size
    b, c, t = args.batch, args.coils, args.frames
    x = torch.randn(b, t, h, w, dtype=torch.complex64, generator=g)
    maps = torch.randn(b, c, 1, h, w, dtype=torch.complex64, generator=g)
    maps = maps / (maps.abs() ** 2).sum(1, keepdim=True).sqrt()
    mask = torch.zeros(w)
    mask[::4] = 1
    mask[w // 2 - 4:w // 2 + 4] = 1
    k0 = SenseOp(maps, mask).forward(x)
    return k0.to(device), mask.to(device), maps.to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats=1, warmup=1):
    """Median wall time in seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs.

    Also records the median process CPU time of the runs in ``timed.cpu`` (on a shared
    machine wall time includes waiting for a core; CPU time does not).
    """
    out = None
    for _ in range(warmup):
        out = fn()
    sync(device)
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    timed.cpu = statistics.median(cpu)
    return statistics.median(times), out


def build(args, device, **kw):
    torch.manual_seed(0)
    return build_model("crunet", chans=args.chans, cascades=args.cascades, **kw).to(device)


def proc_status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0), if allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # VmHWM then covers the whole (fresh, exec'd) process, a slight over-estimate


def memstep(args) -> None:
    """Child process: one training step; prints the memory measurement as JSON."""
    device = torch.device("cuda" if args.cuda else "cpu")
    model = build(args, device, checkpoint_cascades=args.memstep == "checkpoint").train()
    k0, mask, maps = problem(args, args.train_size, device)
    target = SenseOp(maps).reduce(k0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
        base = proc_status_kib("VmRSS")
    loss = (model(k0, mask, maps) - target).abs().pow(2).mean()
    loss.backward()
    sync(device)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:  # peak resident set size during the step, above the RSS before it
        peak = (proc_status_kib("VmHWM") - base) / 1024
    print(json.dumps({"peak_mib": peak}))


def memory_report(args) -> None:
    h, w = args.train_size
    what = ("torch.cuda.max_memory_allocated above the allocation before the step" if args.cuda else
            "peak RSS (VmHWM) of a fresh process during the step, minus its RSS before it")
    print(f"\nTraining-step peak memory, {h}x{w}, T={args.frames}, C={args.coils}, chans={args.chans}, "
          f"{args.cascades} cascades, batch {args.batch} (forward + backward; {what}):")
    res = {}
    for mode in ("plain", "checkpoint"):
        cmd = [sys.executable, __file__, "--memstep", mode, "--size", *map(str, args.size),
               "--train-size", str(h), str(w), "--frames", str(args.frames), "--coils", str(args.coils),
               "--chans", str(args.chans), "--cascades", str(args.cascades), "--batch", str(args.batch)]
        if args.cuda:
            cmd.append("--cuda")
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        # a fixed glibc mmap threshold: tensors are mmapped and unmapped when freed, so RSS
        # follows the live allocations instead of the heap's high-water mark
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if out.returncode != 0:
            print(f"  {mode}: failed: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode}")
            continue
        res[mode] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
        print(f"  {'without' if mode == 'plain' else 'with'} checkpointing: {res[mode]:9.1f} MiB")
    if len(res) == 2 and res["checkpoint"] > 0:
        print(f"  ratio without/with: {res['plain'] / res['checkpoint']:.2f}x")


def gpu_variants(args, model, inputs, device, t_fp32) -> None:
    print("\nGPU variants (median of repeats, after warm-up):")
    print(f"  fp32 eager          : {t_fp32 * 1e3:9.1f} ms")

    def bf16():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return model(*inputs)

    with torch.no_grad():
        ref = model(*inputs)
        try:
            t, out = timed(bf16, device, args.repeats, warmup=2)
            err = float((out - ref).abs().max() / ref.abs().max())
            print(f"  bf16 autocast       : {t * 1e3:9.1f} ms  ({t_fp32 / t:.2f}x, max rel diff {err:.1e})")
        except Exception as e:  # report and continue: these are optional accelerations
            print(f"  bf16 autocast       : failed ({type(e).__name__}: {e})")
        for label, mode in (("torch.compile", "default"), ("compile+CUDA graphs", "reduce-overhead")):
            try:
                m2 = build(args, device).eval()
                m2.load_state_dict(model.state_dict())
                for i, c in enumerate(m2.cascades):  # the denoisers are real-valued inside
                    m2.cascades[i] = torch.compile(c, mode=mode)
                def run():
                    torch.compiler.cudagraph_mark_step_begin()  # previous outputs may be overwritten
                    return m2(*inputs)

                t0 = time.perf_counter()
                run()
                sync(device)
                t_c = time.perf_counter() - t0
                t, out = timed(run, device, args.repeats, warmup=2)
                err = float((out - ref).abs().max() / ref.abs().max())
                print(f"  {label:20s}: {t * 1e3:9.1f} ms  ({t_fp32 / t:.2f}x, first call {t_c:.0f} s, "
                      f"max rel diff {err:.1e})")
            except Exception as e:
                print(f"  {label:20s}: failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})")


def bf16_ok(device) -> tuple[bool, str]:
    return runtime.bf16_support(device)


def bf16_call(model, inputs, device):
    with torch.autocast(device.type, dtype=torch.bfloat16):
        return model(*inputs)


def rel_max(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


def throughput_report(args, model, device) -> None:
    """Ours on a batch of n slices in one call vs the naive implementation once per slice."""
    n = args.throughput_batch
    batched = argparse.Namespace(**{**vars(args), "batch": n})
    big = problem(batched, args.size, device)
    slices = [(big[0][i:i + 1], big[1], big[2][i:i + 1]) for i in range(n)]  # the mask (W,) is shared
    print(f"\nThroughput, {n} slices (T={args.frames}, C={args.coils}, {args.size[0]}x{args.size[1]}): "
          f"ours on one batch of {n} vs naive called once per slice")
    sd = to_authors_state_dict(model)
    with torch.no_grad():
        # steady state, as in a pipeline that reconstructs many slices: one warm-up call each (ours
        # at the batch size, whose first call also grows the heap to its larger working set)
        t_ours, out = timed(lambda: model(*big), device, args.repeats, warmup=1)
        c_ours = timed.cpu
        if args.skip_naive:
            ref = None
        else:
            naive_crunet(sd, *slices[0])
            t_naive, ref = timed(lambda: torch.cat([naive_crunet(sd, *s) for s in slices]), device, 1, warmup=0)
            c_naive = timed.cpu
        print(f"  ours fp32, batch {n}    : {t_ours:8.3f} s wall, {c_ours:8.3f} s CPU ({n / t_ours:.2f} slices/s)")
        if ref is not None:
            print(f"  naive fp32, {n} x batch 1: {t_naive:8.3f} s wall, {c_naive:8.3f} s CPU ({n / t_naive:.2f} slices/s)")
            print(f"  throughput ratio ours/naive fp32: {t_naive / t_ours:.2f}x wall ({c_naive / max(c_ours, 1e-9):.2f}x "
                  f"CPU time); max |ours - naive| / max |naive| = {rel_max(out, ref):.2e}")
        ok, why = bf16_ok(device)
        if not ok:
            print(f"  bf16: not measured ({why})")
            return
        t_b, out_b = timed(lambda: bf16_call(model, big, device), device, args.repeats, warmup=1)
        c_b = timed.cpu
        print(f"  ours bf16, batch {n}    : {t_b:8.3f} s wall, {c_b:8.3f} s CPU ({n / t_b:.2f} slices/s); "
              f"max |bf16 - fp32| / max |fp32| = {rel_max(out_b, out):.2e}")
        if ref is not None:
            print(f"  throughput ratio ours bf16/naive fp32: {t_naive / t_b:.2f}x wall ({c_naive / max(c_b, 1e-9):.2f}x "
                  "CPU time)")


def allocator_child(args) -> None:
    """Child process: ours on the batch (one warm-up call), or the naive once per slice; prints JSON."""
    device = torch.device("cpu")
    model = build(args, device).eval()
    k, mask, maps = problem(args, args.size, device)
    with torch.no_grad():
        if args.allocator_child == "ours":
            t, _ = timed(lambda: model(k, mask, maps), device, args.repeats, warmup=1)
        else:
            sd = to_authors_state_dict(model)
            t, _ = timed(lambda: [naive_crunet(sd, k[i:i + 1], mask, maps[i:i + 1]) for i in range(k.shape[0])],
                         device, 1, warmup=0)
    print(json.dumps({"wall": t, "cpu": timed.cpu}))


def allocator_report(args, tuned: str) -> None:
    n = args.throughput_batch
    print(f"\nAllocator: ours at batch {n} (one warm-up call) and the naive once per slice, each in a child "
          "process with the system allocator and with the tuned one:")
    res = {}
    runs = [(f"{who}/{label}", who, env) for who in ("ours", "naive")
            for label, env in (("system", {"CINERECON_MALLOC": "system"}), ("tuned", {}))
            if who == "ours" or not args.skip_naive]
    for key, who, env in runs:
        cmd = [sys.executable, __file__, "--allocator-child", who, "--size", *map(str, args.size), "--frames",
               str(args.frames), "--coils", str(args.coils), "--chans", str(args.chans), "--cascades",
               str(args.cascades), "--batch", str(n), "--repeats", str(args.repeats)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "CINERECON_MALLOC"}
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**base, **env})
        if out.returncode != 0:
            print(f"  {key}: failed: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode}")
            return
        res[key] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {key:13s}: {res[key]['wall']:8.3f} s wall, {res[key]['cpu']:8.3f} s CPU")
    print(f"  ours, tuned vs system allocator: {res['ours/system']['wall'] / res['ours/tuned']['wall']:.2f}x wall "
          f"({res['ours/system']['cpu'] / max(res['ours/tuned']['cpu'], 1e-9):.2f}x CPU time)")
    if "naive/system" in res:
        for mine in ("system", "tuned"):
            print(f"  throughput ratio ours ({mine}) / naive (system allocator): "
                  f"{res['naive/system']['wall'] / res[f'ours/{mine}']['wall']:.2f}x wall "
                  f"({res['naive/system']['cpu'] / max(res[f'ours/{mine}']['cpu'], 1e-9):.2f}x CPU time)")


def variants_report(args, model, inputs, device, t_ours) -> None:
    print("\nLayout variants (ours, batch as above):")
    m2 = build(args, device).eval()
    m2.load_state_dict(model.state_dict())
    m2.to(memory_format=torch.channels_last)
    with torch.no_grad():
        t, out = timed(lambda: m2(*inputs), device, args.repeats, warmup=1)
        ref = model(*inputs)
    print(f"  channels-last weights: {t:8.3f} s wall ({t_ours / t:.2f}x the default layout; "
          f"max rel diff {rel_max(out, ref):.1e})")


def accuracy_report(args, device) -> None:
    """PSNR (magnitude, data range max |target| per series) of a checkpoint in fp32 and bf16."""
    from cinerecon.data.realistic import RealCineConfig, validation_samples
    from cinerecon.train.checkpoints import load_model
    from cinerecon.train.loop import magnitude_psnr

    model, _ = load_model(args.accuracy, device)
    model.eval()
    ok, why = bf16_ok(device)
    samples = validation_samples(RealCineConfig(), [Path(args.series)])
    print(f"\nbf16 accuracy: {args.accuracy} on {Path(args.series).name} ({len(samples)} masks, "
          f"{tuple(samples[0].kspace.shape)} (C, T, H, W)), magnitude PSNR vs the fully sampled target:")
    if not ok:
        print(f"  not measured: {why}")
        return
    deltas = []
    with torch.no_grad():
        for s in samples:
            inputs = (s.kspace[None].to(device), s.mask[None].to(device), s.maps[None].to(device))
            target = s.target[None].to(device)
            p32 = float(magnitude_psnr(model(*inputs).to(torch.complex64), target)[0])
            p16 = float(magnitude_psnr(bf16_call(model, inputs, device).to(torch.complex64), target)[0])
            deltas.append(p16 - p32)
            print(f"  {s.meta.name:40s}: fp32 {p32:7.3f} dB, bf16 {p16:7.3f} dB, change {p16 - p32:+.4f} dB")
    print(f"  largest |change|: {max(abs(d) for d in deltas):.4f} dB (target < 0.05 dB)")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cuda and not torch.cuda.is_available():
        print("--cuda given but CUDA is not available", file=sys.stderr)
        return 2
    tuned = "system allocator (--system-malloc)" if args.system_malloc else runtime.tune_cpu_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.repeats is None:
        args.repeats = 10 if args.cuda else 1
    if args.memstep:
        memstep(args)
        return 0
    if args.allocator_child:
        allocator_child(args)
        return 0
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.cuda:
        runtime.configure_cuda(tf32=False)
    h, w = args.size
    name = torch.cuda.get_device_name() if args.cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"CRUNet-MR inference, {name}: batch {args.batch}, T={args.frames}, C={args.coils}, "
          f"{h}x{w}, chans={args.chans}, {args.cascades} cascades, torch {torch.__version__}; {tuned}")
    model = build(args, device).eval()
    inputs = problem(args, args.size, device)
    with torch.no_grad():
        warm = 2 if args.cuda else 0  # CPU: the first call costs about as much as the others
        t_ours, out = timed(lambda: model(*inputs), device, args.repeats, warmup=warm)
        c_ours = timed.cpu
        print(f"  ours (batched)   : {t_ours:8.3f} s wall, {c_ours:8.3f} s CPU")
        if not args.skip_naive:
            sd = to_authors_state_dict(model)
            t_naive, ref = timed(lambda: naive_crunet(sd, *inputs), device, 1, warmup=0)
            c_naive = timed.cpu
            err = float((out - ref).abs().max() / ref.abs().max())
            nrm = float((out - ref).norm() / ref.norm())
            print(f"  naive (per frame): {t_naive:8.3f} s wall, {c_naive:8.3f} s CPU")
            print(f"  speed-up {t_naive / t_ours:.2f}x wall ({c_naive / max(c_ours, 1e-9):.2f}x CPU time); "
                  f"max |ours - naive| / max |naive| = {err:.2e} (relative L2 {nrm:.2e})")
        if not args.cuda:
            ok, why = bf16_ok(device)
            if ok:
                t_b, out_b = timed(lambda: bf16_call(model, inputs, device), device, args.repeats, warmup=1)
                c_b = timed.cpu
                vs = "" if args.skip_naive else (f"; {t_naive / t_b:.2f}x the naive fp32 wall "
                                                 f"({c_naive / max(c_b, 1e-9):.2f}x CPU time)")
                print(f"  ours bf16 autocast: {t_b:8.3f} s wall, {c_b:8.3f} s CPU ({why}); max |bf16 - fp32| / "
                      f"max |fp32| = {rel_max(out_b, out):.2e}{vs}")
            else:
                print(f"  ours bf16 autocast: not measured ({why})")
    if args.variants:
        variants_report(args, model, inputs, device, t_ours)
    if args.throughput_batch > 0:
        throughput_report(args, model, device)
        if not args.cuda and not args.skip_allocator and not args.system_malloc:
            allocator_report(args, tuned)
    if args.accuracy:
        accuracy_report(args, device)
    if args.cuda:
        gpu_variants(args, model, inputs, device, t_ours)
    if not args.skip_memory:
        memory_report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
