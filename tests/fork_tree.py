"""A tiny data tree in the tennis fork's exact layout, and the tensors the fork feeds each teacher.

Reference for the fork parity tests (issue 22, items 2-5). The tree is what the fork's loaders read
(Ricky513125/Tennis at a9d8a787ff8c; every `file:line` below is at that commit, paths are the
fork's; docs/parity_tennis_fork.md has the longer reading notes):

- `vid_frames_224/<video>/%06d.jpg`, numbered from 000000 (extract_frames.py:18, :22, :28),
  224 high and 398 wide (a 1280 x 720 frame resized to height 224, extract_frames.py:25-26);
- `tennis_flows/<video>/pair_%05d.npy`, float32 `[2, 224, 398]` (TENNIS_FLOW_PROCESSING.md:5-10).
  No code in the fork writes them, so which frames `pair_N` spans is not known; this tree numbers
  them 1..F-1 for F frames (`flow_first`);
- `skeletons/f3set-tennis/<video>.pkl`: a dict with `keypoint` `[M, T, V, 2]` in source pixels,
  `keypoint_score` `[M, T, V]`, `total_frames`, `img_shape` (H, W) = (720, 1280) (the keys
  tennis_skeleton_dataset.py:85-88 reads); two persons, scores on both sides of 0.1;
- an F3Set events JSON (the keys of shared/data/tennis_events_json/val.json; the fork's
  unlabelled loader needs `video`, `events[0].frame`, `far_name`, `near_name`,
  tennis_unlabel_loader.py:29-32).

The reference functions are written from reading that code, not copied; each cites the lines it
follows. They return what enters the teacher, `[C, T, H, W]` float32 (the distillation dataset
permutes to that layout, tennis_unlabel_combined_multimodal_dataset.py:219, :233, :245; the
pretraining datasets return `[T, H, W, C]` of the same values, tennis_unlabel_only_dataset.py:111).
"""
from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

FORK_COMMIT = "a9d8a787ff8cbd73aafb88f10fb5b22e80855c72"

FRAME_SIZE = (224, 398)         # (H, W) of vid_frames_224 for 1280 x 720 sources
INPUT_SIZE = (224, 384)         # every fork model's input (H, W)
SOURCE_IMG_SHAPE = (720, 1280)  # the skeleton pickle's img_shape, and the fork's default for it
HEATMAP_GRID = (56, 98)         # tennis_skeleton_dataset.py:200; combined :238
HEATMAP_SIGMA = 2.0             # _keypoints_to_heatmap's default, tennis_skeleton_dataset.py:135
SCORE_THRESHOLD = 0.1           # joints drawn only above it, tennis_skeleton_dataset.py:155
NUM_JOINTS = 17

# Normalisation values, (mean, std) per channel, named by where the fork keeps them.
IMAGENET_RGB = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))           # augmentation.py:100 defaults
TENNIS_RGB = ((0.367370, 0.426884, 0.455794), (0.189776, 0.183965, 0.207775))  # mm_distill_data_module_tennis.yaml:12, :21
FLOW_BEFORE_2026_01_09 = ((0.0507, 0.4671), (10.9280, 8.6857))          # flow.yaml at 26683df; mm_distill_data_module_tennis.yaml:13, :22
FLOW_FROM_2026_01_09 = ((0.251604, 0.032037), (6.777361, 3.229428))     # flow.yaml:8-9 (0f44a40)
SKELETON = ((0.005979, 0.006135, 0.006135, 0.005963, 0.005763, 0.005998, 0.005870, 0.005277, 0.005162,
             0.004691, 0.004654, 0.005420, 0.005283, 0.005718, 0.005642, 0.005557, 0.005492),
            (0.047612, 0.048797, 0.048809, 0.047665, 0.046263, 0.047610, 0.046673, 0.042440, 0.041714,
             0.038086, 0.037877, 0.042837, 0.041829, 0.045319, 0.044798, 0.044088, 0.043690))  # skeleton.yaml:20-29

# What each stage normalises with (docs/parity_tennis_fork.md section 8).
STAGE_NORMALISATION = {
    # lit_tennis_unlabel_only_data_module.py:25-33 (RGB gets no mean, so augmentation.py:100's),
    # flow.yaml:8-9, lit_tennis_skeleton_data_module.py:22-26 with skeleton.yaml
    "pretrain": {"rgb": IMAGENET_RGB, "flow": FLOW_FROM_2026_01_09, "skeleton": SKELETON},
    # lit_tennis_unlabel_combined_mm_data_module.py:40-46 with mm_distill_data_module_tennis.yaml
    "distill": {"rgb": IMAGENET_RGB, "flow": FLOW_BEFORE_2026_01_09, "skeleton": SKELETON},
    # lit_tennis_unlabel_combined_mm_data_module.py:184-226: RGB only
    "eval": {"rgb": TENNIS_RGB},
}


@dataclasses.dataclass(frozen=True)
class ForkVideo:
    """One video of the tree: `num_frames` JPEGs 000000..F-1 and events at `events` frames."""

    name: str
    num_frames: int
    events: tuple[tuple[int, str], ...]


# `clip_a` starts at frame 0 (n_0 = n_1 = 1) and has a second event the fork's unlabelled reader
# skips; `clip_b`'s first event is 4 frames before its last frame, so a 16-frame clip runs 11
# frames past the end.
DEFAULT_VIDEOS = (
    ForkVideo("match1_100_124", 24, ((0, "near_deuce_serve_-_-_T_-_in"), (9, "far_ad_return_fh_-_CC_-_in"))),
    ForkVideo("match2_300_310", 10, ((5, "far_deuce_serve_-_-_W_-_fault"),)),
)


@dataclasses.dataclass
class ForkTree:
    root: Path
    events_json: Path
    videos: dict[str, ForkVideo]


def write_fork_tree(root: Path, videos: Sequence[ForkVideo] = DEFAULT_VIDEOS, seed: int = 0,
                    flow_first: int = 1, num_persons: int = 2) -> ForkTree:
    """Write frames, flow, skeleton pickles and an events JSON under `root`."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    entries = []
    for video in videos:
        height, width = FRAME_SIZE
        frame_dir = root / "vid_frames_224" / video.name
        frame_dir.mkdir(parents=True, exist_ok=True)
        ramp = np.linspace(0, 160, width, dtype=np.float32)[None, :, None]
        for n in range(video.num_frames):  # numbered from 000000, extract_frames.py:18, :22
            noise = rng.integers(0, 90, size=(height // 8, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)
            pixels = np.clip(ramp + noise[:height, :width] + 3 * n, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(frame_dir / f"{n:06d}.jpg", quality=90)
        flow_dir = root / "tennis_flows" / video.name
        flow_dir.mkdir(parents=True, exist_ok=True)
        for n in range(flow_first, flow_first + video.num_frames - 1):
            flow = rng.normal(0.0, 4.0, size=(2, height, width)).astype(np.float32)
            np.save(flow_dir / f"pair_{n:05d}.npy", flow)
        _write_skeleton(root / "skeletons" / "f3set-tennis" / f"{video.name}.pkl", video.num_frames, rng,
                        num_persons)
        entries.append({"fps": 25.0, "height": SOURCE_IMG_SHAPE[0], "width": SOURCE_IMG_SHAPE[1],
                        "num_frames": video.num_frames, "video": video.name, "far_name": "Far Player",
                        "far_hand": "RH", "near_name": "Near Player", "near_hand": "LH",
                        "events": [{"frame": frame, "label": label, "outcome": label.rsplit("_", 1)[-1]}
                                   for frame, label in video.events]})
    events_json = root / "unlabel.json"
    events_json.write_text(json.dumps(entries, indent=1))
    return ForkTree(root, events_json, {video.name: video for video in videos})


def _write_skeleton(path: Path, num_frames: int, rng: np.random.Generator, num_persons: int) -> None:
    source_h, source_w = SOURCE_IMG_SHAPE
    centre = np.array([[source_w * 0.45, source_h * 0.6], [source_w * 0.55, source_h * 0.25]])[:num_persons]
    xy = centre[:, None, None, :] + rng.normal(0, 60, size=(num_persons, num_frames, NUM_JOINTS, 2))
    xy[0, :, 0, 0] = 3.0  # a joint at the left edge: the heatmap and the RGB crop disagree most there
    score = rng.uniform(0.0, 1.0, size=(num_persons, num_frames, NUM_JOINTS))
    score[0, :, 1] = SCORE_THRESHOLD  # exactly at the threshold: not drawn (`> 0.1`)
    score[0, :, 2] = 0.05
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump({"frame_dir": path.stem, "total_frames": num_frames, "img_shape": SOURCE_IMG_SHAPE,
                     "original_shape": SOURCE_IMG_SHAPE, "keypoint": xy.astype(np.float32),
                     "keypoint_score": score.astype(np.float32)}, handle)


# ---- the fork's rules, written from its code ----

def fork_unlabelled_clips(events_json: Path) -> list[tuple[str, int]]:
    """(video, start frame): one clip per video at its FIRST event (tennis_unlabel_loader.py:28-49,
    `events[0]["frame"]` at :30); `far_name`/`near_name` must be present (:31-32) but are unused."""
    clips = []
    for entry in json.loads(Path(events_json).read_text()):
        entry["far_name"], entry["near_name"]  # noqa: B018  (a KeyError in the fork, :31-32)
        clips.append((entry["video"], entry["events"][0]["frame"]))
    return clips


def fork_frame_numbers(start: int, num_frames: int = 16, rate: int = 1) -> list[int]:
    """n_i = max(1, f + rate * i): tennis_unlabel_only_dataset.py:88-91, combined :192-195,
    tennis_skeleton_dataset.py:181-184, tennis_fewshot_eval_dataset.py:114-117."""
    return [max(1, start + rate * i) for i in range(num_frames)]


def _normalise(x: torch.Tensor, stats: tuple[Sequence[float], Sequence[float]]) -> torch.Tensor:
    """(x - mean) / std per channel of a [T, C, H, W] tensor (augmentation.py:228-233, :357-358, :443)."""
    mean = torch.tensor(stats[0], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(stats[1], dtype=torch.float32).view(1, -1, 1, 1)
    return (x - mean) / std


def _centre_crop_offset(size: int, target: int) -> int:
    """(size - target) // 2 when they differ, else 0 (augmentation.py:178-190; flow :61-68)."""
    return (size - target) // 2 if size != target else 0


def fork_rgb_input(root: Path, video: str, start: int, num_frames: int = 16, flip: bool = False,
                   stats=IMAGENET_RGB) -> torch.Tensor:
    """RGB `[3, T, 224, 384]`: frame file n_i, a missing one repeats the previous position's image
    (tennis_unlabel_only_dataset.py:44-48; combined :146-150); [0, 1] floats (transform.py:240-247);
    centre crop per frame (augmentation.py:162-205, x = 7 for 398 wide); one flip of the whole clip
    (:207-217, p = 0.5 drawn by the caller here); normalisation (:228-233)."""
    frames: list[np.ndarray] = []
    for n in fork_frame_numbers(start, num_frames):
        path = Path(root) / "vid_frames_224" / video / f"{n:06d}.jpg"
        if path.exists():
            with Image.open(path) as image:
                frames.append(np.asarray(image.convert("RGB")))
        elif frames:
            frames.append(frames[-1])
        else:  # the fork draws a black 224 x 224 image here (:48); no test needs it
            raise FileNotFoundError(f"{path}: the clip's first frame is missing")
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0  # [T, 3, H, W]
    top, left = _centre_crop_offset(x.shape[2], INPUT_SIZE[0]), _centre_crop_offset(x.shape[3], INPUT_SIZE[1])
    x = x[:, :, top:top + INPUT_SIZE[0], left:left + INPUT_SIZE[1]]
    if tuple(x.shape[2:]) != INPUT_SIZE:  # the fork resizes with PIL here (:195-201); not modelled
        raise ValueError(f"frames of {tuple(x.shape[2:])} are smaller than {INPUT_SIZE}")
    if flip:
        x = torch.flip(x, dims=[3])
    return _normalise(x, stats).permute(1, 0, 2, 3).contiguous()


def fork_flow_input(root: Path, video: str, start: int, num_frames: int = 16,
                    stats=FLOW_FROM_2026_01_09) -> torch.Tensor:
    """Flow `[2, T, 224, 384]`: `pair_{n_i:05d}.npy`, width centre-cropped (x = 7 for 398), or zeros
    `(2, 224, 384)` when the file is missing (tennis_unlabel_only_dataset.py:51-68; combined
    :152-164; the fork's root is a hard-coded absolute path, :52, here `root/tennis_flows`); never
    flipped; resized to 224 x 384 only when it differs (augmentation.py:404-410, a no-op here);
    normalised (:443), so a missing pair becomes -mean/std."""
    pairs = []
    for n in fork_frame_numbers(start, num_frames):
        path = Path(root) / "tennis_flows" / video / f"pair_{n:05d}.npy"
        if path.exists():
            flow = np.load(path)
            left = _centre_crop_offset(flow.shape[2], INPUT_SIZE[1])
            flow = flow[:, :, left:left + INPUT_SIZE[1]]
        else:
            flow = np.zeros((2,) + INPUT_SIZE, dtype=np.float32)
        pairs.append(torch.from_numpy(np.ascontiguousarray(flow)).float())
    x = torch.stack(pairs)  # [T, 2, H, W]
    if tuple(x.shape[2:]) != INPUT_SIZE:
        raise ValueError(f"flow of {tuple(x.shape[2:])} would be resized by the fork; not modelled")
    return _normalise(x, stats).permute(1, 0, 2, 3).contiguous()


def fork_keypoints_row(data: dict, n: int) -> np.ndarray:
    """`[V, 3]` (x / W, y / H, score) of person 0 at row clamp(n - 1) (tennis_skeleton_dataset.py
    :85-119; combined :82-112): one frame earlier than RGB file n, the last row past the end."""
    keypoint, score = data["keypoint"], data.get("keypoint_score")
    height, width = data.get("img_shape", SOURCE_IMG_SHAPE)
    row = min(max(0, int(n) - 1), int(data["total_frames"]) - 1)
    if keypoint.ndim == 4:
        xy = keypoint[0, row]
        s = score[0, row] if score is not None and score.ndim == 3 else np.ones(xy.shape[0], np.float32)
    else:
        xy = keypoint[row]
        s = score[row] if score is not None and score.ndim == 2 else np.ones(xy.shape[0], np.float32)
    xy = xy.astype(np.float32)
    return np.stack([xy[:, 0] / width, xy[:, 1] / height, s.astype(np.float32)], axis=1)


def fork_heatmap_grid(points: np.ndarray) -> np.ndarray:
    """`[V, 56, 98]`: s_k * exp(-((c - 98 u)^2 + (r - 56 v)^2) / (2 * 2^2)) on the integer grid for
    joints with s_k > 0.1, zero otherwise (tennis_skeleton_dataset.py:135-166, :200)."""
    grid_h, grid_w = HEATMAP_GRID
    rows, columns = np.arange(grid_h)[:, None], np.arange(grid_w)[None, :]
    out = np.zeros((points.shape[0], grid_h, grid_w), dtype=np.float32)
    for k, (u, v, s) in enumerate(points):
        if s > SCORE_THRESHOLD:
            d2 = (columns - u * grid_w) ** 2 + (rows - v * grid_h) ** 2
            out[k] = s * np.exp(-d2 / (2 * HEATMAP_SIGMA ** 2))
    return out


def fork_skeleton_input(root: Path, video: str, start: int, num_frames: int = 16, stats=SKELETON) -> torch.Tensor:
    """Skeleton `[17, T, 224, 384]`: person-0 heatmaps on the 56 x 98 grid over the full img_shape
    frame, bilinearly resized to 224 x 384 (align_corners False, antialias True,
    augmentation.py:421-427), no crop, no flip, per-channel normalisation (:443)."""
    with open(Path(root) / "skeletons" / "f3set-tennis" / f"{video}.pkl", "rb") as handle:
        data = pickle.load(handle)
    grids = np.stack([fork_heatmap_grid(fork_keypoints_row(data, n)) for n in fork_frame_numbers(start, num_frames)])
    x = torch.nn.functional.interpolate(torch.from_numpy(grids), size=INPUT_SIZE, mode="bilinear",
                                        align_corners=False, antialias=True)  # [T, V, 224, 384]
    return _normalise(x, stats).permute(1, 0, 2, 3).contiguous()


def fork_teacher_inputs(stage: str, root: Path, video: str, start: int, num_frames: int = 16,
                        flip: bool = False, flow_stats=None) -> dict[str, torch.Tensor]:
    """What each teacher of `stage` ('pretrain', 'distill', 'eval') is fed for one clip.

    Pretraining and distillation feed the same tensors but for the flow statistics: pretraining
    reads flow.yaml (`FLOW_FROM_2026_01_09` at a9d8a78; runs before that date had the other
    values: pass `flow_stats`), distillation mm_distill_data_module_tennis.yaml
    (`FLOW_BEFORE_2026_01_09`). Evaluation feeds RGB only, never flipped, tennis statistics.
    """
    norms = STAGE_NORMALISATION[stage]
    inputs = {"rgb": fork_rgb_input(root, video, start, num_frames, flip and stage != "eval", norms["rgb"])}
    if stage != "eval":
        inputs["flow"] = fork_flow_input(root, video, start, num_frames, flow_stats or norms["flow"])
        inputs["skeleton"] = fork_skeleton_input(root, video, start, num_frames, norms["skeleton"])
    return inputs


def parse_fork_gin(tree: "ForkTree", gin_file: str, *bindings: str) -> None:
    """Parse a shipped gin file (path from the repository root) with its data macros pointed at
    `tree` and `bindings` after them, as run.py would (every configurable registered)."""
    import gin

    from mmdistill.commands.configurables import import_configurables
    from mmdistill.config import parse_config

    import_configurables()
    gin.clear_config()
    parse_config([REPO / gin_file], [f"DATA_ROOT = '{tree.root}'", f"UNLABELED_JSON = '{tree.events_json}'",
                                     f"FEWSHOT_JSON = '{tree.events_json}'", *bindings], finalize=False)
