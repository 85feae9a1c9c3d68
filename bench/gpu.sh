#!/usr/bin/env bash
# The one script to run on a lent GPU machine (device tool): everything that needs CUDA, in one
# call, results under $OUT (or ./bench_out). About 8 minutes on an H100/H200; each part has its
# own time limit, most important first, so a slow part cannot cost the ones before it.
#   bash bench/gpu.sh
# Missing packages travel as wheels in .whl/: see bench/gpu_env.sh.
source "$(dirname "$0")/gpu_env.sh"

log "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 - <<'EOF'
import time, torch, timm, gin
print("torch", torch.__version__, "cuda", torch.version.cuda, "timm", timm.__version__)
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(10): a @ b
torch.cuda.synchronize()
print(f"bf16 8192^3 matmul: {10 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12:.0f} TFLOP/s")
EOF
} 2>&1 | tee "$OUT/gpu.txt"

# 1. Distillation step at the original's scale: ViT-B, 16x224x384, batch 4, three teachers, bf16.
: > "$OUT/train_step_gpu.txt"
log "train_step eager (fused AdamW, the default on CUDA)"
train_step 150 train_step_gpu.txt --json "$OUT/train_step_gpu.json"
log "train_step foreach AdamW (torch default)"
train_step 60 train_step_gpu.txt --ratios 0.75 --adamw foreach
log "train_step with the skeleton heatmaps drawn in the step (render_on='device')"
train_step 60 train_step_gpu.txt --ratios 0.75 --heatmaps keypoints
log "train_step compiled (fused AdamW)"
train_step 200 train_step_gpu.txt --ratios 0.75 --compile --rounds 2
log "train_step compiled with CUDA graphs (reduce-overhead)"
train_step 120 train_step_gpu.txt --ratios 0.75 --compile-mode reduce-overhead --rounds 2

# 2. The loader on a server CPU: workers 0 and 8, heatmaps in the loader vs drawn on the GPU
#    (synthetic frames there: ../shared does not travel).
log "data loader"
timeout -k 5 150 python3 bench/data.py --workers 0 8 2>&1 | tee "$OUT/data_gpu_machine.txt"

# 3. The whole pipeline (data, three pretrainings, distillation, few-shot) on CUDA in bf16,
#    shortened to 2 epochs a step: checks the loop's GPU paths end to end, not a benchmark.
log "demo on cuda"
timeout -k 5 120 python3 run.py --gin_file gin/demo.gin --gin_param "experiment.device='cuda'" \
  --gin_param "experiment.precision='bf16'" --gin_param "experiment.threads=4" \
  --gin_param "data_loader.num_workers=4" --gin_param "train.epochs=2" \
  --gin_param "skeleton_heatmaps.render_on='device'" \
  --gin_param "wandb_run.mode='disabled'" 2>&1 | tail -n 60 | tee "$OUT/demo_cuda.txt"
log "done"
