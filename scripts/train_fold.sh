#!/usr/bin/env bash
# Leave-one-series-out check of the shipped recipe (issue 11): train with one real series held
# out, keep the LAST checkpoint of each step (nothing is chosen on the held-out series; its
# validation PSNR is only logged), then run benchmarks/real_anatomy.py on it.
# Step 1: configs/crunet_real.yaml (CG-SENSE initial image), step 2: configs/crunet_real_finetune.yaml
# (L+S initial image) from step 1's last.pt. Not shipped: evidence only.
# Usage: scripts/train_fold.sh HELD_OUT_STEM [STEP1_MIN STEP2_MIN [RUN_DIR [OVERRIDE...]]]
#   e.g. scripts/train_fold.sh lax4ch_mocoinr 35 10 runs/fold_4ch   (foreground; nohup ... & for the background)
#   OVERRIDEs (key=value, e.g. optim.ema_decay=0.999) go to both training steps.
set -euo pipefail
cd "$(dirname "$0")/.."
stem=${1:?usage: scripts/train_fold.sh HELD_OUT_STEM [STEP1_MIN STEP2_MIN [RUN_DIR]]}
min1=${2:-45}
min2=${3:-15}
out=${4:-runs/fold_$stem}
out=${out%/}
shift $(( $# < 4 ? $# : 4 ))
series=$(find ../shared/data -name "$stem.npz" | head -n 1)
[ -n "$series" ] || { echo "train_fold.sh: no series $stem.npz under ../shared/data" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
OMP_NUM_THREADS=2 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real.yaml --out "$out" \
    seed=0 "data.real.val_series=[$stem]" "$@" --time-budget "$min1" 2>&1 | tee "$out.log"
OMP_NUM_THREADS=2 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real_finetune.yaml \
    --init "$out/last.pt" --out "${out}_ft" seed=0 "data.real.val_series=[$stem]" "$@" --time-budget "$min2" \
    2>&1 | tee "${out}_ft.log"
.venv/bin/python benchmarks/real_anatomy.py --checkpoint "${out}_ft/last.pt" --series "$series" \
    --out "${out}_bench" 2>&1 | tee "${out}_bench.log"
