"""Tiny data trees in MM-CDFSL's four layouts, and reference functions for the tensors its readers
feed each model, for parity tests.

Everything here is written from masashi-hatano/MM-CDFSL at commit c21d686 (file:line in the
comments; docs/parity_mmcdfsl.md has the reading notes and their abbreviations: MMDS = the
distillation dataset, S1DS = the stage-1 dataset, AUG = datamodule/utils/augmentation.py, TR =
datamodule/utils/transform.py, CFG = configs/data_module/mm_distill_data_module.yaml). None of it
is its code: the formulas are restated from the reading.

A tree has RGB JPEGs for every frame of each video, flow (224, 224, 2) and hand-pose (56, 56, 21)
float32 `.npy` files only for the frames its lists sample (sparse, as its released data), one
flow file deliberately missing, a clip running past its video's end, and its annotation lists
under their released names and formats. File contents are a function of (video, frame), so a
test can tell which file a reader used.
"""
from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

DATASETS = ("ego4d", "epic", "meccano", "wear")
NUM_FRAMES = 16                                            # CFG:42
RATES = {"ego4d": 4, "epic": 8, "meccano": 1, "wear": 8}  # CFG:40; configs/data_module/dataset/*.yaml:7
FLOW_SHAPE, POSE_SHAPE = (224, 224, 2), (56, 56, 21)      # CFG:29-34 (input 224/224/56, 2 and 21 channels)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # CFG:12, 21
FLOW_MEAN, FLOW_STD = (0.0507, 0.4671), (10.9280, 8.6857)                   # CFG:13, 22
POSE_MEAN, POSE_STD = (0.3,) * 21, (0.3,) * 21                              # CFG:14-18, 23-27
SIZE = 224                                                  # AUG:96 (RandomResizedCrop), AUG:33 (few-shot resize)
MASK_GRID = (NUM_FRAMES // 2, 224 // 16, 224 // 16)         # AUG:74-78: one grid for every modality

# Data roots as DATA_STRUCTURE.md names them (Ego4D: CFG:38).
ROOTS = {"ego4d": "ego4d_data/v1", "epic": "EPIC-KITCHENS-55", "meccano": "MECCANO", "wear": "WEAR"}


# --------------------------------------------------------------------------- paths

def rgb_path(dataset: str, video: str, frame: int) -> str:
    """Relative to the data root. Ego4D S1DS:66, 83; EPIC epic_unlabel_loader.py:34-39, 46-47;
    MECCANO meccano_unlabel_loader.py:28-32, 40-41; WEAR wear_unlabel_loader.py:27-31, 39-40."""
    return {"ego4d": f"image_frame/{video}/{frame:06d}.jpg",
            "epic": f"frames/rgb/train/{video}/frame_{frame:010d}.jpg",
            "meccano": f"RGB_frames/{video}/{frame:05d}.jpg",
            "wear": f"RGB_frames/{video}/{frame:06d}.jpg"}[dataset]


def flow_path(dataset: str, video: str, frame: int) -> str:
    """The layout DATA_STRUCTURE.md shows: Ego4D S1DS:89-93; EPIC MMDS:119-122; MECCANO and WEAR
    S1DS:118-122 (`RGB` -> `flow`, so `flow_frames/`)."""
    return {"ego4d": f"optical_flow/{video}/npy/{frame:06d}.npy",
            "epic": f"frames/flow/train/{video}/frame_{frame:010d}.npy",
            "meccano": f"flow_frames/{video}/{frame:05d}.npy",
            "wear": f"flow_frames/{video}/{frame:06d}.npy"}[dataset]


def pose_path(dataset: str, video: str, frame: int) -> str:
    """Ego4D S1DS:97-101; EPIC MMDS:128-131; MECCANO and WEAR S1DS:128-131."""
    return {"ego4d": f"hand-pose/heatmap/{video}/{frame:06d}.npy",
            "epic": f"frames/pose/train/{video}/frame_{frame:010d}.npy",
            "meccano": f"hand-pose/heatmap/{video}/{frame:05d}.npy",
            "wear": f"hand-pose/heatmap/{video}/{frame:06d}.npy"}[dataset]


def reader_paths(dataset: str, reader: str, root: Path, video: str) -> dict[str, Callable[[int], Path]]:
    """Where each of MM-CDFSL's readers looks, as its code derives it: the flow and pose folders are
    the RGB folder with a string replaced in the WHOLE path (root included), and the replace differs
    by reader ('stage1', 'distill', 'fewshot'; docs/parity_mmcdfsl.md section 2)."""
    rgb_dir = str(Path(root) / rgb_path(dataset, video, 1)).rsplit("/", 1)[0]
    name = {"ego4d": "{:06d}.jpg", "epic": "frame_{:010d}.jpg", "meccano": "{:05d}.jpg",
            "wear": "{:06d}.jpg"}[dataset]
    npy = name.replace("jpg", "npy")
    if dataset == "ego4d":  # source frames: stage 1 only (S1DS:81-107; MMDS:82-107 is never called)
        if reader != "stage1":
            raise ValueError("MM-CDFSL reads Ego4D frames in stage 1 only")
        flow_dir = rgb_dir.replace("image_frame", "optical_flow") + "/npy"       # S1DS:89-93
        pose_dir = rgb_dir.replace("image_frame", "hand-pose/heatmap")           # S1DS:97-101
    elif reader == "stage1":                                                     # S1DS:109-140
        flow_dir = rgb_dir.replace("RGB", "flow")
        pose_dir = rgb_dir.replace("RGB_frames", "hand-pose/heatmap")
    elif reader == "distill":                                                    # MMDS:109-138
        flow_dir, pose_dir = rgb_dir.replace("rgb", "flow"), rgb_dir.replace("rgb", "pose")
    elif reader == "fewshot" and dataset == "epic":                              # epic_fewshot_eval_dataset.py:64-85
        flow_dir, pose_dir = rgb_dir.replace("rgb", "flow"), rgb_dir.replace("rgb", "pose")
    elif reader == "fewshot":                     # meccano_fewshot_eval_dataset.py:55-78, wear :55-78
        flow_dir = rgb_dir.replace("RGB", "flow")
        pose_dir = rgb_dir.replace("RGB_frames", "hand-pose/heatmap")
    else:
        raise ValueError(f"reader {reader!r}")
    return {"rgb": lambda n: Path(rgb_dir, name.format(n)),
            "flow": lambda n: Path(flow_dir, npy.format(n)),
            "pose": lambda n: Path(pose_dir, npy.format(n))}


# --------------------------------------------------------------------------- frame rule

def frame_numbers(start: int, rate: int, num_frames: int = NUM_FRAMES) -> list[int]:
    """max(1, start + rate * i), no clamp at the end (MMDS:157-160, S1DS:153-160,
    epic_fewshot_eval_dataset.py:88-91, meccano/wear_fewshot_eval_dataset.py:81-84)."""
    return [max(1, start + rate * i) for i in range(num_frames)]


def files_used(path_of: Callable[[int], Path], numbers: list[int]) -> list[int]:
    """The file number each position reads: a missing file repeats the previous position's
    (`frames[-1]`, e.g. MMDS:114-117, 124-127, 134-137); a missing first file is an IndexError
    there (an empty list), and here."""
    used: list[int] = []
    for number in numbers:
        if path_of(number).exists():
            used.append(number)
        else:
            used.append(used[-1])  # IndexError on the first, as in its code
    return used


def reference_files(dataset: str, reader: str, root: Path, video: str, start: int) -> dict[str, list[int]]:
    """Per modality, the file numbers MM-CDFSL reads for a clip (each modality on its own)."""
    numbers = frame_numbers(start, RATES[dataset])
    return {modality: files_used(path_of, numbers)
            for modality, path_of in reader_paths(dataset, reader, root, video).items()}


# --------------------------------------------------------------------------- transforms

def rgb_train_reference(images: list[Image.Image], crop: tuple[int, int, int, int], flip: bool) -> torch.Tensor:
    """Distillation / stage-1 RGB (AUG:115-123, MMDS:185-186): per-frame PIL -> [0, 1] (TR:240-247,
    torchvision ToTensor), stacked (T, 3, H, W); one RandomResizedCrop box (top, left, height, width)
    for the whole clip, resized to 224 x 224 bilinear on the tensor, without antialiasing (the
    torchvision 0.16 of its requirements.txt); one flip draw; ImageNet normalisation; (3, T, 224, 224)."""
    clip = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB"), np.float32) / 255.0).permute(2, 0, 1)
                        for im in images])
    top, left, height, width = crop
    clip = F.interpolate(clip[:, :, top:top + height, left:left + width], size=(SIZE, SIZE),
                         mode="bilinear", align_corners=False, antialias=False)
    if flip:
        clip = clip.flip(-1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((clip - mean) / std).permute(1, 0, 2, 3)


def rgb_fewshot_reference(images: list[Image.Image]) -> torch.Tensor:
    """Few-shot RGB (AUG:17-37 with multi_scale_crop=False, MMDM:39-41): PIL resize to (224, 224)
    bilinear, aspect not kept (TR:84-98); channels concatenated (TR:193-211); /255 (TR:214-237);
    mean/std repeated over the frames' channels (TR:49-72); viewed (T, 3, ...) and transposed to
    (3, T, 224, 224) (epic_fewshot_eval_dataset.py:98-102)."""
    stacked = np.concatenate([np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))
                              for im in images], axis=2)
    tensor = torch.from_numpy(stacked).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN * len(images)).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD * len(images)).view(-1, 1, 1)
    tensor = (tensor - mean) / std
    return tensor.view(len(images), 3, SIZE, SIZE).transpose(0, 1)


def array_reference(arrays: list[np.ndarray], mean, std) -> torch.Tensor:
    """Flow and pose (AUG:182-188, MMDS:188-192): channel-last arrays to (C, H, W) with no rescale
    and no resize, crop or flip (TR:240-247), stacked, normalised per channel, (C, T, H, W)."""
    clip = torch.stack([torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) for a in arrays])
    mean = torch.tensor(mean, dtype=clip.dtype).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=clip.dtype).view(1, -1, 1, 1)
    return ((clip - mean) / std).permute(1, 0, 2, 3)


def reference_clip(dataset: str, reader: str, root: Path, video: str, start: int, *,
                   crop: tuple[int, int, int, int] | None = None, flip: bool = False) -> dict[str, torch.Tensor]:
    """The tensors entering each model for one clip: RGB by the training pipeline when `crop` is
    given, else by the few-shot one; flow and pose only normalised."""
    used = reference_files(dataset, reader, root, video, start)
    paths = reader_paths(dataset, reader, root, video)
    images = [Image.open(paths["rgb"](n)) for n in used["rgb"]]
    rgb = rgb_fewshot_reference(images) if crop is None else rgb_train_reference(images, crop, flip)
    return {"rgb": rgb,
            "flow": array_reference([np.load(paths["flow"](n)) for n in used["flow"]], FLOW_MEAN, FLOW_STD),
            "pose": array_reference([np.load(paths["pose"](n)) for n in used["pose"]], POSE_MEAN, POSE_STD)}


# --------------------------------------------------------------------------- contents

def _rng(kind: str, video: str, frame: int) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{kind}:{video}:{frame}".encode()))


def rgb_image(video: str, frame: int, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3): smooth ramps shifted by the frame (JPEG keeps them close), plus a
    per-video tint, so frames and videos differ."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width]
    tint = zlib.crc32(video.encode()) % 64
    image = np.stack([(x * 4 + frame * 5) % 256, (y * 6 + frame * 3 + tint) % 256,
                      np.full_like(x, (frame * 17 + tint) % 256)], axis=-1)
    return image.astype(np.uint8)


def flow_array(video: str, frame: int) -> np.ndarray:
    return (_rng("flow", video, frame).normal(0, 1, FLOW_SHAPE) * FLOW_STD + FLOW_MEAN).astype(np.float32)


def pose_array(video: str, frame: int) -> np.ndarray:
    return _rng("pose", video, frame).uniform(0, 1, POSE_SHAPE).astype(np.float32)


# --------------------------------------------------------------------------- trees

@dataclasses.dataclass(frozen=True)
class ListSpec:
    """One annotation list: its path under the base folder, split, entries (released fields)."""
    path: str
    split: str
    entries: tuple[dict, ...]
    num_actions: int | None = None


def _header(name: str, split: str, num_actions: int | None) -> dict:
    head = {"version": 1.0, "date": 231020, "description": f"{name} Cross-domain Few-shot Learning "
            "for Action Recognition Annotations (tiny test tree)", "split": split}
    if num_actions is not None:
        head["num_actions"] = num_actions
    return head


# Per dataset: video -> (frame count, (H, W)); the lists; the one flow file left out.
# Starts marked "near end" run past the video's last frame.
TREES = {
    "ego4d": dict(videos={"clip-a": (80, (36, 48)), "clip-b": (40, (36, 48))}, missing_flow=("clip-a", 13), lists=(
        ListSpec("cdfsl/source/ego4d/annotations/ego4d_train.json", "train", (
            {"uid": "vid-a_0000005", "video_id": "vid-a", "frame": 5, "clip_id": 1, "clip_uid": "clip-a",
             "clip_frame": 5, "verb": "take", "noun": "cup", "verb_label": 3, "noun_label": 7,
             "box": [1.0, 2.0, 3.0, 4.0], "time_to_contact": 0.5},
            {"uid": "vid-b_0000030", "video_id": "vid-b", "frame": 30, "clip_id": 2, "clip_uid": "clip-b",
             "clip_frame": 30, "verb": "take", "noun": "lid", "verb_label": 3, "noun_label": 8,
             "box": [1.0, 2.0, 3.0, 4.0], "time_to_contact": 0.2})),)),  # near end: 30..90 of 40
    "epic": dict(videos={"P01/P01_01": (150, (32, 56)), "P01/P01_02": (130, (32, 56))},
                 missing_flow=("P01/P01_01", 19), lists=(
        ListSpec("cdfsl/target/epic/annotations/epic-55_unlabel.json", "train (unlabel)", (
            {"uid": "1", "participant_id": "P01", "video_id": "P01_01", "start_timestamp": "00:00:00.05",
             "stop_timestamp": "00:00:02.00", "start_frame": "3", "stop_frame": "120"},
            {"uid": "2", "participant_id": "P01", "video_id": "P01_01", "start_timestamp": "00:00:01.67",
             "stop_timestamp": "00:00:02.50", "start_frame": "100", "stop_frame": "150"})),  # near end
        # epic-55_val.json is not in the snapshot read; fields from its reader (epic_fewshot_eval_dataset.py:34-60)
        ListSpec("cdfsl/target/epic/annotations/epic-55_val.json", "val", (
            {"uid": "7", "participant_id": "P01", "video_id": "P01_02", "start_frame": "1", "stop_frame": "60",
             "verb_label": 2, "noun_label": 5, "action_idx": 0},
            {"uid": "8", "participant_id": "P01", "video_id": "P01_01", "start_frame": "12", "stop_frame": "90",
             "verb_label": 4, "noun_label": 1, "action_idx": 1}), num_actions=2))),
    "meccano": dict(videos={"0001": (30, (40, 40)), "0002": (24, (40, 40))}, missing_flow=("0001", 4), lists=(
        ListSpec("cdfsl/target/meccano/annotations/meccano_unlabel.json", "train (unlabel)", (
            {"video_id": "0001", "start_frame": 2, "end_frame": 9},
            {"video_id": "0001", "start_frame": 20, "end_frame": 28})),  # near end: 20..35 of 30
        ListSpec("cdfsl/target/meccano/annotations/meccano_val.json", "val", (
            {"video_id": "0002", "action_id": 3, "action_name": "take_screw", "start_frame": 1,
             "end_frame": 12, "action_id_internal": 0},
            {"video_id": "0001", "action_id": 0, "action_name": "check_booklet", "start_frame": 5,
             "end_frame": 20, "action_id_internal": 1}), num_actions=2))),
    "wear": dict(videos={"sbj_0": (140, (30, 54)), "sbj_1": (130, (30, 54))}, missing_flow=("sbj_0", 9), lists=(
        ListSpec("cdfsl/target/wear/annotations/wear_unlabel.json", "train (unlabel)", (
            {"video_id": "sbj_0", "start_frame": 1},
            {"video_id": "sbj_0", "start_frame": 100})),  # near end: 100..220 of 140
        ListSpec("cdfsl/target/wear/annotations/wear_val.json", "val", (
            {"video_id": "sbj_1", "label": "jogging", "label_id": 0, "start_frame": 3, "label_id_internal": 0},
            {"video_id": "sbj_0", "label": "push-ups", "label_id": 4, "start_frame": 17,
             "label_id_internal": 1}), num_actions=2))),
}


def entry_clip(dataset: str, entry: dict) -> tuple[str, int]:
    """(video folder id, start frame) of a list entry, as its readers take them."""
    if dataset == "ego4d":
        return entry["clip_uid"], int(entry["clip_frame"])
    if dataset == "epic":
        return f"{entry['participant_id']}/{entry['video_id']}", int(entry["start_frame"])
    return entry["video_id"], int(entry["start_frame"])


@dataclasses.dataclass
class Tree:
    dataset: str
    root: Path                      # the data root (target_data_dir / source_data_dir)
    lists: dict[str, Path]          # released file name -> path
    clips: list[tuple[str, int]]    # (video, start) of every list entry
    missing_flow: tuple[str, int]


def make_tree(base: Path, dataset: str) -> Tree:
    """Write the tiny tree of `dataset` under `base` (data in base/<its root name>, lists in
    base/cdfsl/...). MM-CDFSL derives flow/pose folders by replacing 'rgb'/'RGB' in the whole path,
    so a base path holding either would be misread by its readers and by the references here."""
    if "rgb" in str(base).lower():
        raise ValueError(f"{base}: a base folder whose path holds 'rgb' breaks MM-CDFSL's path replace")
    spec = TREES[dataset]
    root = Path(base) / ROOTS[dataset]
    clips = [entry_clip(dataset, entry) for lst in spec["lists"] for entry in lst.entries]
    for video, (count, size) in spec["videos"].items():
        for frame in range(1, count + 1):
            path = root / rgb_path(dataset, video, frame)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb_image(video, frame, size)).save(path, quality=95)
    sampled = {(video, n) for video, start in clips for n in frame_numbers(start, RATES[dataset])
               if n <= spec["videos"][video][0]}
    for video, frame in sorted(sampled):
        for path_of, content in ((flow_path, flow_array), (pose_path, pose_array)):
            if path_of is flow_path and (video, frame) == spec["missing_flow"]:
                continue
            path = root / path_of(dataset, video, frame)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, content(video, frame))
    lists = {}
    for lst in spec["lists"]:
        path = Path(base) / lst.path
        path.parent.mkdir(parents=True, exist_ok=True)
        name = {"ego4d": "Ego4d", "epic": "EPIC-55", "meccano": "MECCANO", "wear": "WEAR"}[dataset]
        path.write_text(json.dumps({**_header(name, lst.split, lst.num_actions), "clips": list(lst.entries)},
                                   indent=4))
        lists[path.name] = path
    return Tree(dataset, root, lists, clips, spec["missing_flow"])
