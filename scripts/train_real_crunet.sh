#!/usr/bin/env bash
# Trains the CRUNet-MR shipped as src/cinerecon/assets/crunet_real.pt (load_pretrained("crunet"),
# `cinerecon reconstruct --method crunet`, `make demo`): configs/crunet_real.yaml (chans 16,
# 5 cascades, CG-SENSE initial image, items made on the fly from the real series under
# ../shared/data with rat_sax_8fr held out, 20 % phantoms; 85 minutes on 2 CPU cores), then
# configs/crunet_real_finetune.yaml (L+S initial image, 28 minutes), then configs/crunet_real_finetune2.yaml
# (corrected coil phase and phantom, 35 minutes, seed 1), then the k-t specialist for masks without a
# calibration block, configs/crunet_real_kt.yaml (45 minutes, 1 thread beside another run, seed 0),
# merged into one checkpoint (uncalibrated_weights), then the main weights fine-tuned with k-t random
# masks added, configs/crunet_real_finetune_random.yaml (500 steps, 22 minutes on 1 thread beside
# another run, seed 0; the k-t weights get no item and stay as they are), then a longer second pass
# on that mix, configs/crunet_real_finetune_long.yaml (2,200 steps, 125 minutes, seed 3). See
# src/cinerecon/assets/crunet_real.md.
# Usage: scripts/train_real_crunet.sh [RUN_DIR]   (runs in the foreground; use nohup ... & for the background)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/crunet_real}
out=${out%/}
mkdir -p "$(dirname "$out")"
OMP_NUM_THREADS=2 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real.yaml --out "$out" seed=0 \
    2>&1 | tee "$out.log"
OMP_NUM_THREADS=2 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real_finetune.yaml \
    --init "$out/best.pt" --out "${out}_ft" seed=0 2>&1 | tee "${out}_ft.log"
OMP_NUM_THREADS=2 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real_finetune2.yaml \
    --init "${out}_ft/best.pt" --out "${out}_ft2" seed=1 2>&1 | tee "${out}_ft2.log"
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real_kt.yaml \
    --init "${out}_ft2/best.pt" --out "${out}_kt" seed=0 --time-budget 45 2>&1 | tee "${out}_kt.log"
.venv/bin/python -m cinerecon.train.uncalibrated_merge "${out}_ft2/best.pt" "${out}_kt/last.pt" "${out}_merged.pt"
# the shipped start (lplus_s_kt) kept: the mix has only masks with a calibration block, whose start is L+S either way
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real_finetune_random.yaml \
    --init "${out}_merged.pt" --out "${out}_random" seed=0 model.kwargs.initial_image=lplus_s_kt 2>&1 | tee "${out}_random.log"
# step 7: a longer second pass on the same mix (2,200 steps, lr 1e-4 -> 1e-5, seed 3; 125 minutes on 1 thread beside another run)
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real_finetune_long.yaml \
    --init "${out}_random/last.pt" --out "${out}_long" seed=3 model.kwargs.initial_image=lplus_s_kt 2>&1 | tee "${out}_long.log"
.venv/bin/python - "${out}_long/last.pt" src/cinerecon/assets/crunet_real.pt <<'PY'
import sys
import torch

ckpt = torch.load(sys.argv[1], weights_only=False)
for key in ("optimizer", "scheduler", "rng", "best", "trained_state_dict", "ema_updates"):  # weights and config only
    ckpt[key] = None
torch.save(ckpt, sys.argv[2])
print(f"wrote {sys.argv[2]}")
PY
