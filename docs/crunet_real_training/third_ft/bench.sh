#!/usr/bin/env bash
# The benchmarks of rule.txt for F3 (unseen human SAX) and S3 (held-out rat series); the
# baselines F2 and S2 are the files in ../long_ft/ (same benchmark code).
set -euo pipefail
cd "$(dirname "$0")/../../.."
sax=../shared/data/real_cine/subj1_sax_EC.npz
ck=runs/third_ft_F3/last.pt
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shipped_robustness.py --checkpoint $ck --series $sax --threads 1 \
    --out runs/third_ft_robust_F3 > runs/third_ft_robust_F3.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_anatomy.py --checkpoint $ck --series $sax --threads 1 \
    --masks R8 R10 "R8 k-t random" "R8 k-t radial" --out runs/third_ft_ra_F3 > runs/third_ft_ra_F3.log 2>&1 &
wait
ck=runs/third_ft_S3/last.pt
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shipped_robustness.py --checkpoint $ck --threads 1 \
    --out runs/third_ft_robust_S3 > runs/third_ft_robust_S3.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_anatomy.py --checkpoint $ck --threads 1 \
    --out runs/third_ft_ra_S3 > runs/third_ft_ra_S3.log 2>&1 &
wait
