#!/bin/bash
# Why the demo runs two lanes of one-threaded steps without loader workers: one demo step (the
# skeleton-only student, EPOCHS epochs) timed side by side, in one checkout that has the demo's
# data and teachers in .cache (run gin/demo.gin there once):
#   bash bench/demo_lanes.sh [EPOCHS]
# 1. alone with one loader worker (how a step runs by itself), 2. alone without one,
# 3. two at once without loader workers (the demo's two lanes), 4. two at once with one each.
# Prints wall seconds and CPU seconds per run and the last epoch's loss (equal everywhere: the
# loader's settings move no number). Run it on a quiet machine: the point is the wall time.
set -euo pipefail
epochs=${1:-10}
export WANDB_MODE=offline WANDB_X_DISABLE_STATS=true
step=(--gin_file gin/demo/student.gin --gin_param "distill.modalities=('skeleton',)"
      --gin_param 'distill.teacher_checkpoints=[%SKELETON_TEACHER]'
      --gin_param 'distill.student_init=%RGB_TEACHER' --gin_param "student/pretrained.prefix='encoder.'"
      --gin_param "train.epochs=$epochs")
run() {  # label, workers
  local log; log=$(mktemp)
  /usr/bin/time -f "$1 workers=$2: wall %e s, CPU %U + %S s" python run.py "${step[@]}" \
      --gin_param "data_loader.num_workers=$2" --gin_param "experiment.name='lanes_$2'" > "$log" 2>&1
  echo "$(tail -1 "$log") $(grep -o 'epoch_loss [0-9][0-9.]*' "$log" | tail -1)"
  rm -f "$log"
}
run alone 1
run alone 0
run "lane A" 0 & run "lane B" 0; wait
run "lane A" 1 & run "lane B" 1; wait
