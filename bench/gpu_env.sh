# Sourced by bench/gpu*.sh: repo root as cwd, $OUT, the carried wheels installed, `log`.
# Packages missing on the device machine travel as wheels in .whl/ (gin-config; timm pinned to ours):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 -d .whl gin-config==0.5.0 timm==1.0.31
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-bench_out}"; mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}." PYTHONUNBUFFERED=1 WANDB_X_DISABLE_STATS=true
log() { echo "== $* ($(date -u +%H:%M:%S))"; }
# train_step SECONDS FILE ARGS...: bench/train_step.py at the original's scale, appended to $OUT/FILE
# (torch's compile warnings filtered out).
train_step() {
  timeout -k 5 "$1" python3 bench/train_step.py --preset gpu "${@:3}" 2>&1 | grep -v "^W1\|^I1" \
    | tee -a "$OUT/$2"
}
