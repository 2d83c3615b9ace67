#!/usr/bin/env bash
# Benchmarks of the EMA SAX-fold experiment (rule: docs/crunet_real_training/ema_fold_sax/rule.txt).
set -euo pipefail
cd /work/main
S=../shared/data/real_cine/subj1_sax_EC.npz
.venv/bin/python -m cinerecon.train.ema runs/ema_fold_sax_ft/last.pt runs/ema_fold_sax_ft_trained.pt --overwrite
b() { OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_anatomy.py --checkpoint "$1" --series $S \
        --masks R8 R10 "R8 time-varying" --threads 1 --out "$2" > "$2.log" 2>&1; }
b runs/ema_fold_sax_ft/last.pt runs/ema_bench_A &          # arm A: the recipe with the average (primary)
b runs/noema_fold_sax_ft/last.pt runs/ema_bench_B &        # arm B: the recipe without it (primary)
wait
b runs/ema_fold_sax/last.pt runs/ema_bench_step1_avg &     # secondary: step 1's average ...
b runs/ema_fold_sax_step1_trained.pt runs/ema_bench_step1_trained &   # ... and its trained weights
wait
b runs/ema_fold_sax_ft_trained.pt runs/ema_bench_A_trained   # secondary: step 2's trained weights within arm A
