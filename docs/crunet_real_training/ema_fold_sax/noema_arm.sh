#!/usr/bin/env bash
# Arm B of the EMA SAX-fold experiment: the recipe without the moving average. Step 1's trained weights
# (identical to a run without ema_decay: the average never feeds back into training) -> step 2 without it.
set -euo pipefail
cd /work/main
while [ ! -f runs/ema_fold_sax_ft/config.yaml ]; do sleep 20; done   # arm A's step 1 has finished
.venv/bin/python -m cinerecon.train.ema runs/ema_fold_sax/last.pt runs/ema_fold_sax_step1_trained.pt
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real_finetune.yaml \
    --init runs/ema_fold_sax_step1_trained.pt --out runs/noema_fold_sax_ft seed=0 "data.real.val_series=[subj1_sax_EC]" \
    epochs=4 --time-budget 40 > runs/noema_fold_sax_ft.log 2>&1
