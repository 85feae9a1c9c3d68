#!/usr/bin/env bash
# One prepared GPU call (device tool, ~8 of its 10 minutes): a WHOLE distillation run (2 epochs,
# a checkpoint every epoch, loader included) on synthetic tennis-sized data (300 clips of
# 16x224x384 from 224x398 JPEG frames, float16 flow, 2-person skeletons; ViT-B student and three
# ViT-B teachers, batch 4, bf16) eager, compiled and with CUDA graphs
# (train.compile_mode='reduce-overhead'): clips/s, data-wait fraction, MFU and peak memory of each
# run, plus the step-only figures of bench/train_step.py in the same call. Results under $OUT.
#   bash bench/run_gpu.sh               # on the GPU machine
#   bash bench/run_gpu.sh --cpu-smoke   # the same parts on the CPU at a tiny size (~2 minutes)
source "$(dirname "$0")/gpu_env.sh"
WORK="${WORK:-/tmp/mmdistill_run_gpu}"; rm -rf "$WORK"; mkdir -p "$WORK"
if [[ "${1:-}" == "--cpu-smoke" ]]; then
  SIZE=(--device cpu --precision fp32 --size tiny --depth 2 --videos 4 --video_frames 16 --height 32
        --width 56 --frames 4 --crop_h 32 --crop_w 48 --batch 2 --workers 1 --threads 1)
  STEP=(--device cpu --precision fp32 --size tiny --depth 2 --frames 4 --height 32 --width 48
        --batch 2 --steps 2 --warmup 1 --rounds 1)
  MODES=("eager:")
  LIMIT=120
else
  SIZE=(--workers "$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))")
  STEP=(--preset gpu --rounds 2)
  MODES=("eager:" "compiled:train.compile=True"
         "cuda_graphs:train.compile=True --gin_param train.compile_mode='reduce-overhead'")
  LIMIT=150
fi

log "synthetic data"
python3 bench/distill_run.py write --root "$WORK/data" --output "$WORK/output" "${SIZE[@]}" \
  2>&1 | tee "$OUT/run_gpu.txt" || exit 1

log "step only (bench/train_step.py), mask 0 and 0.75, eager"
timeout -k 5 "$LIMIT" python3 bench/train_step.py "${STEP[@]}" --json "$WORK/train_step.json" 2>&1 \
  | grep -v "^W1\|^I1" | tee -a "$OUT/run_gpu.txt"
# (step-only compiled / CUDA-graph figures: bench/gpu_compile.sh; not repeated here for time)

for mode in "${MODES[@]}"; do
  name="${mode%%:*}"; binding="${mode#*:}"
  log "whole run: $name"
  start=$(date +%s)
  # shellcheck disable=SC2086  # the binding holds a second --gin_param on purpose
  timeout -k 5 "$LIMIT" python3 run.py --gin_file "$WORK/data/distill.gin" \
    --gin_param "experiment.name='$name'" ${binding:+--gin_param $binding} 2>&1 | tail -n 8 \
    | tee -a "$OUT/run_gpu.txt"
  echo "$name: $(( $(date +%s) - start )) s wall (start-up and compiling included)" | tee -a "$OUT/run_gpu.txt"
done

log "report"
python3 bench/distill_run.py report --output "$WORK/output" --train_step_json "$WORK/train_step.json" \
  2>&1 | tee -a "$OUT/run_gpu.txt"
log "done"
