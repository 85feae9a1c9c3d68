#!/usr/bin/env bash
# The one script to run on a lent GPU machine (device tool): everything that needs CUDA, in one
# call, results under $OUT (or ./bench_out). Budget: ~8 minutes on an H100.
#   bash bench/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench_out}"; mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1 WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
# Distillation step at the original's scale: ViT-B, 16x224x384, batch 4, three teachers, bf16.
timeout 300 python bench/train_step.py --preset gpu --json "$OUT/train_step_gpu.json" 2>&1 | tee "$OUT/train_step_gpu.txt"
# Few-shot: per-episode re-forward vs extract-once, on the GPU.
timeout 240 python bench/fewshot.py --device cuda --amp bf16 --size base --frames 16 --img 224 --mask-views 2 2>&1 | tee "$OUT/fewshot_gpu.txt"
