"""`skeleton` step: 2-D human keypoints per frame, written as MMAction2-style pickles.

Output per video: ``DATA/skeletons/<video>.pkl``, a plain dict (numpy arrays and builtins only):
``keypoint`` float32 [M, T, 17, 2] (x, y in pixels of the frames in DATA/frames, pixel centres
at integers; those frames' (H, W) is ``img_shape``), ``keypoint_score`` float32 [M, T, 17],
``original_shape``, ``total_frames``, ``frame_dir``; COCO-17 joint order. A frame where the estimator finds nobody
gets score 0 and coordinates 0 for every joint: nothing is invented.

The default estimator is MediaPipe's pose solution (one person, M = 1), an OPTIONAL dependency:
its model file ships inside the `mediapipe` 0.10.21 wheel, so nothing is downloaded at run time.
From Python, any estimator with the small `PoseEstimator` interface of this module can
replace it (`prepare_skeletons(data, factory=...)`).
"""
from __future__ import annotations

import argparse
import importlib.util
import pickle
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from mmdistill.data.layout import FRAME_FILE, SKELETON_TEMPLATE

from .common import (Job, PrepareError, Report, add_run_arguments,
                     finished_frame_folders, run_jobs, write_bytes_atomic)

EXAMPLE = """example:
  python -m mmdistill.prepare skeleton --data data/tennis --workers 2
  -> data/tennis/skeletons/serve/serve1.pkl
needs the optional MediaPipe install (see docs/prepare.md):
  pip install --no-deps mediapipe==0.10.21
  pip install absl-py attrs flatbuffers matplotlib "protobuf>=6.33.5,<7\""""

COCO17 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
          "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
          "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
# Index of each COCO-17 joint among MediaPipe's 33 pose landmarks (nose 0, left eye 2, right eye 5,
# ears 7/8, shoulders 11/12, elbows 13/14, wrists 15/16, hips 23/24, knees 25/26, ankles 27/28).
MEDIAPIPE_TO_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

MEDIAPIPE_MISSING = ("the skeleton step's default estimator needs MediaPipe, an optional "
                     "dependency that is not installed. Install the version whose wheel ships the "
                     "pose model (no download at run time):\n"
                     "  pip install --no-deps mediapipe==0.10.21\n"
                     "  pip install absl-py attrs flatbuffers matplotlib \"protobuf>=6.33.5,<7\"\n"
                     "(--no-deps keeps MediaPipe from replacing opencv-python-headless and numpy)")


class PoseEstimator(Protocol):
    """Keypoints of the people in one frame. One instance serves one video (it may track)."""
    num_people: int  # M: rows in the output, padded with score-0 rows when fewer are found

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [H, W, 3] RGB -> (keypoints float32 [M, 17, 2] pixels (x, y), scores [M, 17])."""

    def close(self) -> None: ...


class MediaPipePose:
    """MediaPipe's single-person pose landmarks mapped to COCO-17; score = landmark visibility.

    Only ``model_complexity=1`` is offered: it is the one model the wheel ships (0 and 2 would
    be downloaded at run time, which this project never does).
    """
    num_people = 1

    def __init__(self, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, static_image_mode: bool = False):
        try:
            from mediapipe.python.solutions import pose as mp_pose
        except ImportError as error:
            raise PrepareError(f"{MEDIAPIPE_MISSING}\n(import failed: {error})") from error
        self._pose = mp_pose.Pose(static_image_mode=static_image_mode, model_complexity=1,
                                  smooth_landmarks=True,
                                  min_detection_confidence=min_detection_confidence,
                                  min_tracking_confidence=min_tracking_confidence)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        height, width = rgb.shape[:2]
        keypoints = np.zeros((1, len(COCO17), 2), np.float32)
        scores = np.zeros((1, len(COCO17)), np.float32)
        result = self._pose.process(rgb)
        if result.pose_landmarks is not None:
            landmarks = result.pose_landmarks.landmark
            for joint, index in enumerate(MEDIAPIPE_TO_COCO17):
                # MediaPipe's 0..1 spans the image edges; our pixels have centres at integers.
                keypoints[0, joint] = (landmarks[index].x * width - 0.5,
                                       landmarks[index].y * height - 0.5)
                scores[0, joint] = landmarks[index].visibility
        return keypoints, scores

    def close(self) -> None:
        self._pose.close()


def mediapipe_available() -> bool:
    return importlib.util.find_spec("mediapipe") is not None


def pick_estimator(name: str, factory, estimators: dict, missing: str) -> tuple[str, object]:
    """(name recorded in the outputs' settings, factory): `factory` when a caller gives one (tests,
    other estimators), else the named one of `estimators`; MediaPipe, an optional dependency,
    refused with `missing` (how to install it) when it is not there."""
    if factory is not None:
        return getattr(factory, "__qualname__", repr(factory)), factory
    if name not in estimators:
        raise PrepareError(f"--estimator {name!r} is not one of {sorted(estimators)}")
    if name == "mediapipe" and not mediapipe_available():
        raise PrepareError(missing)
    return name, estimators[name]


EstimatorFactory = Callable[[dict], PoseEstimator]


def make_mediapipe(settings: dict) -> PoseEstimator:
    return MediaPipePose(min_detection_confidence=settings["min_detection_confidence"],
                         min_tracking_confidence=settings["min_tracking_confidence"],
                         static_image_mode=settings["static_image_mode"])


ESTIMATORS: dict[str, EstimatorFactory] = {"mediapipe": make_mediapipe}


def estimate_skeleton(job: Job) -> dict:
    """Run the estimator over one video's frames and write its pickle atomically."""
    frames_dir = Path(job.inputs["frames_dir"])
    num_frames = job.inputs["num_frames"]
    factory: EstimatorFactory = job.inputs["factory"]
    estimator = factory(job.settings)
    try:
        people = estimator.num_people
        keypoints = np.zeros((people, num_frames, len(COCO17), 2), np.float32)
        scores = np.zeros((people, num_frames, len(COCO17)), np.float32)
        shape = None
        for t in range(num_frames):
            path = frames_dir / FRAME_FILE.format(frame=t + 1)
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise PrepareError(f"cannot read frame {path}; re-extract this video's frames")
            if shape is None:
                shape = bgr.shape[:2]
            elif bgr.shape[:2] != shape:
                raise PrepareError(f"{path} is {bgr.shape[:2]}, frame 1 is {shape}; frames must "
                                   f"share a size")
            frame_keypoints, frame_scores = estimator(np.ascontiguousarray(bgr[..., ::-1]))
            if frame_keypoints.shape != (people, len(COCO17), 2) or \
                    frame_scores.shape != (people, len(COCO17)):
                raise PrepareError(f"estimator returned {frame_keypoints.shape} / "
                                   f"{frame_scores.shape}, expected ({people}, 17, 2) / ({people}, 17)")
            keypoints[:, t] = frame_keypoints
            scores[:, t] = frame_scores
    finally:
        estimator.close()
    # Where nobody was found, coordinates are 0 (never the estimator's guess).
    keypoints[scores <= 0] = 0.0
    record = {"frame_dir": job.video, "total_frames": int(num_frames),
              "img_shape": (int(shape[0]), int(shape[1])),
              "original_shape": (int(shape[0]), int(shape[1])),
              "keypoint": keypoints, "keypoint_score": scores}
    write_bytes_atomic(Path(job.inputs["out_path"]), pickle.dumps(record, protocol=4))
    found = int((scores.max(axis=(0, 2)) > 0).sum())
    return {"frames": int(num_frames), "frames_with_person": found,
            "height": int(shape[0]), "width": int(shape[1])}


def prepare_skeletons(data_root: Path, *, estimator: str = "mediapipe",
                      factory: EstimatorFactory | None = None,
                      min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                      static_image_mode: bool = False, workers: int = 1, overwrite: bool = False,
                      progress: bool = True) -> Report:
    """``factory`` (a module-level callable: settings -> PoseEstimator) overrides ``estimator``."""
    estimator, factory = pick_estimator(estimator, factory, ESTIMATORS, MEDIAPIPE_MISSING)
    data_root = Path(data_root)
    jobs = []
    for video, frames_dir, num_frames, first_size in finished_frame_folders(data_root):
        settings = {"estimator": estimator, "min_detection_confidence": min_detection_confidence,
                    "min_tracking_confidence": min_tracking_confidence,
                    "static_image_mode": static_image_mode, "joints": "coco17",
                    "source_frames": num_frames, "source_size": list(first_size)}
        out_path = data_root / SKELETON_TEMPLATE.format(video=video)
        jobs.append(Job(video, [out_path], settings,
                        {"frames_dir": str(frames_dir), "num_frames": num_frames,
                         "out_path": str(out_path), "factory": factory}))
    return run_jobs("skeleton", estimate_skeleton, jobs, data_root, workers=workers,
                    overwrite=overwrite, progress=progress)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True,
                        help="data root holding frames/; pickles go to DATA/skeletons/")
    parser.add_argument("--estimator", choices=sorted(ESTIMATORS), default="mediapipe",
                        help="pose estimator (default mediapipe, optional dependency)")
    add_mediapipe_arguments(parser, detected="person", tracked="the person is")
    add_run_arguments(parser, "pickles")


def add_mediapipe_arguments(parser: argparse.ArgumentParser, detected: str, tracked: str) -> None:
    """MediaPipe's tracking flags, shared by the skeleton and hand-pose steps."""
    parser.add_argument("--min-detection-confidence", type=float, default=0.5,
                        help=f"MediaPipe: {detected} detection threshold (default 0.5)")
    parser.add_argument("--min-tracking-confidence", type=float, default=0.5,
                        help=f"MediaPipe: below this {tracked} re-detected (default 0.5)")
    parser.add_argument("--static-image-mode", action="store_true",
                        help="MediaPipe: detect in every frame instead of tracking (slower)")


def main(args: argparse.Namespace) -> Report:
    return prepare_skeletons(args.data, estimator=args.estimator,
                             min_detection_confidence=args.min_detection_confidence,
                             min_tracking_confidence=args.min_tracking_confidence,
                             static_image_mode=args.static_image_mode, workers=args.workers,
                             overwrite=args.overwrite)
