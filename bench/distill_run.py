"""A whole distillation run (`python run.py`) on synthetic tennis-sized data, timed: the Python
parts of bench/run_gpu.sh.

    python bench/distill_run.py write --root DIR [--videos 75] [--height 224 --width 398] ...
        synthetic frames (JPEG), flow (.npy) and skeletons of 40 frames per video, 4 clips each,
        plus DIR/unlabeled.json and DIR/distill.gin (random teachers, 2 epochs, a checkpoint
        every epoch, heatmaps drawn on the device, W&B off)
    python bench/distill_run.py report --output DIR [--train_step_json FILE] [--peak_tflops 989]
        one line per run under DIR: clips/s over the whole run, data-wait fraction, peak GPU
        memory, MFU (FLOPs per clip from bench/train_step.py's count at the same size)
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

# The repo root, so `python bench/<script>.py` finds mmdistill from a fresh clone without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GIN = """# Written by bench/distill_run.py: a whole distillation run on synthetic data (random teachers).
include 'gin/base/distill_recipe.gin'
experiment.task = 'distill'
experiment.test = False
experiment.device = '{device}'
experiment.precision = '{precision}'
experiment.output_root = '{output}'
experiment.threads = {threads}
wandb_run.mode = 'disabled'
distill.allow_random_teachers = True
distill.teacher_checkpoints = None
video_vit.size = '{size}'
video_vit.depth = {depth}
video_vit.num_frames = {frames}
video_vit.img_size = ({crop_h}, {crop_w})
clip_data.root = '{root}'
unlabeled/clip_data.annotations = '{root}/unlabeled.json'
temporal_sampling.num_frames = {frames}
temporal_sampling.sampling_rate = 2
spatial_transform.short_side = {height}
spatial_transform.crop_size = ({crop_h}, {crop_w})
skeleton_heatmaps.render_on = 'device'
data_loader.batch_size = {batch}
data_loader.num_workers = {workers}
train.epochs = 2
train.warmup_epochs = 1
train.log_every = 5
train.save_ckpt_freq = 1
"""


def write_data(args) -> None:
    """Frames, flow and skeletons of `args.videos` videos; 4 clips per video (starts 0, 3, 6, 9)."""
    import pickle

    import cv2
    import numpy as np

    root = Path(args.root)
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, size=(args.video_frames, 8, 14, 3)).astype(np.uint8)
    frames = np.stack([cv2.resize(f, (args.width, args.height), interpolation=cv2.INTER_CUBIC) for f in coarse])
    flow = rng.normal(0, 2, size=(2, args.height, args.width)).astype(np.float16)
    entries = []
    for index in range(args.videos):
        video = f"rally{index}"
        (root / "frames" / video).mkdir(parents=True, exist_ok=True)
        (root / "flows" / video).mkdir(parents=True, exist_ok=True)
        (root / "skeletons").mkdir(exist_ok=True)
        shift = index % args.video_frames  # videos differ, so a cache or page cache cannot share them
        for frame in range(args.video_frames):
            image = cv2.cvtColor(frames[(frame + shift) % args.video_frames], cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(root / "frames" / video / f"{frame + 1:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        for pair in range(args.video_frames - 1):
            np.save(root / "flows" / video / f"pair_{pair + 1:05d}.npy", flow)
        xy = rng.uniform([0, 0], [args.width - 1, args.height - 1], size=(2, args.video_frames, 17, 2))
        score = rng.uniform(0.3, 1, size=(2, args.video_frames, 17))
        with open(root / "skeletons" / f"{video}.pkl", "wb") as handle:
            pickle.dump({"keypoint": xy.astype(np.float32), "keypoint_score": score.astype(np.float32),
                         "img_shape": (args.height, args.width), "total_frames": args.video_frames}, handle)
        entries += [{"video": video, "start": start} for start in (0, 3, 6, 9)]
    (root / "unlabeled.json").write_text(json.dumps(entries))
    (root / "distill.gin").write_text(GIN.format(root=root.resolve(), output=Path(args.output).resolve(),
                                                 **{k: v for k, v in vars(args).items() if k not in ("root", "output")}))
    print(f"wrote {args.videos} videos ({len(entries)} clips of {args.frames}x{args.crop_h}x{args.crop_w}) "
          f"under {root}; gin: {root / 'distill.gin'}")


def report(args) -> None:
    flops_per_clip = None
    if args.train_step_json and Path(args.train_step_json).is_file():
        measured = json.loads(Path(args.train_step_json).read_text())
        masked = [r for r in measured["results"] if r["mask_ratio"] > 0] or measured["results"]
        flops_per_clip = masked[0]["gflops_per_step"] * 1e9 / measured["args"]["batch"]
    for config in sorted(Path(args.output).glob("**/operative_config.gin")):
        run_dir = config.parent
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            print(f"{run_dir.name}: no last.ckpt, the run did not finish")
            continue
        batch = int(re.search(r"data_loader.batch_size = (\d+)", config.read_text()).group(1))
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        windows = [r for r in records if "train/data_wait" in r]
        steps = max(r["step"] for r in records)
        # From the run's start (command.txt) to its last checkpoint: model building, every step,
        # every checkpoint and, when compiled, the compiling; the second epoch alone: from the
        # first epoch's checkpoint to the last (its steps and its checkpoint, compiled already).
        seconds = last.stat().st_mtime - (run_dir / "command.txt").stat().st_mtime
        first = min((run_dir / "checkpoints").glob("epoch=00*.ckpt"), key=lambda p: p.stat().st_mtime)
        second_epoch = last.stat().st_mtime - first.stat().st_mtime
        rate = steps * batch / seconds
        second_rate = steps / 2 * batch / second_epoch
        steady = statistics.median(r["train/clips_per_s"] for r in windows[1:] or windows)
        wait = statistics.mean(r["train/data_wait"] for r in windows[1:] or windows)
        memory = max((r.get("train/gpu_mem_gib", 0.0) for r in windows), default=0.0)
        line = (f"{run_dir.name}: {rate:.1f} clips/s over the whole run ({seconds:.1f} s, {steps} steps of {batch}, "
                f"set-up, checkpoints and compiling included), {second_rate:.1f} clips/s over epoch 2 with its "
                f"checkpoint, {steady:.1f} clips/s in steady log windows, data wait "
                f"{100 * wait:.0f}% (windows after the first), peak memory {memory:.2f} GiB")
        if flops_per_clip is not None:
            mfu = 100 * flops_per_clip / (args.peak_tflops * 1e12)
            line += (f", MFU {mfu * rate:.1f}% whole run / {mfu * second_rate:.1f}% epoch 2 / {mfu * steady:.1f}% "
                     f"steady ({args.peak_tflops:.0f} TFLOP/s)")
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    w = commands.add_parser("write", help="synthetic data and the run's gin file")
    w.add_argument("--root", required=True)
    w.add_argument("--output", required=True, help="experiment.output_root of the runs")
    w.add_argument("--videos", type=int, default=75)
    w.add_argument("--video_frames", type=int, default=40)
    w.add_argument("--height", type=int, default=224)
    w.add_argument("--width", type=int, default=398)
    w.add_argument("--frames", type=int, default=16)
    w.add_argument("--crop_h", type=int, default=224)
    w.add_argument("--crop_w", type=int, default=384)
    w.add_argument("--size", default="base")
    w.add_argument("--depth", type=int, default=12)
    w.add_argument("--batch", type=int, default=4)
    w.add_argument("--workers", type=int, default=12)
    w.add_argument("--threads", type=int, default=4)
    w.add_argument("--device", default="cuda")
    w.add_argument("--precision", default="bf16")
    r = commands.add_parser("report", help="clips/s, data wait, memory and MFU of each run")
    r.add_argument("--output", required=True)
    r.add_argument("--train_step_json", default=None)
    r.add_argument("--peak_tflops", type=float, default=989.0)
    args = parser.parse_args()
    write_data(args) if args.command == "write" else report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
