#!/bin/bash
# The whole demo from fresh clones of two revisions, run alternately (so both see the same host):
#   bash bench/demo_ab.sh OLD_REV NEW_REV [ROUNDS]
# Each run clones the revision into a new temporary folder (no .cache: the world, the clip cache,
# every teacher and student are made, as after the README's install) and runs
# `python run.py --gin_file gin/demo.gin` with the active Python. Prints the wall time and the
# pipeline's seconds per step of each run. Run it on a quiet machine; a round takes ~8 minutes.
set -euo pipefail
repo=$(git rev-parse --show-toplevel); old=$1; new=$2; rounds=${3:-1}
export WANDB_MODE=offline WANDB_X_DISABLE_STATS=true
for round in $(seq "$rounds"); do
  for rev in "$old" "$new"; do
    dir=$(mktemp -d); log=$(mktemp)
    git clone -q "$repo" "$dir/demo" && git -C "$dir/demo" checkout -q "$rev"
    start=$(date +%s.%N)
    if ! (cd "$dir/demo" && python run.py --gin_file gin/demo.gin > "$log" 2>&1); then
      echo "round $round $rev: the demo failed; its output: $log, its folder: $dir" >&2
      exit 1
    fi
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    echo "round $round $rev: ${seconds}s; $(grep -o 'seconds per step: .*' "$log")"
    rm -rf "$dir" "$log"
  done
done
