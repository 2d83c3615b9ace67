#!/usr/bin/env bash
# k-t random fine-tuning (rule.txt beside this file): F on the human-SAX fold, S from the shipped
# weights, side by side on one thread each, then the benchmarks of the rule.
set -euo pipefail
cd "$(dirname "$0")/../../.."
cfg=configs/crunet_real_finetune_random.yaml
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config $cfg --init docs/crunet_real_training/ema_fold_sax/armB.pt \
    --out runs/random_kt_F seed=0 "data.real.val_series=[subj1_sax_EC]" > runs/random_kt_F.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config $cfg --init src/cinerecon/assets/crunet_real.pt \
    --out runs/random_kt_S seed=0 > runs/random_kt_S.log 2>&1 &
wait
sax=../shared/data/real_cine/subj1_sax_EC.npz
for who in F:runs/random_kt_F/last.pt armB:docs/crunet_real_training/ema_fold_sax/armB.pt; do
  n=${who%%:*}; ck=${who#*:}
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shipped_robustness.py --checkpoint $ck --series $sax --threads 1 \
      --out runs/random_kt_robust_$n > runs/random_kt_robust_$n.log 2>&1 &
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_anatomy.py --checkpoint $ck --series $sax --threads 1 \
      --masks R8 R10 "R8 k-t random" --out runs/random_kt_ra_$n > runs/random_kt_ra_$n.log 2>&1 &
  wait
done
for who in S:runs/random_kt_S/last.pt shipped:src/cinerecon/assets/crunet_real.pt; do
  n=${who%%:*}; ck=${who#*:}
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shipped_robustness.py --checkpoint $ck --threads 1 \
      --out runs/random_kt_robust_$n > runs/random_kt_robust_$n.log 2>&1 &
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_anatomy.py --checkpoint $ck --threads 1 \
      --out runs/random_kt_ra_$n > runs/random_kt_ra_$n.log 2>&1 &
  wait
done
