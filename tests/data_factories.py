"""Writers of small datasets in every layout the data readers accept, for tests (any module's).

Each writer takes the arrays to write, so a test can compare what it reads back with what it
wrote. `make_dataset` writes a whole canonical dataset (frames, flow, skeletons, annotations).
"""
from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image


def write_frames(root: Path, video: str, frames: np.ndarray, template: str = "frames/{video}/{frame:06d}.jpg",
                 first_frame: int = 1) -> list[Path]:
    """uint8 (F, H, W, 3) RGB -> one image per frame, format from the template's suffix."""
    paths = []
    for index, frame in enumerate(frames):
        path = Path(root) / template.format(video=video, frame=index + first_frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(path, **({"quality": 95, "subsampling": 0} if path.suffix == ".jpg" else {}))
        paths.append(path)
    return paths


def write_video(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """uint8 (F, H, W, 3) RGB -> an MPEG-4 file (lossy)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_flow_pairs(root: Path, video: str, flows: np.ndarray,
                     template: str = "flows/{video}/pair_{frame:05d}.npy", first_frame: int = 1,
                     dtype=np.float16) -> list[Path]:
    """(P, 2, H, W) -> one `.npy` per frame pair."""
    paths = []
    for index, flow in enumerate(flows):
        path = Path(root) / template.format(video=video, frame=index + first_frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, flow.astype(dtype))
        paths.append(path)
    return paths


def write_flow_array(path: Path, flows: np.ndarray, key: str = "flow", compressed: bool = False) -> Path:
    """(P, 2, H, W) -> one `.npy`, or `.npz` (under `key`) when the path says so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        (np.savez_compressed if compressed else np.savez)(path, **{key: flows})
    else:
        np.save(path, flows)
    return path


def write_flow_jpeg(root: Path, video: str, flows: np.ndarray, bound: float = 20.0,
                    template: str = "flows/{video}/{axis}_{frame:05d}.jpg", first_frame: int = 1) -> None:
    """(P, 2, H, W) -> denseflow-style grayscale JPEGs, [-bound, bound] -> [0, 255]."""
    quantised = np.clip(np.rint((np.clip(flows, -bound, bound) + bound) * 255.0 / (2 * bound)), 0, 255)
    for index, flow in enumerate(quantised.astype(np.uint8)):
        for axis, channel in (("x", flow[0]), ("y", flow[1])):
            path = Path(root) / template.format(video=video, axis=axis, frame=index + first_frame)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(channel).save(path, quality=100)


def write_skeleton_pickle(path: Path, keypoint: np.ndarray, keypoint_score: np.ndarray,
                          img_shape: tuple[int, int] | None, total_frames: int | None = None,
                          **extra) -> Path:
    """MMAction2-style dict pickle; keys given as None are left out (to make broken files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"keypoint": keypoint, "keypoint_score": keypoint_score, "img_shape": img_shape,
            "total_frames": total_frames if total_frames is not None else keypoint.shape[-3], **extra}
    with open(path, "wb") as handle:
        pickle.dump({key: value for key, value in data.items() if value is not None}, handle)
    return path


def write_json(path: Path, data) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_clip_list(path: Path, rows: Sequence[dict]) -> Path:
    """Flat clip list: JSON list, or CSV (columns video, start, end, label; blanks for absent)."""
    path = Path(path)
    if path.suffix != ".csv":
        return write_json(path, list(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["video", "start", "end", "label"])
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in writer.fieldnames})
    return path


def smooth_frames(rng: np.random.Generator, num_frames: int, size: tuple[int, int]) -> np.ndarray:
    """Low-frequency colour frames: JPEG keeps them within a few grey levels."""
    height, width = size
    coarse = rng.integers(0, 256, size=(num_frames, 4, 4, 3)).astype(np.uint8)
    return np.stack([cv2.resize(frame, (width, height), interpolation=cv2.INTER_CUBIC) for frame in coarse])


def random_skeleton(rng: np.random.Generator, num_persons: int, num_frames: int, size: tuple[int, int],
                    num_joints: int = 17) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (M, T, V, 2) inside a `size` (H, W) frame and scores (M, T, V) in [0.3, 1]."""
    height, width = size
    xy = rng.uniform([0, 0], [width - 1, height - 1], size=(num_persons, num_frames, num_joints, 2))
    score = rng.uniform(0.3, 1.0, size=(num_persons, num_frames, num_joints))
    return xy.astype(np.float32), score.astype(np.float32)


def make_dataset(root: Path, videos: Sequence[str] = ("v0", "v1"), labels: Sequence[str] = ("a", "b"),
                 num_frames: int = 12, size: tuple[int, int] = (24, 32), flow_size: tuple[int, int] | None = None,
                 skeleton_shape: tuple[int, int] | None = None, events_per_video: int = 1, seed: int = 0,
                 frame_template: str = "frames/{video}/{frame:06d}.jpg") -> dict:
    """The canonical layout under `root` plus `annotations.json` (tennis style, 0-based frames).

    Returns what was written: {'frames': {video: array}, 'flows': ..., 'keypoints': ...,
    'scores': ..., 'annotations': path}.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    flow_h, flow_w = flow_size or size
    skeleton_shape = skeleton_shape or size
    written = {"frames": {}, "flows": {}, "keypoints": {}, "scores": {}}
    entries = []
    for video_index, video in enumerate(videos):
        frames = smooth_frames(rng, num_frames, size)
        flows = rng.normal(0, 2, size=(num_frames - 1, 2, flow_h, flow_w)).astype(np.float16)
        xy, score = random_skeleton(rng, 1, num_frames, skeleton_shape)
        write_frames(root, video, frames, frame_template)
        write_flow_pairs(root, video, flows)
        write_skeleton_pickle(root / "skeletons" / f"{video}.pkl", xy, score, tuple(skeleton_shape))
        written["frames"][video], written["flows"][video] = frames, flows
        written["keypoints"][video], written["scores"][video] = xy, score
        events = [{"frame": event, "label": labels[(video_index + event) % len(labels)]}
                  for event in range(events_per_video)]
        entries.append({"video": video, "fps": 25, "height": size[0], "width": size[1],
                        "num_frames": num_frames, "events": events})
    written["annotations"] = write_json(root / "annotations.json", entries)
    return written


def whole_clip_bindings(size: tuple[int, int], num_frames: int) -> str:
    """gin bindings that read every frame of a clip at its own size, uncropped and unresized: how
    the demo worlds' clips are compared with what was written."""
    height, width = size
    return (f"temporal_sampling.num_frames = {num_frames}\n"
            "temporal_sampling.sampling_rate = 1\n"
            "spatial_transform.short_side = None\n"
            f"spatial_transform.crop_size = ({height}, {width})\n")


def run_py(bindings: Sequence[str], timeout: float = 300):
    """`python run.py --gin_param ...` in a fresh process (no parent W&B service, CI console,
    one math thread), as a user would run it; returns the CompletedProcess."""
    import os
    import subprocess
    import sys

    args = [sys.executable, str(Path(__file__).resolve().parent.parent / "run.py")]
    for binding in bindings:
        args += ["--gin_param", binding]
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return subprocess.run(args, env={**env, "CI": "true", "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=timeout)


def content_digest(root: Path, paths=None) -> str:
    """Digest of what the readers see in `paths` (default: every file under `root`): decoded
    pixels, arrays and pickled values, not bytes; a manifest counts by name only (it records the
    generation time)."""
    import hashlib

    digest = hashlib.sha256()
    paths = (p for p in root.rglob("*") if p.is_file()) if paths is None else paths
    for path in sorted(paths):
        digest.update(str(path.relative_to(root)).encode())
        if path.suffix == ".jpg":
            digest.update(np.asarray(Image.open(path)).tobytes())
        elif path.suffix == ".npy":
            digest.update(np.load(path).tobytes())
        elif path.suffix == ".pkl":
            data = pickle.loads(path.read_bytes())
            for key in sorted(data):
                digest.update(key.encode() + np.asarray(data[key]).tobytes())
        elif path.name != "manifest.json":
            digest.update(path.read_bytes())
    return digest.hexdigest()
