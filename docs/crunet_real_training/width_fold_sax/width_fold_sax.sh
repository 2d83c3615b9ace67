#!/usr/bin/env bash
# Width experiment on the SAX fold (rule.txt beside this file): chans 24 at the compute of the
# chans-16 recipe (900 + 200 steps against 1,800 + 400), one thread, seed 0.
set -euo pipefail
cd /work/main
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real.yaml --out runs/width24_fold_sax \
    seed=0 "data.real.val_series=[subj1_sax_EC]" model.kwargs.chans=24 epochs=9 --time-budget 95 > runs/width24_fold_sax.log 2>&1
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config configs/crunet_real_finetune.yaml \
    --init runs/width24_fold_sax/last.pt --out runs/width24_fold_sax_ft seed=0 "data.real.val_series=[subj1_sax_EC]" \
    model.kwargs.chans=24 epochs=2 --time-budget 35 > runs/width24_fold_sax_ft.log 2>&1
S=../shared/data/real_cine/subj1_sax_EC.npz
b() { OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_anatomy.py --checkpoint "$1" --series $S \
        --masks R8 R10 "R8 time-varying" --threads 1 --out "$2" > "$2.log" 2>&1; }
b runs/width24_fold_sax_ft/last.pt runs/width_bench_24
b docs/crunet_real_training/ema_fold_sax/armB.pt runs/width_bench_16
