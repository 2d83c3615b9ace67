#!/usr/bin/env bash
# The benchmarks of rule.txt for F2 (unseen human SAX) and S2 (held-out rat series).
set -euo pipefail
cd "$(dirname "$0")/../../.."
sax=../shared/data/real_cine/subj1_sax_EC.npz
ck=runs/long_ft_F2/last.pt
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shipped_robustness.py --checkpoint $ck --series $sax --threads 1 \
    --out runs/long_ft_robust_F2 > runs/long_ft_robust_F2.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_anatomy.py --checkpoint $ck --series $sax --threads 1 \
    --masks R8 R10 "R8 k-t random" --out runs/long_ft_ra_F2 > runs/long_ft_ra_F2.log 2>&1 &
wait
# the addendum's baselines for the two new field rows (and every row, on today's code)
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shipped_robustness.py --checkpoint docs/crunet_real_training/random_kt/F.pt \
    --series $sax --threads 1 --out runs/long_ft_robust_F > runs/long_ft_robust_F.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shipped_robustness.py --checkpoint src/cinerecon/assets/crunet_real.pt \
    --threads 1 --out runs/long_ft_robust_shipped > runs/long_ft_robust_shipped.log 2>&1 &
wait
ck=runs/long_ft_S2/last.pt
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shipped_robustness.py --checkpoint $ck --threads 1 \
    --out runs/long_ft_robust_S2 > runs/long_ft_robust_S2.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_anatomy.py --checkpoint $ck --threads 1 \
    --out runs/long_ft_ra_S2 > runs/long_ft_ra_S2.log 2>&1 &
wait
