#!/usr/bin/env bash
# torch.compile modes for the distillation step at the original's scale, side by side in one call
# (about 3.5 minutes): eager, compiled (default mode), compiled with CUDA graphs
# (reduce-overhead), all with fused AdamW at mask 0.75. `bash bench/gpu.sh` is the full set.
source "$(dirname "$0")/gpu_env.sh"
run() { timeout -k 5 "$1" python3 bench/train_step.py --preset gpu --ratios 0.75 --rounds 2 "${@:2}" 2>&1 \
  | grep -v "^W1\|^I1" | tee -a "$OUT/train_step_compile.txt"; }
log "reduce-overhead"; run 110 --compile-mode reduce-overhead
log "eager"; run 35
log "compiled, default mode"; run 90 --compile
log "done"
