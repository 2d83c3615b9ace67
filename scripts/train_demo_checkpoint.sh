#!/usr/bin/env bash
# Trains the small CRUNet-MR shipped as src/cinerecon/assets/demo_crunet.pt (used by
# `cinerecon demo --pretrained`, i.e. `make demo`): chans 16, 3 cascades, R = 8, 5-frame
# windows, 15 minutes of CPU training on 40 simulated subjects of seed 1, so that none of the
# demo's default (seed 0) subjects is seen in training. Usage: scripts/train_demo_checkpoint.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/demo_checkpoint}
.venv/bin/cinerecon demo --out "$out" --train-minutes 15 --subjects 40 --seed 1 --no-progress
.venv/bin/python - "$out/run/best.pt" src/cinerecon/assets/demo_crunet.pt <<'PY'
import sys
import torch

ckpt = torch.load(sys.argv[1], weights_only=False)
for key in ("optimizer", "scheduler", "rng"):  # ship the weights and the resolved config only
    ckpt[key] = None
torch.save(ckpt, sys.argv[2])
print(f"wrote {sys.argv[2]}")
PY
