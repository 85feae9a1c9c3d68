"""Distillation step throughput: clips/s at mask ratio 0 and 0.75, and the loop's own overhead.

    python bench/train_step.py                 # CPU preset: tiny ViTs, 8x64x64 clips
    python bench/train_step.py --preset gpu    # the original's scale: ViT-B, 16x224x384, batch 4, bf16
    python bench/train_step.py --threads 1 --frames 16 --height 112 --width 112 --depth 4

With two mask ratios it prints both ratios of the second over the first, side by side: the FLOP
ratio (what masking could gain) and the measured step ratio (what it gains).

"Loop overhead" = time of one full TrainStep (forward, backward, grad-norm, optimizer step,
non-finite check) minus the time of forward + backward alone, on the same batch; both take it
freshly finished by the device stage (mmdistill.data.device_batches: heatmaps, mask indices), as
the training loop does for every batch.
Model FLOPs come from torch's FlopCounterMode on one forward+backward; MFU divides the achieved
FLOP rate by the accelerator's dense bf16 peak (given by --peak_tflops, default H100 SXM 989).
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

# The repo root, so `python bench/<script>.py` finds mmdistill from a fresh clone without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmdistill.data.device_batches import finish_batch, to_device  # noqa: E402
from mmdistill.data.heatmaps import HeatmapRenderer  # noqa: E402
from mmdistill.models.heads import StudentWithHeads, cmt_head  # noqa: E402
from mmdistill.models.vit import video_vit  # noqa: E402
from mmdistill.train.objectives import Distillation  # noqa: E402
from mmdistill.train.optim import build_optimizer  # noqa: E402
from mmdistill.train.step import TrainStep  # noqa: E402

PRESETS = {
    "cpu": dict(size="tiny", depth=2, frames=8, height=64, width=64, batch=4, precision="fp32",
                device="cpu", steps=10, warmup=2),
    "gpu": dict(size="base", depth=None, frames=16, height=224, width=384, batch=4,
                precision="bf16", device="cuda", steps=20, warmup=5),
}
CHANNELS = {"rgb": 3, "flow": 2, "skeleton": 17}


def build(args, device):
    vit = dict(size=args.size, num_frames=args.frames, img_size=(args.height, args.width))
    if args.depth:
        vit["depth"] = args.depth
    teachers = {m: video_vit(in_chans=c, **vit) for m, c in CHANNELS.items()}
    student = copy.deepcopy(teachers["rgb"])
    heads = {m: cmt_head(student.embed_dim, t.embed_dim) for m, t in teachers.items()}
    return Distillation(StudentWithHeads(student, heads), teachers).to(device)


def make_batch(objective, args, ratio, device):
    """A collated batch as the loader ships it (bool tube mask, maybe keypoints), already on the
    device, so finishing it costs what the device stage costs after its copy."""
    grid = objective.trainable.student.grid_size
    spatial = grid[1] * grid[2]
    batch = {m: torch.randn(args.batch, c, args.frames, args.height, args.width)
             for m, c in CHANNELS.items()}
    if args.heatmaps == "keypoints":  # two persons' joints, drawn on the device (render_on='device')
        del batch["skeleton"]
        keypoints = torch.rand(args.batch, 2, args.frames, CHANNELS["skeleton"], 3)
        batch["skeleton_keypoints"] = keypoints * torch.tensor([args.width - 1, args.height - 1, 1.0])
    masked = int(round(ratio * spatial))
    rows = []
    for _ in range(args.batch):
        mask = torch.zeros(spatial, dtype=torch.bool)
        mask[torch.randperm(spatial)[:masked]] = True
        rows.append(mask.repeat(grid[0]))
    batch["mask"] = torch.stack(rows)
    return to_device(batch, device)


def heatmap_drawer(args):
    """What the skeleton spec's finish does for render_on='device' (the default normalisation)."""
    renderer = HeatmapRenderer(sigma=2.0)

    def draw(batch):
        batch["skeleton"] = renderer.render_batch(batch.pop("skeleton_keypoints"), (args.height, args.width))
        return batch
    return draw


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, steps, warmup, device):
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def measure(args, ratio, device, amp_dtype):
    torch.manual_seed(0)
    objective = build(args, device)
    shipped = make_batch(objective, args, ratio, device)
    draw = heatmap_drawer(args)

    def finished():
        return finish_batch(shipped, device, draw)
    optimizer = build_optimizer(objective.trainable_modules(), lr=1e-4,
                                fused={"auto": None, "fused": True, "foreach": False}[args.adamw])
    step = TrainStep(objective, optimizer, device=device, amp_dtype=amp_dtype, clip_grad=1.0,
                     compile=args.compile or bool(args.compile_mode), compile_mode=args.compile_mode)
    # Forward+backward alone goes through the same finishing and (possibly compiled) forward.
    forward = step.forward

    def forward_backward():
        batch = finished()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = forward(batch)["loss"]
        loss.backward()
        objective.trainable.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:  # counted eagerly: same FLOPs, compiled or not
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = objective(finished())["loss"]
        loss.backward()
        objective.trainable.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    compile_s = None
    if args.compile or args.compile_mode:  # the first calls compile; timed apart from the rounds
        start = time.perf_counter()
        step([finished()])
        forward_backward()
        sync(device)
        compile_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # Interleave the two measurements over rounds and keep medians, so background load on a
    # shared machine hits both alike.
    step_times, fb_times = [], []
    for _ in range(args.rounds):
        step_times.append(timed(lambda: step([finished()]), args.steps, args.warmup, device))
        fb_times.append(timed(forward_backward, args.steps, args.warmup, device))
    step_s, fb_s = statistics.median(step_times), statistics.median(fb_times)
    peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    result = {"mask_ratio": ratio, "clips_per_s": args.batch / step_s, "step_ms": 1e3 * step_s,
              "fwd_bwd_ms": 1e3 * fb_s, "loop_overhead_ms": 1e3 * (step_s - fb_s),
              "loop_overhead_pct": 100 * (step_s - fb_s) / step_s, "gflops_per_step": flops / 1e9,
              "peak_mem_gib": peak_mem, "compile_s": compile_s}
    if device.type == "cuda":
        result["mfu_pct"] = 100 * flops / step_s / (args.peak_tflops * 1e12)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    for key in ("size", "depth", "frames", "height", "width", "batch", "precision", "device",
                "steps", "warmup"):
        parser.add_argument(f"--{key}", default=None)
    parser.add_argument("--ratios", default="0,0.75")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is least disturbed by other load)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the objective forward")
    parser.add_argument("--compile-mode", dest="compile_mode", default=None,
                        help="torch.compile mode, e.g. reduce-overhead (CUDA graphs); implies --compile")
    parser.add_argument("--adamw", choices=["auto", "fused", "foreach"], default="auto",
                        help="AdamW kernel: auto = the training loop's default (fused on CUDA); "
                             "foreach = torch's own default")
    parser.add_argument("--heatmaps", choices=["tensor", "keypoints"], default="tensor",
                        help="skeleton input as ready heatmaps, or as keypoints drawn on the "
                             "device before each step (skeleton_heatmaps.render_on='device')")
    parser.add_argument("--peak_tflops", type=float, default=989.0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("depth", "frames", "height", "width", "batch", "steps", "warmup"):
        value = getattr(args, key)
        setattr(args, key, int(value) if value is not None else None)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {name}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"ViT-{args.size} depth {args.depth or 'default'}, {args.frames}x{args.height}x{args.width}, "
          f"batch {args.batch}, {args.precision}, 3 teachers, AdamW {args.adamw}"
          f"{', compiled' if args.compile or args.compile_mode else ''}"
          f"{f' ({args.compile_mode})' if args.compile_mode else ''}, skeleton as {args.heatmaps}")
    results = [measure(args, float(r), device, amp_dtype) for r in args.ratios.split(",")]
    for r in results:
        line = (f"mask {r['mask_ratio']:.2f}: {r['clips_per_s']:.2f} clips/s, step {r['step_ms']:.1f} ms, "
                f"fwd+bwd {r['fwd_bwd_ms']:.1f} ms, loop overhead {r['loop_overhead_ms']:.1f} ms "
                f"({r['loop_overhead_pct']:.1f}%), {r['gflops_per_step']:.1f} GFLOP/step")
        if r.get("peak_mem_gib") is not None:
            line += f", peak {r['peak_mem_gib']:.2f} GiB, MFU {r['mfu_pct']:.1f}%"
        if r.get("compile_s") is not None:
            line += f", compile {r['compile_s']:.0f} s"
        print(line)
    if len(results) == 2:
        first, second = results
        print(f"mask {second['mask_ratio']} over {first['mask_ratio']}: FLOP ratio "
              f"{first['gflops_per_step'] / second['gflops_per_step']:.2f}x, step ratio "
              f"{second['clips_per_s'] / first['clips_per_s']:.2f}x (fwd+bwd "
              f"{first['fwd_bwd_ms'] / second['fwd_bwd_ms']:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
