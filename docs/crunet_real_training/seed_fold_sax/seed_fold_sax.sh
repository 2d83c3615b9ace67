#!/usr/bin/env bash
# Seed check of the SAX-fold recipe (rule.txt beside this file): arm B of ../ema_fold_sax with seed 1.
set -euo pipefail
cd /work/main
OMP_NUM_THREADS=2 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real.yaml --out runs/seed1_fold_sax \
    seed=1 "data.real.val_series=[subj1_sax_EC]" epochs=18 --time-budget 48 > runs/seed1_fold_sax.log 2>&1
OMP_NUM_THREADS=2 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real_finetune.yaml \
    --init runs/seed1_fold_sax/last.pt --out runs/seed1_fold_sax_ft seed=1 "data.real.val_series=[subj1_sax_EC]" \
    epochs=4 --time-budget 18 > runs/seed1_fold_sax_ft.log 2>&1
OMP_NUM_THREADS=2 .venv/bin/python benchmarks/real_anatomy.py --checkpoint runs/seed1_fold_sax_ft/last.pt \
    --series ../shared/data/real_cine/subj1_sax_EC.npz --masks R8 R10 "R8 time-varying" --threads 2 \
    --out runs/seed1_bench > runs/seed1_bench.log 2>&1
