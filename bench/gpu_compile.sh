#!/usr/bin/env bash
# torch.compile modes for the distillation step at the original's scale, side by side in one call
# (about 3.5 minutes): eager, compiled (default mode), compiled with CUDA graphs
# (reduce-overhead), all with fused AdamW at mask 0.75. `bash bench/gpu.sh` is the full set.
source "$(dirname "$0")/gpu_env.sh"
: > "$OUT/train_step_compile.txt"
log "reduce-overhead"; train_step 110 train_step_compile.txt --ratios 0.75 --rounds 2 --compile-mode reduce-overhead
log "eager"; train_step 35 train_step_compile.txt --ratios 0.75 --rounds 2
log "compiled, default mode"; train_step 90 train_step_compile.txt --ratios 0.75 --rounds 2 --compile
log "done"
