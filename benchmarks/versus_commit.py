"""User-facing reconstruction times of this checkout against an earlier commit of the package.

Checks the given commit out into a temporary git worktree and times, in child processes that
import the package from either source tree (alternating, ``--rounds`` times each), on one
CMRxRecon-size SAX slice (10 coils x 12 frames x 204 x 448, equispaced R = 8 with 24 ACS lines):
CG-SENSE (10 iterations), L+S with its defaults, and the shipped CRUNet-MR
(``load_pretrained("crunet")``, L+S start, 5 cascades); and one training step (forward, L1
loss, backward) of a seeded CRUNet-MR at the training recipe's size (chans 16, 5 cascades,
batch 2 of 64 x 64 crops, 12 frames, 10 coils, R = 8 with 8 ACS lines), whose "output" is the
gradient of all weights. Each child tunes the allocator as the CLI does, runs each call once
to warm up and times the second call. Prints the median time per side, the ratio
(before / now) and the largest relative difference of the outputs.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/versus_commit.py 6c642b1 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time, torch
from cinerecon.runtime import tune_cpu_allocator
tune_cpu_allocator()
from cinerecon.classical.cg_sense import cg_sense
from cinerecon.classical.lowrank_sparse import lplus_s
from cinerecon.masks import MaskSpec, make_mask
from cinerecon.models import load_pretrained
from cinerecon.operators import SenseOp
threads, c, t, h, w, out = int(sys.argv[1]), *map(int, sys.argv[2:6]), sys.argv[6]
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(1)
maps = torch.randn(1, c, 1, h, w, dtype=torch.complex64, generator=g)
maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
mask = make_mask(MaskSpec("equispaced_acs", 8, 24), t, w, seed=0)[None]
k = SenseOp(maps, mask).forward(torch.randn(1, t, h, w, dtype=torch.complex64, generator=g))
model = load_pretrained("crunet")
calls = {"CG-SENSE, 10 iterations": lambda: cg_sense(k, mask, maps, iters=10),
         "L+S (defaults)": lambda: lplus_s(k, mask, maps),
         "shipped CRUNet-MR": lambda: model(k, mask, maps)}
times, results = {}, {}
with torch.no_grad():
    for name, fn in calls.items():
        fn()
        t0 = time.perf_counter()
        results[name] = fn()
        times[name] = time.perf_counter() - t0
from cinerecon.models import build_model
torch.manual_seed(0)
net = build_model("crunet", chans=16, cascades=5).train()
tc, tt, ts = 10, 12, 64
tmaps = torch.randn(2, tc, 1, ts, ts, dtype=torch.complex64, generator=g)
tmaps = tmaps / tmaps.abs().pow(2).sum(1, keepdim=True).sqrt()
tmask = make_mask(MaskSpec("equispaced_acs", 8, 8), tt, ts, seed=0)[None]
tk = torch.randn(2, tc, tt, ts, ts, dtype=torch.complex64, generator=g) * tmask
target = torch.randn(2, tt, ts, ts, dtype=torch.complex64, generator=g)
def train_step():
    net.zero_grad()
    (net(tk, tmask, tmaps) - target).abs().mean().backward()
    return torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
train_step()
t0 = time.perf_counter()
results["training step (recipe size)"] = train_step()
times["training step (recipe size)"] = time.perf_counter() - t0
torch.save(results, out + ".pt")
print(json.dumps(times))
"""


def run_child(src: Path, args, out: Path) -> dict[str, float]:
    """Time the calls with the package imported from ``src``; returns {call: seconds}."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(args.threads)}
    size = [str(v) for v in (args.coils, args.frames, *args.size)]
    proc = subprocess.run([sys.executable, "-c", CHILD, str(args.threads), *size, str(out)],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("commit", help="the earlier commit (anything `git worktree add` accepts)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2, help="alternating runs per side")
    p.add_argument("--coils", type=int, default=10)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--size", type=int, nargs=2, default=(204, 448), metavar=("H", "W"))
    args = p.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), args.commit], check=True)
        try:
            sides = {"before": tree / "src", "now": ROOT / "src"}
            times: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
            for _ in range(args.rounds):
                for name, src in sides.items():
                    times[name].append(run_child(src, args, Path(tmp) / name))
            outs = {name: torch.load(Path(tmp) / f"{name}.pt") for name in sides}
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    h, w = args.size
    print(f"# {args.commit} (before) vs this checkout (now): {args.coils} coils x {args.frames} frames x {h} x {w}, "
          f"R = 8, {args.threads} thread(s), median of {args.rounds} alternating runs (training step: "
          f"chans 16, batch 2 x 10 x 12 x 64 x 64)")
    for call in times["now"][0]:
        before = statistics.median(r[call] for r in times["before"])
        now = statistics.median(r[call] for r in times["now"])
        a, b = outs["before"][call], outs["now"][call]
        diff = float((a - b).abs().max() / a.abs().max())
        print(f"{call:28s} before {before:8.2f} s   now {now:8.2f} s   {before / now:5.2f}x   "
              f"max rel. difference {diff:.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
