"""`hand-pose` step: 21-joint hand heatmaps per frame, as MM-CDFSL's pose teacher takes them.

Output per frame k of ``DATA/frames/<video>/`` (from the frames step): one float32 ``.npy`` of
shape ``(56, 56, 21)``, channel-last, at the path of the chosen ``--layout``
(``hand-pose/heatmap/<video>/%06d.npy`` for Ego4D and WEAR, ``%05d.npy`` for MECCANO,
``frames/pose/train/<video>/frame_%010d.npy`` for EPIC; MM-CDFSL's readers, see
docs/parity_mmcdfsl.md section 2). The heatmap covers the whole frame, squashed to 56 x 56.

What MM-CDFSL's repository does not say (docs/prepare.md, "hand-pose", has the reasons): how its
heatmaps were made. Chosen here: channel j is joint j in COCO-WholeBody-hand order (MMPose's hand
order, identical to MediaPipe's 21 hand landmarks, so no remapping); an unnormalised Gaussian of
peak 1 and sigma 10 heatmap pixels around each joint, centred sub-pixel; two hands combined by the
per-joint maximum (as MMPose combines instances); a frame without hands is all zeros.

The default estimator is MediaPipe's hand solution (palm detector + hand landmarker), an OPTIONAL
dependency whose two model files ship inside the `mediapipe` 0.10.21 wheel: nothing is downloaded.
From Python, any estimator with the small `HandEstimator` interface can replace it.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from mmdistill.data.layout import FRAME_FILE

from .common import (Job, PrepareError, Report, add_run_arguments, finished_frame_folders,
                     run_jobs, write_bytes_atomic)
from .skeleton import add_mediapipe_arguments, pick_estimator

EXAMPLE = """example:
  python -m mmdistill.prepare hand-pose --data data/tennis --layout wear --workers 2
  -> data/tennis/hand-pose/heatmap/serve/serve1/000001.npy ... float32 (56, 56, 21)
needs the optional MediaPipe install (see docs/prepare.md):
  pip install --no-deps mediapipe==0.10.21
  pip install -r requirements-pose.txt"""

MEDIAPIPE_MISSING = ("the hand-pose step's default estimator needs MediaPipe, an optional "
                     "dependency that is not installed. Install the version whose wheel ships the "
                     "hand models (no download at run time):\n"
                     "  pip install --no-deps mediapipe==0.10.21\n"
                     "  pip install -r requirements-pose.txt\n"
                     "(--no-deps keeps MediaPipe from replacing opencv-python-headless and numpy)")

NUM_JOINTS = 21
# COCO-WholeBody hand order (MMPose's 21 hand keypoints: wrist, thumb1..4, forefinger1..4,
# middle_finger1..4, ring_finger1..4, pinky_finger1..4). MediaPipe's HandLandmark enum has the
# same order (WRIST, THUMB_CMC..THUMB_TIP, INDEX_FINGER_MCP..TIP, MIDDLE.., RING.., PINKY..);
# tests/test_prepare_hand_pose.py checks it against the installed MediaPipe.
HAND21 = ("wrist", "thumb1", "thumb2", "thumb3", "thumb4",
          "forefinger1", "forefinger2", "forefinger3", "forefinger4",
          "middle_finger1", "middle_finger2", "middle_finger3", "middle_finger4",
          "ring_finger1", "ring_finger2", "ring_finger3", "ring_finger4",
          "pinky_finger1", "pinky_finger2", "pinky_finger3", "pinky_finger4")

# Output path per MM-CDFSL layout, relative to the data root: `video` is the frames folder's id
# (EPIC: "<participant_id>/<video_id>"), `frame` the 1-based number of the JPEG it was made from.
LAYOUTS = {
    "ego4d": "hand-pose/heatmap/{video}/{frame:06d}.npy",
    "wear": "hand-pose/heatmap/{video}/{frame:06d}.npy",
    "meccano": "hand-pose/heatmap/{video}/{frame:05d}.npy",
    "epic": "frames/pose/train/{video}/frame_{frame:010d}.npy",
}


class HandEstimator(Protocol):
    """The hands in one frame. One instance serves one video (it may track)."""

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] RGB -> float32 [M, 21, 2] (x, y) pixels, centres at integers, in
        HAND21 order; M = the hands found (0 when none)."""

    def close(self) -> None: ...


class MediaPipeHands:
    """MediaPipe's hand landmarks (legacy `solutions.hands` API: its palm detector and landmark
    models ship in the wheel, unlike the Tasks API's `.task` bundle)."""

    def __init__(self, max_num_hands: int = 2, model_complexity: int = 1,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 static_image_mode: bool = False):
        try:
            from mediapipe.python.solutions import hands as mp_hands
        except ImportError as error:
            raise PrepareError(f"{MEDIAPIPE_MISSING}\n(import failed: {error})") from error
        self._hands = mp_hands.Hands(static_image_mode=static_image_mode,
                                     max_num_hands=max_num_hands, model_complexity=model_complexity,
                                     min_detection_confidence=min_detection_confidence,
                                     min_tracking_confidence=min_tracking_confidence)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        result = self._hands.process(rgb)
        found = result.multi_hand_landmarks or []
        keypoints = np.zeros((len(found), NUM_JOINTS, 2), np.float32)
        for hand, landmarks in enumerate(found):
            for joint, landmark in enumerate(landmarks.landmark):
                # MediaPipe's 0..1 spans the image edges; our pixel centres are at integers.
                keypoints[hand, joint] = (landmark.x * width - 0.5, landmark.y * height - 0.5)
        return keypoints

    def close(self) -> None:
        self._hands.close()


def hand_heatmaps(keypoints: np.ndarray, image_hw: tuple[int, int], size: int = 56,
                  sigma: float = 10.0) -> np.ndarray:
    """[M, 21, 2] pixel (x, y) of a (H, W) frame -> float32 (size, size, 21) channel-last.

    Each joint becomes exp(-d^2 / (2 sigma^2)) (peak 1, sigma in heatmap pixels) around its
    sub-pixel position on the size x size grid that squashes the whole frame; a joint whose
    3-sigma box misses the grid is left out; hands are combined by the per-joint maximum.
    """
    height, width = image_hw
    heatmaps = np.zeros((size, size, NUM_JOINTS), np.float32)
    grid = np.arange(size, dtype=np.float32)
    for hand in np.asarray(keypoints, np.float32).reshape(-1, NUM_JOINTS, 2):
        for joint, (x, y) in enumerate(hand):
            # pixel centres at integers on both grids: frame pixel x covers [x - .5, x + .5]
            mx = (x + 0.5) * size / width - 0.5
            my = (y + 0.5) * size / height - 0.5
            if not (np.isfinite(mx) and np.isfinite(my)):
                continue
            if mx - 3 * sigma >= size or my - 3 * sigma >= size or mx + 3 * sigma < 0 \
                    or my + 3 * sigma < 0:
                continue
            gauss = np.exp(-((grid[None, :] - mx) ** 2 + (grid[:, None] - my) ** 2)
                           / (2 * sigma ** 2))
            np.maximum(heatmaps[..., joint], gauss, out=heatmaps[..., joint])
    return heatmaps


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


EstimatorFactory = Callable[[dict], HandEstimator]


def make_mediapipe(settings: dict) -> HandEstimator:
    return MediaPipeHands(max_num_hands=settings["max_num_hands"],
                          model_complexity=settings["model_complexity"],
                          min_detection_confidence=settings["min_detection_confidence"],
                          min_tracking_confidence=settings["min_tracking_confidence"],
                          static_image_mode=settings["static_image_mode"])


ESTIMATORS: dict[str, EstimatorFactory] = {"mediapipe": make_mediapipe}


def estimate_hands(job: Job) -> dict:
    """Run the estimator over one video's frames (every `stride`-th) and write one heatmap each."""
    frames_dir = Path(job.inputs["frames_dir"])
    settings = job.settings
    template = LAYOUTS[settings["layout"]]
    factory: EstimatorFactory = job.inputs["factory"]
    estimator = factory(settings)
    written = with_hands = hands = 0
    shape = None
    try:
        # The estimator tracks, so it sees every frame; only every stride-th is written.
        for frame in range(1, job.inputs["num_frames"] + 1):
            path = frames_dir / FRAME_FILE.format(frame=frame)
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise PrepareError(f"cannot read frame {path}; re-extract this video's frames")
            if shape is None:
                shape = bgr.shape[:2]
            elif bgr.shape[:2] != shape:
                raise PrepareError(f"{path} is {bgr.shape[:2]}, frame 1 is {shape}; frames must "
                                   f"share a size")
            keypoints = np.asarray(estimator(np.ascontiguousarray(bgr[..., ::-1])), np.float32)
            if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_JOINTS, 2):
                raise PrepareError(f"estimator returned {keypoints.shape}, expected (M, 21, 2)")
            if (frame - 1) % settings["stride"]:
                continue
            heatmaps = hand_heatmaps(keypoints, shape, settings["size"], settings["sigma"])
            out = Path(job.inputs["root"]) / template.format(video=job.video, frame=frame)
            write_bytes_atomic(out, npy_bytes(heatmaps))
            written += 1
            with_hands += int(len(keypoints) > 0)
            hands += len(keypoints)
    finally:
        estimator.close()
    return {"frames": written, "frames_with_hands": with_hands, "hands": hands,
            "height": int(shape[0]), "width": int(shape[1])}


def prepare_hand_pose(data_root: Path, *, layout: str = "wear", estimator: str = "mediapipe",
                      factory: EstimatorFactory | None = None, sigma: float = 10.0,
                      size: int = 56, stride: int = 1, max_num_hands: int = 2,
                      model_complexity: int = 1, min_detection_confidence: float = 0.5,
                      min_tracking_confidence: float = 0.5, static_image_mode: bool = False,
                      workers: int = 1, overwrite: bool = False, progress: bool = True) -> Report:
    """``factory`` (a module-level callable: settings -> HandEstimator) overrides ``estimator``."""
    if layout not in LAYOUTS:
        raise PrepareError(f"--layout {layout!r} is not one of {sorted(LAYOUTS)}")
    if not sigma > 0 or size < 1 or stride < 1 or max_num_hands < 1:
        raise PrepareError(f"--sigma ({sigma}) must be positive and --size ({size}), --stride "
                           f"({stride}) and --max-num-hands ({max_num_hands}) at least 1")
    if model_complexity not in (0, 1):
        raise PrepareError(f"--model-complexity {model_complexity} must be 0 (lite) or 1 (full), "
                           f"the two hand models in the MediaPipe wheel")
    estimator, factory = pick_estimator(estimator, factory, ESTIMATORS, MEDIAPIPE_MISSING)
    data_root = Path(data_root)
    jobs = []
    for video, frames_dir, num_frames, first_size in finished_frame_folders(data_root):
        settings = {"estimator": estimator, "layout": layout, "sigma": float(sigma),
                    "size": int(size), "stride": int(stride), "max_num_hands": max_num_hands,
                    "model_complexity": model_complexity,
                    "min_detection_confidence": min_detection_confidence,
                    "min_tracking_confidence": min_tracking_confidence,
                    "static_image_mode": static_image_mode, "joints": "coco_wholebody_hand21",
                    "dtype": "float32", "source_frames": num_frames,
                    "source_size": list(first_size)}
        out_dir = (data_root / LAYOUTS[layout].format(video=video, frame=1)).parent
        jobs.append(Job(video, [out_dir], settings,
                        {"frames_dir": str(frames_dir), "num_frames": num_frames,
                         "root": str(data_root), "factory": factory}))
    return run_jobs("hand-pose", estimate_hands, jobs, data_root, workers=workers,
                    overwrite=overwrite, progress=progress)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True,
                        help="data root holding frames/ (from the frames step); heatmaps go "
                             "under it at the --layout's paths")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="wear",
                        help="MM-CDFSL path and file name: ego4d/wear hand-pose/heatmap/<video>/"
                             "%%06d.npy, meccano %%05d.npy, epic frames/pose/train/<video>/"
                             "frame_%%010d.npy (default wear)")
    parser.add_argument("--sigma", type=float, default=10.0,
                        help="Gaussian sigma in heatmap pixels (default 10)")
    parser.add_argument("--size", type=int, default=56, help="heatmap side (default 56)")
    parser.add_argument("--stride", type=int, default=1,
                        help="write frames 1, 1+S, 1+2S, ... only (default 1: every frame)")
    parser.add_argument("--estimator", choices=sorted(ESTIMATORS), default="mediapipe",
                        help="hand estimator (default mediapipe, optional dependency)")
    parser.add_argument("--max-num-hands", type=int, default=2, help="MediaPipe (default 2)")
    parser.add_argument("--model-complexity", type=int, choices=(0, 1), default=1,
                        help="MediaPipe: 0 lite, 1 full (default 1)")
    add_mediapipe_arguments(parser, detected="palm", tracked="the hands are")
    add_run_arguments(parser, "heatmaps")


def main(args: argparse.Namespace) -> Report:
    return prepare_hand_pose(args.data, layout=args.layout, estimator=args.estimator,
                             sigma=args.sigma, size=args.size, stride=args.stride,
                             max_num_hands=args.max_num_hands,
                             model_complexity=args.model_complexity,
                             min_detection_confidence=args.min_detection_confidence,
                             min_tracking_confidence=args.min_tracking_confidence,
                             static_image_mode=args.static_image_mode, workers=args.workers,
                             overwrite=args.overwrite)
