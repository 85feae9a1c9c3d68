#!/bin/bash
# Tennis strokes setting (b) with another training seed, and every model of a seed on the two
# disjoint test slices (issue 26 item 4; results: bench/results/tennis_seeds.md):
#   bash bench/tennis_seeds.sh SEED check      # parse every step with this seed's bindings, print
#                                              # what each step reads and writes; trains nothing
#   bash bench/tennis_seeds.sh SEED pipeline   # python run.py --gin_file gin/tennis_strokes.gin
#                                              # with experiment.seed=SEED, models in MODELS
#   bash bench/tennis_seeds.sh SEED slices     # the evaluate step of every model of SEED on each
#                                              # slice list (gin/tennis_strokes/evaluate_slice.gin)
#   bash bench/tennis_seeds.sh SEED all        # pipeline, then slices
# MODELS: seed 0 is the README's run (.cache/tennis_strokes_models/real_source/); seed N > 0 keeps
# its models in .cache/tennis_strokes_models/real_source_seedN/ (every model macro of
# gin/tennis_strokes/common.gin is rebound, so no step reads or writes seed 0's models).
# Needs the prepared data and lists (README, "Real data: tennis strokes") and the slice lists:
#   python -m mmdistill.prepare source-split --videos ../shared/data/tennis_strokes \
#       --out .cache/tennis_strokes/source_split --source-classes serve,smash --target-clips 1-20 \
#       --test-slices 21-30,31-40
# Each run prints its run directory; each step's numbers are in that directory's summary.json.
set -euo pipefail
if [ $# -ne 2 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
  echo "usage: bash bench/tennis_seeds.sh SEED check|pipeline|slices|all  (SEED: 0, 1, 2 ...)" >&2
  exit 2
fi
seed=$1; what=$2
PYTHON=${PYTHON:-.venv/bin/python}
SPLIT=${SPLIT:-.cache/tennis_strokes/source_split}
SLICES=${SLICES:-"21-30 31-40"}
export WANDB_MODE=${WANDB_MODE:-offline} WANDB_X_DISABLE_STATS=${WANDB_X_DISABLE_STATS:-true}

models=.cache/tennis_strokes_models/real_source
[ "$seed" -ne 0 ] && models=${models}_seed$seed
# macro -> file name, as in gin/tennis_strokes/common.gin
declare -A FILES=(
  [RGB_TEACHER]=teacher_rgb.ckpt [FLOW_TEACHER]=teacher_flow.ckpt
  [SKELETON_TEACHER]=teacher_skeleton.ckpt [STUDENT_ALL]=student_all.ckpt
  [STUDENT_RGB_ONLY]=student_rgb_only.ckpt [STUDENT_FLOW_ONLY]=student_flow_only.ckpt
  [STUDENT_SKELETON_ONLY]=student_skeleton_only.ckpt
  [STUDENT_CONTROL]=student_untrained_teachers.ckpt)
params=(--gin_param "experiment.seed=$seed")
for macro in "${!FILES[@]}"; do
  params+=(--gin_param "$macro='$models/${FILES[$macro]}'")
done

check() {
  # Every step of the pipeline parsed as run.py parses it, with this seed's bindings: its seed and
  # every model path it reads or keeps must be this seed's.
  "$PYTHON" - "$seed" "$models" "${params[@]}" <<'EOF'
import sys
import gin
from mmdistill.commands.configurables import import_configurables
from mmdistill.config import flatten_config, parse_config
from mmdistill.pipeline import pipeline_settings, step_command

seed, models, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
bindings = args[1::2]
import_configurables()
parse_config(["gin/tennis_strokes.gin"], bindings)
settings = pipeline_settings()
wrong, seen = [], None
for step, output in settings["outputs"].items():
    print(f"keeps {step} as {output}")
    if not output.startswith(models + "/"):
        wrong.append(f"pipeline.outputs[{step}] = {output}")
for step, (files, step_bindings) in settings["steps"].items():
    gin.clear_config()
    parse_config(files, [*step_bindings, *bindings])
    flat = flatten_config(gin.config_str())
    paths = {k: v for k, v in flat.items() if isinstance(v, str) and "tennis_strokes_models" in v}
    print(f"{step} (experiment.seed = {gin.query_parameter('experiment.seed')}): "
          f"{step_command(files, step_bindings)}")
    if paths != seen:
        print("  with " + "; ".join(f"{k} = {v}" for k, v in sorted(paths.items())))
        seen = paths
    if gin.query_parameter("experiment.seed") != seed:
        wrong.append(f"{step}: experiment.seed")
    wrong += [f"{step}: {k} = {v}" for k, v in paths.items() if not v.startswith(models + "/")]
if wrong:
    sys.exit("check: not this seed's: " + "; ".join(wrong))
print(f"check: every step runs with seed {seed} and reads and keeps models in {models}/ only")
EOF
}

pipeline() {
  check
  "$PYTHON" run.py --gin_file gin/tennis_strokes.gin "${params[@]}"
}

slices() {
  for slice in $SLICES; do
    list=$SPLIT/test_$slice.json
    if [ ! -f "$list" ]; then
      echo "bench/tennis_seeds.sh: $list not found; write the slice lists with prepare" \
           "source-split --test-slices (see the top of this script)" >&2
      exit 1
    fi
    "$PYTHON" run.py --gin_file gin/tennis_strokes/evaluate_slice.gin "${params[@]}" \
      --gin_param "EVAL_CLIPS='$list'" \
      --gin_param "experiment.name='tennis_strokes_seed${seed}_slice$slice'"
  done
}

case $what in
  check) check ;;
  pipeline) pipeline ;;
  slices) slices ;;
  all) pipeline; slices ;;
  *) echo "bench/tennis_seeds.sh: unknown action '$what'; use check, pipeline, slices or all" >&2
     exit 2 ;;
esac
