"""CRUNet-MR with channels-last features against the standard layout, in one run.

``CRUNetCascade`` stores its features channels fastest (``blocks.channels_last_frames``), so
oneDNN runs channels-last convolutions; the reference is the same model with the standard
layout throughout (the conversion replaced by the identity). Same weights, same input;
median CPU time of ``--repeats`` calls after one warm-up, fp32 and bf16 autocast (when the CPU
has bf16 arithmetic), and the largest difference between the two layouts' outputs.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/feature_layout.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext

import torch

import cinerecon.models.crunet as crunet_module
from cinerecon.models import build_model
from cinerecon.operators import SenseOp
from cinerecon.runtime import bf16_support, tune_cpu_allocator


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 96, 192, 160], help="H W pairs")
    p.add_argument("--chans", type=int, default=64)
    p.add_argument("--cascades", type=int, default=5)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--coils", type=int, default=10)
    args = p.parse_args(argv)
    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("crunet", chans=args.chans, cascades=args.cascades).eval()
    bf16 = bf16_support(torch.device("cpu"))[0]
    print(f"# CRUNet-MR chans {args.chans}, {args.cascades} cascades, T={args.frames}, C={args.coils}, "
          f"{args.threads} thread(s); CPU time, median of {args.repeats}; ratio = standard / channels-last")
    convert = crunet_module.channels_last_frames
    for h, w in zip(args.sizes[::2], args.sizes[1::2]):
        g = torch.Generator().manual_seed(h * w)
        maps = torch.randn(1, args.coils, 1, h, w, dtype=torch.complex64, generator=g)
        maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
        mask = torch.zeros(1, 1, 1, 1, w)
        mask[..., ::4] = 1
        mask[..., w // 2 - 4:w // 2 + 4] = 1
        k = SenseOp(maps, mask).forward(torch.randn(1, args.frames, h, w, dtype=torch.complex64, generator=g))
        for precision in ("fp32", "bf16") if bf16 else ("fp32",):
            ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else nullcontext
            times, outs = {}, {}
            for layout in ("standard", "channels_last", "standard", "channels_last"):
                crunet_module.channels_last_frames = convert if layout == "channels_last" else (lambda x: x)
                try:
                    with torch.no_grad(), ctx():
                        model(k, mask, maps)
                        runs = []
                        for _ in range(args.repeats):
                            t0 = time.process_time()
                            outs[layout] = model(k, mask, maps)
                            runs.append(time.process_time() - t0)
                finally:
                    crunet_module.channels_last_frames = convert
                times.setdefault(layout, []).append(statistics.median(runs))
            std, cl = min(times["standard"]), min(times["channels_last"])
            diff = float((outs["channels_last"] - outs["standard"]).abs().max() / outs["standard"].abs().max())
            print(f"{h}x{w} {precision}: standard {std:7.2f} s, channels-last {cl:7.2f} s, ratio {std / cl:.2f}x, "
                  f"max rel. difference {diff:.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
