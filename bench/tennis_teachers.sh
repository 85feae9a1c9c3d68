#!/bin/bash
# Issue 26 item 5: tennis teachers on their own modality against an untrained encoder of the same
# architecture and modality, same episodes (bench/results/tennis_teachers.md).
#   bash bench/tennis_teachers.sh val    every try of gin/tennis_strokes/teacher_tries.gin, each
#                                         trained (kept under .cache/tennis_strokes_models/
#                                         teacher_tries/<try>/, skipped when kept) and evaluated on
#                                         val.json (clips 1-20); prints one table row per try
#   bash bench/tennis_teachers.sh test   the chosen try of each modality (CHOSEN below), once, on
#                                         test.json (clips 21-40)
#   bash bench/tennis_teachers.sh table  the table again from the run directories under output/
# Needs the prepared tennis strokes data in .cache/tennis_strokes (README, "Real data: tennis
# strokes"). On the shared 2-core CPU machine: a flow try 5-12 min, a skeleton try 19-29 min.
set -euo pipefail
cd "$(dirname "$0")/.."
export WANDB_MODE=offline WANDB_X_DISABLE_STATS=true
PYTHON=${PYTHON:-python}
TRIES=.cache/tennis_strokes_models/teacher_tries
# The try kept per modality (bench/results/tennis_teachers.md says why), evaluated on test.json once.
CHOSEN_FLOW=${CHOSEN_FLOW:-flow_e120_lr4}
CHOSEN_SKELETON=${CHOSEN_SKELETON:-}  # none: no skeleton try beat the untrained encoder on val

table() {  # one row per evaluate run directory of this bench: try, model, 1-shot, 5-shot
  "$PYTHON" - "$@" <<'PY'
import json, sys
from pathlib import Path
runs = sorted(Path("output").glob("*/*_teacher_tries_eval_*")) + sorted(Path("output").glob("*/*_tennis_teachers_test"))
print("| run | clips | model | 5-way 1-shot | 5-way 5-shot |\n| --- | --- | --- | --- | --- |")
for run in runs:
    summary, config = run / "summary.json", (run / "operative_config.gin")
    if not summary.is_file():
        continue
    s = json.loads(summary.read_text())
    clips = "val" if "val.json" in config.read_text() else "TEST"
    names = sorted({k.split("/")[1] for k in s if k.startswith("evaluated/")})
    for name in names:
        cells = [f"{s[f'{name}/fewshot/5way_{k}shot/acc']:.1f} +/- {s[f'{name}/fewshot/5way_{k}shot/ci95']:.1f}" for k in (1, 5)]
        print(f"| {run.name} | {clips} | {name} | {cells[0]} | {cells[1]} |")
# Stage-1 runs: wall seconds (command.txt's start to the last checkpoint) and the last epoch's
# training accuracy on serve vs smash.
import datetime, re
print("\n| stage-1 run | steps | wall s | last epoch source acc |\n| --- | --- | --- | --- |")
for run in sorted(Path("output").glob("*/*_teacher_tries_*")):
    ckpt = run / "checkpoints" / "last.ckpt"
    if "_eval_" in run.name or not ckpt.is_file():
        continue
    start = datetime.datetime.fromisoformat((run / "command.txt").read_text().split("\n")[0][2:])
    seconds = ckpt.stat().st_mtime - start.timestamp()
    log = (run / "console.log").read_text()
    steps = re.findall(r"step (\d+): epoch_loss", log)
    acc = re.findall(r"epoch_metric_source_acc ([0-9.]+)", log)
    print(f"| {run.name} | {steps[-1] if steps else '?'} | {seconds:.0f} | {acc[-1] if acc else '?'} |")
PY
}

case "${1:-val}" in
  val)
    # Try 5's source, the demo world of gin/tennis_strokes/synthetic_source.gin (written once).
    [ -f .cache/tennis_synthetic_source/fewshot.json ] || "$PYTHON" -m mmdistill.demo \
        .cache/tennis_synthetic_source --world single --num-classes 14 --val-classes 0 \
        --clips-per-class 20 --unlabeled-clips 0 --num-frames 32 --size 112 192
    "$PYTHON" run.py --gin_file gin/tennis_strokes/teacher_tries.gin
    table ;;
  test)
    baselines=() modalities=() untrained=()
    for pair in "flow:$CHOSEN_FLOW" "skeleton:$CHOSEN_SKELETON"; do
      modality=${pair%%:*} try=${pair#*:}
      [ -n "$try" ] || continue
      baselines+=("'teacher_$modality': '$TRIES/$try/teacher_$modality.ckpt'")
      modalities+=("'teacher_$modality': '$modality'")
      untrained+=("'$modality'")
    done
    join() { local IFS=,; echo "$*"; }
    "$PYTHON" run.py --gin_file gin/tennis_strokes/teacher_eval.gin \
      --gin_param "experiment.name = 'tennis_teachers_test'" \
      --gin_param "evaluate.baselines = {$(join "${baselines[@]}")}" \
      --gin_param "evaluate.modalities = {$(join "${modalities[@]}")}" \
      --gin_param "evaluate.untrained_modalities = ($(join "${untrained[@]}"),)"
    table ;;
  table) table ;;
  *) echo "usage: bash bench/tennis_teachers.sh val|test|table" >&2; exit 2 ;;
esac
