#!/usr/bin/env bash
# The EMA SAX-fold experiment (docs/crunet_real_training/ema_fold_sax/rule.txt): fixed step counts
# (1,800 + 400 steps, as the 55-minute recipe run reached on an idle machine) so that other work on
# the machine only delays it.
set -euo pipefail
cd /work/main
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real.yaml --out runs/ema_fold_sax \
    seed=0 "data.real.val_series=[subj1_sax_EC]" optim.ema_decay=0.999 epochs=18 --time-budget 110 > runs/ema_fold_sax.log 2>&1
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real_finetune.yaml \
    --init runs/ema_fold_sax/last.pt --out runs/ema_fold_sax_ft seed=0 "data.real.val_series=[subj1_sax_EC]" \
    optim.ema_decay=0.999 epochs=4 --time-budget 40 > runs/ema_fold_sax_ft.log 2>&1
