#!/usr/bin/env bash
# A third pass with pseudo-radial masks in the mix (rule.txt beside this file, revised section):
# F3 on the human-SAX fold from long_ft/F2.pt, S3 from the shipped weights, one thread each.
set -euo pipefail
cd "$(dirname "$0")/../../.."
cfg=configs/crunet_real_finetune_radial.yaml
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config $cfg --init docs/crunet_real_training/long_ft/F2.pt \
    --out runs/third_ft_F3 seed=4 "data.real.val_series=[subj1_sax_EC]" > runs/third_ft_F3.log 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/cinerecon train ../shared/data --config $cfg --init src/cinerecon/assets/crunet_real.pt \
    --out runs/third_ft_S3 seed=4 model.kwargs.initial_image=lplus_s_kt > runs/third_ft_S3.log 2>&1 &
wait
