"""`frames` step: decode videos into JPEG frame folders the RGB reader takes.

Output: ``DATA/frames/<video>/000001.jpg ...`` (1-based), resized while decoding (decord hands
the resize to FFmpeg's scaler, which filters properly when shrinking).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import cv2
import numpy as np

from mmdistill.data.layout import FRAME_FILE, FRAMES_DIR

from .common import Job, PrepareError, Report, add_run_arguments, find_videos, run_jobs

EXAMPLE = """example:
  python -m mmdistill.prepare frames --videos ../shared/data/tennis_strokes --out data/tennis \\
      --short-side 224 --workers 2
  -> data/tennis/frames/serve/serve1/000001.jpg ... (224x398 for 426x240 videos)"""

DECODE_CHUNK = 32  # frames decoded per call: bounded memory for long videos


def parse_size(text: str) -> tuple[int, int]:
    """'224x398' -> (224, 398) as (height, width)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise argparse.ArgumentTypeError(f"size {text!r} is not HEIGHTxWIDTH, e.g. 224x398")
    return int(match[1]), int(match[2])


def output_size(height: int, width: int, short_side: int | None,
                size: tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) of the written frames: exact ``size``, or the short side scaled to
    ``short_side`` keeping the aspect ratio (rounded), or the video's own size."""
    if size is not None:
        return size
    if short_side is None:
        return height, width
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def extract_frames(job: Job) -> dict:
    """Decode one video into its frames folder; returns what the marker records."""
    import decord  # imported here so `--help` stays fast

    source = Path(job.inputs["source"])
    out_dir = Path(job.inputs["out_dir"])
    settings = job.settings
    probe = decord.VideoReader(str(source), num_threads=1)
    num_frames = len(probe)
    if num_frames == 0:
        raise PrepareError(f"{source} has no frames; check the file plays")
    src_h, src_w = probe[0].shape[:2]
    fps = float(probe.get_avg_fps())
    height, width = output_size(src_h, src_w, settings["short_side"],
                                tuple(settings["size"]) if settings["size"] else None)
    if (height, width) == (src_h, src_w):
        reader = probe  # already open at the size we want
    else:
        reader = decord.VideoReader(str(source), width=width, height=height, num_threads=1)
    del probe
    if len(reader) != num_frames:
        raise PrepareError(f"{source}: decord counts {num_frames} frames at full size but "
                           f"{len(reader)} when resizing; the file may be damaged")
    out_dir.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(settings["jpeg_quality"])]
    for start in range(0, num_frames, DECODE_CHUNK):
        indices = list(range(start, min(num_frames, start + DECODE_CHUNK)))
        batch = reader.get_batch(indices).asnumpy()
        if batch.shape[1:3] != (height, width):
            raise PrepareError(f"{source}: decoded frames are {batch.shape[1:3]}, expected "
                               f"{(height, width)}")
        for index, rgb in zip(indices, batch):
            path = out_dir / FRAME_FILE.format(frame=index + 1)
            if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]), params):
                raise PrepareError(f"could not write {path}; check the disk and permissions")
    return {"frames": num_frames, "height": height, "width": width, "fps": fps,
            "source_height": src_h, "source_width": src_w}


def prepare_frames(videos_root: Path, data_root: Path, *, short_side: int | None = None,
                   size: tuple[int, int] | None = None, jpeg_quality: int = 95,
                   workers: int = 1, overwrite: bool = False, progress: bool = True) -> Report:
    if short_side is not None and size is not None:
        raise PrepareError("give either --short-side or --size, not both")
    if not 1 <= jpeg_quality <= 100:
        raise PrepareError(f"--jpeg-quality {jpeg_quality} must be between 1 and 100")
    settings = {"short_side": short_side, "size": list(size) if size else None,
                "jpeg_quality": jpeg_quality, "template": FRAME_FILE}
    data_root = Path(data_root)
    jobs = []
    for video, source in find_videos(Path(videos_root)).items():
        out_dir = data_root / FRAMES_DIR / video
        jobs.append(Job(video, [out_dir], settings,
                        {"source": str(Path(source).resolve()), "out_dir": str(out_dir)}))
    return run_jobs("frames", extract_frames, jobs, data_root, workers=workers,
                    overwrite=overwrite, progress=progress)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", type=Path, required=True,
                        help="folder of video files, searched recursively; the video id is the path "
                             "below it without extension (e.g. serve/serve1)")
    parser.add_argument("--out", type=Path, required=True, help="data root; frames go to OUT/frames/")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--short-side", type=int, default=None,
                       help="resize so the shorter side has this many pixels (aspect kept)")
    group.add_argument("--size", type=parse_size, default=None,
                       help="resize to exactly HEIGHTxWIDTH, e.g. 224x398 as in the tennis fork")
    parser.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality 1-100 (default 95)")
    add_run_arguments(parser, "frame folders")


def main(args: argparse.Namespace) -> Report:
    return prepare_frames(args.videos, args.out, short_side=args.short_side, size=args.size,
                          jpeg_quality=args.jpeg_quality, workers=args.workers,
                          overwrite=args.overwrite)
