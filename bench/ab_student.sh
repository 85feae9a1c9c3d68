#!/bin/bash
# Side-by-side timing of one demo student step in two checkouts (e.g. before/after a loop change):
#   bash bench/ab_student.sh OLD_CHECKOUT NEW_CHECKOUT [ROUNDS] [EPOCHS]
# Each checkout needs the demo's data and teachers in its .cache (run gin/demo.gin there once).
# The two run alternately, ROUNDS times; prints wall seconds and the last epoch's loss (equal
# losses mean the change moved no number).
set -euo pipefail
old=$(realpath "$1"); new=$(realpath "$2"); rounds=${3:-2}; epochs=${4:-30}
export WANDB_MODE=offline WANDB_X_DISABLE_STATS=true
for round in $(seq "$rounds"); do
  for side in old new; do
    dir=$old; [ "$side" = new ] && dir=$new
    log=$(mktemp)
    start=$(date +%s.%N)
    # the demo's student_flow step (gin/demo.gin)
    (cd "$dir" && python run.py --gin_file gin/demo/student.gin \
        --gin_param "distill.modalities=('flow',)" --gin_param 'distill.teacher_checkpoints=[%FLOW_TEACHER]' \
        --gin_param 'distill.student_init=%RGB_TEACHER' --gin_param "student/pretrained.prefix='encoder.'" \
        --gin_param "train.epochs=$epochs" --gin_param "experiment.name='ab_$side'" > "$log" 2>&1)
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    echo "round $round $side ${seconds}s $(grep -o 'epoch_loss [0-9.]*' "$log" | tail -1)"
    rm -f "$log"
  done
done
