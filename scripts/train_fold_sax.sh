#!/usr/bin/env bash
# Generalisation check on unseen human anatomy (issue 11): the shipped recipe with the human SAX
# series held out (configs/crunet_real_fold_sax.yaml, 45 min, then
# configs/crunet_real_fold_sax_ft.yaml, 15 min; 2 CPU cores), then benchmarks/real_anatomy.py
# on the held-out series. Not shipped: evidence only. Results in benchmarks/README.md.
# Usage: scripts/train_fold_sax.sh [RUN_DIR]   (foreground; nohup ... & for the background)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/fold_sax}
out=${out%/}
mkdir -p "$(dirname "$out")"
OMP_NUM_THREADS=2 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real_fold_sax.yaml \
    --out "$out" seed=0 2>&1 | tee "$out.log"
OMP_NUM_THREADS=2 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real_fold_sax_ft.yaml \
    --init "$out/best.pt" --out "${out}_ft" seed=0 2>&1 | tee "${out}_ft.log"
.venv/bin/python benchmarks/real_anatomy.py --checkpoint "${out}_ft/best.pt" \
    --series ../shared/data/real_cine/subj1_sax_EC.npz --out "${out}_bench" 2>&1 | tee "${out}_bench.log"
