#!/usr/bin/env bash
# Seed spread of run F (rule.txt): the same fine-tuning of the SAX-fold model with seeds 1 and 2,
# side by side on one thread each, then shipped_robustness.py and real_anatomy.py (R8, R10, R8 k-t
# random) on the unseen human SAX series. Written 2026-12-01 ~17:12 UTC before the runs; evidence
# only: no shipping decision depends on it (the shipped weights were chosen by rule.txt).
set -euo pipefail
cd "$(dirname "$0")/../../.."
cfg=configs/crunet_real_finetune_random.yaml
sax=../shared/data/real_cine/subj1_sax_EC.npz
for s in 1 2; do
  OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config $cfg --init docs/crunet_real_training/ema_fold_sax/armB.pt \
      --out runs/random_kt_F_seed$s seed=$s "data.real.val_series=[subj1_sax_EC]" > runs/random_kt_F_seed$s.log 2>&1 &
done
wait
for s in 1 2; do
  ck=runs/random_kt_F_seed$s/last.pt
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shipped_robustness.py --checkpoint $ck --series $sax --threads 1 \
      --out runs/random_kt_robust_F_seed$s > runs/random_kt_robust_F_seed$s.log 2>&1 &
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_anatomy.py --checkpoint $ck --series $sax --threads 1 \
      --masks R8 R10 "R8 k-t random" --out runs/random_kt_ra_F_seed$s > runs/random_kt_ra_F_seed$s.log 2>&1 &
  wait
done
