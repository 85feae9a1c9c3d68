#!/usr/bin/env bash
# A short device check (about 3 minutes) for when little lease time is left: the CUDA-only tests,
# then the distillation step at the original's scale at mask 0.75 with fused AdamW, with the
# skeleton heatmaps drawn in the step, and compiled. `bash bench/gpu.sh` is the full set.
source "$(dirname "$0")/gpu_env.sh"
log "CUDA tests"
timeout -k 5 60 python3 -m pytest -q -p no:cacheprovider tests/test_train_loop.py tests/test_objectives.py \
  tests/test_data_heatmaps.py 2>&1 | tail -n 15 | tee "$OUT/tests_cuda.txt"
: > "$OUT/train_step_quick.txt"
log "train_step fused, heatmaps as tensors vs drawn in the step"
train_step 50 train_step_quick.txt --ratios 0.75
train_step 50 train_step_quick.txt --ratios 0.75 --heatmaps keypoints
log "train_step compiled, fused"
train_step 110 train_step_quick.txt --ratios 0.75 --compile --rounds 2
log "done"
