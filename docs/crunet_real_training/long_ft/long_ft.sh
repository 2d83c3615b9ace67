#!/usr/bin/env bash
# Longer fine-tuning (rule.txt beside this file): F2 on the human-SAX fold from F.pt, S2 from the
# shipped weights, side by side on one thread each, then the benchmarks of the rule.
set -euo pipefail
cd "$(dirname "$0")/../../.."
cfg=configs/crunet_real_finetune_long.yaml
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config $cfg --init docs/crunet_real_training/random_kt/F.pt \
    --out runs/long_ft_F2 seed=3 "data.real.val_series=[subj1_sax_EC]" > runs/long_ft_F2.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config $cfg --init src/cinerecon/assets/crunet_real.pt \
    --out runs/long_ft_S2 seed=3 model.kwargs.initial_image=lplus_s_kt > runs/long_ft_S2.log 2>&1 &
wait
