"""`flow` step: dense optical flow between consecutive frames of the frame folders.

Output per video: ``DATA/flows/<video>/pair_00001.npy ...`` float16 ``[2, H, W]`` (channel 0 = dx
in pixels, + right; channel 1 = dy, + down; pair_k = flow from frame k to frame k+1, so F frames
give F-1 files), or with ``--per-video-array`` one ``DATA/flows/<video>.npy`` ``[F-1, 2, H, W]``.
Values are clipped to [-bound, bound] pixels. Flow is computed at the frames' own resolution.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from mmdistill.data.layout import FLOW_ARRAY_TEMPLATE, FLOW_PAIR_FILE, FLOWS_DIR, FRAME_FILE

from .common import Job, PrepareError, Report, add_run_arguments, finished_frame_folders, run_jobs

EXAMPLE = """example:
  python -m mmdistill.prepare flow --data data/tennis --method dis --bound 20 --workers 2
  -> data/tennis/flows/serve/serve1/pair_00001.npy ... float16 [2, H, W]"""

METHODS = ("dis", "farneback", "tvl1")
DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
               "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
# Farneback settings commonly used for action-recognition flow (pyramid 0.5, 3 levels, 15 px window).
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)

TVL1_MISSING = ("TV-L1 flow needs OpenCV's contrib modules (cv2.optflow), which this OpenCV {version} "
                "build lacks: replace opencv-python-headless by opencv-contrib-python-headless of the "
                "same version (pip uninstall opencv-python-headless && pip install "
                "opencv-contrib-python-headless), or use --method dis or farneback")

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def make_flow_fn(method: str, dis_preset: str = "medium") -> FlowFn:
    """A function (gray uint8 frame k, gray uint8 frame k+1) -> float32 [H, W, 2] flow (dx, dy)."""
    if method == "dis":
        if dis_preset not in DIS_PRESETS:
            raise PrepareError(f"--dis-preset {dis_preset!r} is not one of {sorted(DIS_PRESETS)}")
        dis = cv2.DISOpticalFlow_create(DIS_PRESETS[dis_preset])
        return lambda first, second: dis.calc(first, second, None)
    if method == "farneback":
        return lambda first, second: cv2.calcOpticalFlowFarneback(first, second, None, **FARNEBACK)
    if method == "tvl1":
        if not hasattr(cv2, "optflow"):
            raise PrepareError(TVL1_MISSING.format(version=cv2.__version__))
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda first, second: tvl1.calc(first, second, None)
    raise PrepareError(f"--method {method!r} is not one of {', '.join(METHODS)}")


def to_stored(flow_hw2: np.ndarray, bound: float) -> np.ndarray:
    """[H, W, 2] float -> clipped float16 [2, H, W], the layout the flow reader takes."""
    # C order matters: np.save writes a strided view element by element.
    return np.ascontiguousarray(np.clip(flow_hw2, -bound, bound).transpose(2, 0, 1), dtype=np.float16)


def read_gray(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise PrepareError(f"cannot read frame {path}; re-extract this video's frames")
    return image


def compute_flow(job: Job) -> dict:
    """Flow for every consecutive pair of one video's frames; returns what the marker records."""
    settings = job.settings
    frames_dir = Path(job.inputs["frames_dir"])
    num_frames = job.inputs["num_frames"]
    if num_frames < 2:
        raise PrepareError(f"{frames_dir} holds {num_frames} frame(s); flow needs at least 2")
    flow_fn = make_flow_fn(settings["method"], settings["dis_preset"])
    previous = read_gray(frames_dir / FRAME_FILE.format(frame=1))
    height, width = previous.shape
    bound = float(settings["bound"])
    per_video_array = settings["per_video_array"]
    if per_video_array:
        final = Path(job.inputs["array_path"])
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + ".tmp.npy")
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                          shape=(num_frames - 1, 2, height, width))
    else:
        out_dir = Path(job.inputs["pairs_dir"])
        out_dir.mkdir(parents=True, exist_ok=True)
    for frame in range(2, num_frames + 1):
        current = read_gray(frames_dir / FRAME_FILE.format(frame=frame))
        if current.shape != previous.shape:
            raise PrepareError(f"{frames_dir / FRAME_FILE.format(frame=frame)} is "
                               f"{current.shape}, frame 1 is {previous.shape}; frames must share a size")
        flow = to_stored(flow_fn(previous, current), bound)
        if per_video_array:
            array[frame - 2] = flow
        else:
            np.save(out_dir / FLOW_PAIR_FILE.format(frame=frame - 1), flow)
        previous = current
    if per_video_array:
        array.flush()
        del array
        os.replace(tmp, final)
    return {"frames": num_frames - 1, "height": height, "width": width}


def single_thread_opencv() -> None:
    """Worker initialiser: one OpenCV thread per process, so N workers use N cores, not N^2."""
    cv2.setNumThreads(1)


def prepare_flow(data_root: Path, *, method: str = "dis", dis_preset: str = "medium",
                 bound: float = 20.0, per_video_array: bool = False, workers: int = 1,
                 overwrite: bool = False, progress: bool = True) -> Report:
    make_flow_fn(method, dis_preset)  # a bad method or missing contrib build fails before any work
    if not bound > 0:
        raise PrepareError(f"--bound {bound} must be positive (pixels)")
    data_root = Path(data_root)
    jobs = []
    for video, frames_dir, num_frames, first_size in finished_frame_folders(data_root):
        settings = {"method": method, "dis_preset": dis_preset if method == "dis" else None,
                    "bound": float(bound), "per_video_array": per_video_array,
                    "dtype": "float16", "template": FLOW_PAIR_FILE,
                    # made from these frames: new frames (another size or count) mean new flow
                    "source_frames": num_frames, "source_size": list(first_size)}
        pairs_dir = data_root / FLOWS_DIR / video
        array_path = data_root / FLOW_ARRAY_TEMPLATE.format(video=video)
        jobs.append(Job(video, [pairs_dir, array_path], settings,
                        {"frames_dir": str(frames_dir), "num_frames": num_frames,
                         "pairs_dir": str(pairs_dir), "array_path": str(array_path)}))
    return run_jobs("flow", compute_flow, jobs, data_root, workers=workers, overwrite=overwrite,
                    worker_init=single_thread_opencv if workers > 1 else None, progress=progress)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True,
                        help="data root holding frames/ (from the frames step); flow goes to DATA/flows/")
    parser.add_argument("--method", choices=METHODS, default="dis",
                        help="dis (default, fast), farneback, or tvl1 (needs "
                             "opencv-contrib-python-headless)")
    parser.add_argument("--dis-preset", choices=sorted(DIS_PRESETS), default="medium",
                        help="DIS speed/quality preset (default medium)")
    parser.add_argument("--bound", type=float, default=20.0,
                        help="clip flow to [-bound, bound] pixels (default 20)")
    parser.add_argument("--per-video-array", action="store_true",
                        help="write one DATA/flows/<video>.npy [F-1, 2, H, W] instead of one file per pair")
    add_run_arguments(parser, "flow")


def main(args: argparse.Namespace) -> Report:
    return prepare_flow(args.data, method=args.method, dis_preset=args.dis_preset, bound=args.bound,
                        per_video_array=args.per_video_array, workers=args.workers,
                        overwrite=args.overwrite)
