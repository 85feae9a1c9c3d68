"""Data pipeline speed: clips/s of a tennis-sized clip with 0, 1 and 2 workers, where the time of
one clip goes, and the vectorised heatmap renderer against the original per-joint loop.

A tennis-sized clip: 16 frames (sampling rate 2) of 224x398 JPEG, float16 flow [2, 224, 398]
per frame pair and a 2-person 17-joint skeleton, cropped to 224x384 with a 75% tube mask.
The frames are real broadcast footage (../shared/data/tennis_strokes) when available, so JPEG
decoding costs what it costs on real data.

    python bench/data.py [--workers 0 1 2] [--videos 8] [--batch_size 4]
    python bench/data.py --only cache          # decoded-clip cache vs JPEG/npy, 2 workers
    python bench/data.py --only decode         # JPEG decoded in the loader vs on the device

The cache comparison reads the same tennis-sized clips (heatmaps drawn on the device, as the
tennis configs do) from the files and from `clip_data.cache_dir`, in interleaved rounds, and
checks that the RGB of both is bit-identical for the same seed.
"""
from __future__ import annotations

import argparse
import os
import pickle
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

# The repo root, so `python bench/<script>.py` finds mmdistill from a fresh clone without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmdistill.data.annotations import Clip  # noqa: E402
from mmdistill.data.dataset import build_clip_dataset, build_loader, set_epoch  # noqa: E402
from mmdistill.data.device_batches import finish_batch, heatmap_drawer  # noqa: E402
from mmdistill.data.heatmaps import render_heatmaps, render_heatmaps_per_joint  # noqa: E402
from mmdistill.data.masking import tube_mask  # noqa: E402

REAL_VIDEO = Path(__file__).resolve().parents[2] / "shared/data/tennis_strokes/serve/serve1.mp4"
HEIGHT, WIDTH, FRAMES_PER_VIDEO = 224, 398, 40


def source_frames(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    if REAL_VIDEO.is_file():
        import decord
        reader = decord.VideoReader(str(REAL_VIDEO))
        frames = reader.get_batch(list(range(min(num_frames, len(reader))))).asnumpy()
        frames = np.stack([cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA) for frame in frames])
        return frames[np.arange(num_frames) % len(frames)]
    coarse = rng.integers(0, 256, size=(num_frames, 8, 14, 3)).astype(np.uint8)
    return np.stack([cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC) for frame in coarse])


def write_tennis_sized(root: Path, num_videos: int, seed: int = 0) -> list[Clip]:
    rng = np.random.default_rng(seed)
    frames = source_frames(FRAMES_PER_VIDEO, rng)
    clips = []
    for video_index in range(num_videos):
        video = f"rally{video_index}"
        frame_dir = root / "frames" / video
        flow_dir = root / "flows" / video
        frame_dir.mkdir(parents=True)
        flow_dir.mkdir(parents=True)
        for index, frame in enumerate(frames):
            cv2.imwrite(str(frame_dir / f"{index + 1:06d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 90])
        for index in range(FRAMES_PER_VIDEO - 1):
            np.save(flow_dir / f"pair_{index + 1:05d}.npy",
                    rng.normal(0, 2, size=(2, HEIGHT, WIDTH)).astype(np.float16))
        xy = rng.uniform([0, 0], [WIDTH - 1, HEIGHT - 1], size=(2, FRAMES_PER_VIDEO, 17, 2)).astype(np.float32)
        score = rng.uniform(0.3, 1, size=(2, FRAMES_PER_VIDEO, 17)).astype(np.float32)
        (root / "skeletons").mkdir(exist_ok=True)
        with open(root / "skeletons" / f"{video}.pkl", "wb") as handle:
            pickle.dump({"keypoint": xy, "keypoint_score": score, "img_shape": (HEIGHT, WIDTH),
                         "total_frames": FRAMES_PER_VIDEO}, handle)
        clips += [Clip(video, start=start) for start in (0, 3, 6, 9)]
    return clips


def make_dataset(root: Path, clips: list[Clip], modalities=("rgb", "flow", "skeleton"), mode: str = "train",
                 render_on: str = "loader", cache_dir: Path | None = None, decode_on: str = "loader"):
    import gin
    gin.clear_config()
    gin.parse_config(["temporal_sampling.num_frames = 16", "temporal_sampling.sampling_rate = 2",
                      "spatial_transform.short_side = 224", "spatial_transform.crop_size = (224, 384)",
                      f"skeleton_heatmaps.render_on = '{render_on}'", f"rgb_frames.decode_on = '{decode_on}'"])
    mask = tube_mask(ratio=0.75) if mode == "train" else None
    return build_clip_dataset(clips, root=root, modalities=list(modalities), mode=mode, mask=mask,
                              cache_dir=cache_dir)


def loader_speed(dataset, workers: int, batch_size: int) -> tuple[float, float]:
    """(clips/s over the second epoch, seconds of the first epoch incl. worker start-up)."""
    loader = build_loader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=False,
                          seed=0, pin_memory=False)
    timings = []
    for epoch in range(2):
        set_epoch(loader, epoch)
        start = time.perf_counter()
        count = sum(len(batch["index"]) for batch in loader)
        timings.append(time.perf_counter() - start)
    return count / timings[1], timings[0]


def batch_megabytes(batch: dict) -> float:
    return sum(v.numel() * v.element_size() for v in batch.values() if torch.is_tensor(v)) / 2 ** 20


def render_where(root: Path, clips: list[Clip], workers: int, batch_size: int, rounds: int = 3) -> None:
    """Heatmaps drawn in the loader vs shipped as keypoints and drawn by the device stage
    (`mmdistill.data.device_batches.finish_batch`):
    loader clips/s (interleaved rounds, medians), bytes a batch carries, and the drawing time."""
    import statistics
    datasets = {where: make_dataset(root, clips, render_on=where) for where in ("loader", "device")}
    rates = {where: [] for where in datasets}
    for _ in range(rounds):
        for where, dataset in datasets.items():
            rates[where].append(loader_speed(dataset, workers, batch_size)[0])
    loader = build_loader(datasets["device"], batch_size=batch_size, shuffle=False, num_workers=0, seed=0,
                          pin_memory=False)
    shipped = next(iter(loader))
    draw = heatmap_drawer(datasets["device"])
    drawn = finish_batch(shipped, "cpu", draw)
    print(f"  batch of {batch_size}: {batch_megabytes(drawn):7.1f} MB with heatmaps, "
          f"{batch_megabytes(shipped):7.1f} MB with keypoints")
    for where in datasets:
        print(f"  drawn on the {where:6s}: {statistics.median(rates[where]):6.1f} clips/s from the loader "
              f"({workers} workers, median of {rounds})")
    print(f"  ratio: {statistics.median(rates['device']) / statistics.median(rates['loader']):.2f}x")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        keypoints = shipped["skeleton_keypoints"].to(device)
        times = []
        for _ in range(5):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            finish_batch({"skeleton_keypoints": keypoints}, device, draw)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        print(f"  finish_batch on {device}: {1000 * statistics.median(times[1:]):7.1f} ms per batch")


def cache_where(root: Path, clips: list[Clip], workers: int, batch_size: int, rounds: int = 3) -> None:
    """Loader clips/s reading the JPEG/npy files vs the decoded-clip cache (filled first, timed)."""
    import statistics

    from mmdistill.data.clip_cache import fill_cache
    datasets = {"files": make_dataset(root, clips, render_on="device"),
                "cache": make_dataset(root, clips, render_on="device", cache_dir=root / "clip_cache")}
    start = time.perf_counter()
    failed = fill_cache(datasets["cache"], num_workers=workers, progress=False)
    assert not failed, failed
    print(f"  filling the cache ({len({c.video for c in clips})} videos, {workers} workers): "
          f"{time.perf_counter() - start:.1f} s")
    from mmdistill.data.device_batches import finish_item
    for index in range(0, len(clips), max(1, len(clips) // 4)):
        for epoch in (0, 1):
            want, got = (finish_item(dataset[(epoch, index)], dataset) for dataset in datasets.values())
            assert torch.equal(want["rgb"], got["rgb"]), "cached RGB differs from the files"
    print("  RGB of cached and uncached clips bit-identical after the device stage (sampled clips, 2 epochs)")
    rates = {where: [] for where in datasets}
    for _ in range(rounds):
        for where, dataset in datasets.items():
            rates[where].append(loader_speed(dataset, workers, batch_size)[0])
    for where in datasets:
        print(f"  from the {where:5s}: {statistics.median(rates[where]):6.1f} clips/s ({workers} workers, "
              f"median of {rounds})")
    print(f"  ratio: {statistics.median(rates['cache']) / statistics.median(rates['files']):.2f}x")
    for where, dataset in datasets.items():  # what the device stage then does (here on the CPU)
        loader = build_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, seed=0,
                              pin_memory=False)
        shipped = next(iter(loader))
        start = time.perf_counter()
        finish_batch(shipped, "cpu", heatmap_drawer(dataset))
        print(f"  {where:5s}: a batch ships {batch_megabytes(shipped):6.1f} MB; finish_batch on the CPU "
              f"{1000 * (time.perf_counter() - start):6.1f} ms (dequantise, normalise, heatmaps)")


def decode_where(root: Path, clips: list[Clip], workers: int, batch_size: int, rounds: int = 3) -> None:
    """RGB only (eval): JPEG decoded in the loader vs shipped as bytes (`rgb_frames.decode_on`),
    loader clips/s side by side and the device stage's time per batch here on the CPU. The point
    is a GPU (nvjpeg); on the CPU the decode only moves from the workers to the main process."""
    import statistics
    datasets = {where: make_dataset(root, clips, modalities=("rgb",), mode="eval", decode_on=where)
                for where in ("loader", "device")}
    rates = {where: [] for where in datasets}
    for _ in range(rounds):
        for where, dataset in datasets.items():
            rates[where].append(loader_speed(dataset, workers, batch_size)[0])
    for where, dataset in datasets.items():
        loader = build_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, seed=0, pin_memory=False)
        shipped = next(iter(loader))
        megabytes = batch_megabytes(shipped) + sum(len(b) for b in shipped.get("rgb_jpeg", [])) / 2 ** 20
        finish_batch(shipped, "cpu", heatmap_drawer(dataset))  # once untimed: imports torchvision
        start = time.perf_counter()
        finish_batch(shipped, "cpu", heatmap_drawer(dataset))
        print(f"  decoded on the {where:6s}: {statistics.median(rates[where]):6.1f} clips/s from the loader "
              f"({workers} workers, median of {rounds}); a batch ships {megabytes:6.1f} MB; finish_batch on "
              f"the CPU {1000 * (time.perf_counter() - start):7.1f} ms")


def breakdown(dataset, repeats: int = 5) -> dict[str, float]:
    """Milliseconds per clip for each stage, in this process (median of `repeats`)."""
    from mmdistill.data.transforms import apply_to_frames, apply_to_keypoints
    clip = dataset.clips[0]
    rng = np.random.default_rng(0)
    _, indices = dataset.temporal(clip, dataset.sources["rgb"].num_frames(clip.video), rng, True)
    parts = {}

    def timed(name, function):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = function()
            times.append(time.perf_counter() - start)
        parts[name] = float(np.median(times)) * 1000
        return result

    rgb = timed("read rgb (16 JPEG)", lambda: dataset.sources["rgb"].read(clip.video, indices))
    flow = timed("read flow (16 npy)", lambda: dataset.sources["flow"].read(clip.video, indices))
    skeleton = timed("read skeleton (pkl)", lambda: dataset.sources["skeleton"].read(clip.video, indices))
    plan = dataset.spatial.plan(rgb.shape[1:3], rng, True)
    timed("crop/flip/normalise rgb+flow", lambda: [
        dataset.normalize[name](apply_to_frames(data, plan, name == "flow"))
        for name, data in (("rgb", rgb), ("flow", flow))])
    moved = apply_to_keypoints(skeleton, plan, rgb.shape[1:3])
    timed("render heatmaps", lambda: dataset.heatmaps(moved.xy, moved.score, plan.crop))
    timed("whole item", lambda: dataset[0])
    return parts


def heatmap_speedup(persons: int, repeats: int = 5) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    xy = rng.uniform([0, 0], [383, 223], size=(persons, 16, 17, 2)).astype(np.float32)
    score = rng.uniform(0.3, 1, size=(persons, 16, 17)).astype(np.float32)
    fast = render_heatmaps(xy, score, (224, 384), 2.0)
    slow = render_heatmaps_per_joint(xy, score, (224, 384), 2.0)
    assert np.abs(fast - slow).max() < 1e-5, "vectorised heatmaps differ from the reference"

    # Interleaved, so a busy machine slows both alike.
    times = {render_heatmaps_per_joint: [], render_heatmaps: []}
    for _ in range(repeats):
        for function, measured in times.items():
            start = time.perf_counter()
            function(xy, score, (224, 384), 2.0)
            measured.append(time.perf_counter() - start)
    return float(np.median(times[render_heatmaps_per_joint])), float(np.median(times[render_heatmaps]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--videos", type=int, default=8, help="videos written (4 clips each)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--only", choices=["cache", "decode"], default=None, help="run only this comparison")
    args = parser.parse_args()
    torch.set_num_threads(1)  # like a DataLoader worker: one core per decoding process
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores available, load average "
          f"{os.getloadavg()[0]:.1f}; one torch thread per process, as in a DataLoader worker")

    comparisons = {"decode": ("JPEG decoded in the loader vs on the device (rgb_frames.decode_on)", decode_where),
                   "cache": ("decoded-clip cache vs JPEG/npy files", cache_where)}
    if args.only:
        title, compare = comparisons[args.only]
        with tempfile.TemporaryDirectory() as folder:
            clips = write_tennis_sized(Path(folder), args.videos)
            print(f"\n{title}, {len(clips)} tennis-sized clips, batch {args.batch_size}, "
                  f"{'real' if REAL_VIDEO.is_file() else 'synthetic'} frames:")
            compare(Path(folder), clips, max(args.workers), args.batch_size)
        return 0
    print("\nheatmaps, 16 frames x 17 joints at 224x384 (median of 5):")
    ok = True
    for persons in (1, 2):
        loop, vectorised = heatmap_speedup(persons)
        ok &= loop / vectorised >= 10
        print(f"  {persons} person(s): per-joint loop {loop * 1000:7.1f} ms, vectorised {vectorised * 1000:6.1f} ms, "
              f"speed-up {loop / vectorised:5.1f}x")

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        clips = write_tennis_sized(root, args.videos)
        dataset = make_dataset(root, clips)
        print(f"\nwhere one clip's time goes (ms, this process, {'real' if REAL_VIDEO.is_file() else 'synthetic'} "
              f"frames):")
        for name, milliseconds in breakdown(dataset).items():
            print(f"  {name:32s} {milliseconds:7.1f}")
        print(f"\nloader, {len(clips)} clips, batch {args.batch_size} (rgb + flow + skeleton + mask):")
        for workers in args.workers:
            rate, first = loader_speed(dataset, workers, args.batch_size)
            print(f"  {workers} workers: {rate:6.1f} clips/s (steady epoch); first epoch incl. start-up {first:5.1f} s")
        print("\nskeleton heatmaps drawn in the loader vs on the device (skeleton_heatmaps.render_on):")
        render_where(root, clips, max(args.workers), args.batch_size)
        print("\ndecoded-clip cache vs JPEG/npy files (clip_data.cache_dir):")
        cache_where(root, clips, max(args.workers), args.batch_size)
        print("\nloader, RGB only, eval transforms (few-shot feature extraction):")
        rgb_only = make_dataset(root, clips, modalities=("rgb",), mode="eval")
        for workers in args.workers:
            rate, first = loader_speed(rgb_only, workers, args.batch_size)
            print(f"  {workers} workers: {rate:6.1f} clips/s (steady epoch); first epoch incl. start-up {first:5.1f} s")
    print("\nheatmap speed-up >= 10x:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
