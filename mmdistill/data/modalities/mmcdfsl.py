"""MM-CDFSL's three modalities as specs: each with its own spatial rule, none aligned to another.

What masashi-hatano/MM-CDFSL (read at c21d686; docs/parity_mmcdfsl.md section 5) feeds its models:
- RGB, training (stage 1 and distillation): one RandomResizedCrop(224) box for the whole clip
  (scale 0.08-1, ratio 3/4-4/3, bilinear on the [0, 1] tensor without antialiasing, torchvision
  0.16) and one horizontal flip draw (p 0.5); evaluation (few-shot): every frame squashed to
  224 x 224 (PIL bilinear, aspect not kept). ImageNet statistics. datamodule/utils/augmentation.py:
  17-37 and 115-123.
- flow and hand pose: the files' arrays as they are (no resize, crop or flip), only normalised
  (flow mean (0.0507, 0.4671), std (10.928, 8.6857); pose 0.3 / 0.3 per channel;
  configs/data_module/mm_distill_data_module.yaml:11-28), augmentation.py:182-188.
So the student's crop is not the teachers' view; the clip's shared `SpatialPlan` is not used
(`uses_plan = False`). The mask grid comes from the model (stages), so it is 8 x 14 x 14 for a
224 px / patch 16 model and a 56 px / patch 4 pose model alike, whatever the frames' size.

A gin file selects them with
    modality_specs.extra = {'rgb': @mmcdfsl_rgb_spec(), 'flow': @mmcdfsl_flow_spec(),
                            'pose': @mmcdfsl_pose_spec()}
and each reader's template (`mmcdfsl_rgb_frames.template`, `mmcdfsl_flow_frames.template`,
`mmcdfsl_pose_frames.template`), with `temporal_sampling.past_end = 'keep'` for its frame rule.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import gin
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mmdistill.data.mmcdfsl_sources import MmcdfslFlowFrames, MmcdfslPoseFrames, RepeatingImageFrames
from mmdistill.data.modalities.base import ModalitySpec
from mmdistill.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SpatialPlan

FLOW_MEAN, FLOW_STD = (0.0507, 0.4671), (10.9280, 8.6857)
POSE_MEAN, POSE_STD = (0.3,) * 21, (0.3,) * 21
CACHE_REFUSAL = "the MM-CDFSL specs (they read the files every time)"


def random_resized_crop_box(rng: np.random.Generator, height: int, width: int,
                            scale: Sequence[float], ratio: Sequence[float]) -> tuple[int, int, int, int]:
    """(top, left, h, w) drawn as torchvision's RandomResizedCrop draws it: up to 10 tries of an
    area fraction uniform in `scale` and a log-uniform aspect in `ratio`, rounded, placed
    uniformly where it fits; else the whole frame cut to the nearest allowed aspect, centred."""
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_low, log_high))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    frame_ratio = width / height
    if frame_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif frame_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class _Unplanned(ModalitySpec):
    """Specs with their own spatial rule: no frame size for the shared plan, no clip cache."""

    uses_plan = False

    def frame_size(self, data: Any) -> None:
        return None

    def describe(self, data: Any) -> str:
        height, width = np.asarray(data).shape[1:3]
        return f"{width}x{height}"

    def cache_refusal(self, reader: Any) -> str | None:
        return CACHE_REFUSAL


class MmcdfslRgbSpec(_Unplanned):
    """RGB: RandomResizedCrop + flip when training, squash resize when evaluating (module doc)."""

    kind = "image"
    plan_rank = 0
    lambda_ce = 0.05  # configs/trainer/modality/rgb.yaml, as the built-in RGB spec

    def __init__(self, name: str = "rgb", size: int = 224, scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), flip_prob: float = 0.5):
        self.name = name
        self.size = int(size)
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.flip_prob = float(flip_prob)
        self.normalization = (IMAGENET_MEAN, IMAGENET_STD, 1.0)  # on [0, 1] values

    def default_reader(self, folder_layout: bool) -> Any:
        return RepeatingImageFrames()

    def channels(self, reader: Any) -> int:
        return 3

    def crop_box(self, rng: np.random.Generator, height: int, width: int) -> tuple[int, int, int, int]:
        return random_resized_crop_box(rng, height, width, self.scale, self.ratio)

    def to_item(self, name: str, data: np.ndarray, plan: SpatialPlan | None, reference_size: Any,
                dataset: Any, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if dataset.train:
            clip = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).float() / 255.0
            top, left, h, w = self.crop_box(rng, clip.shape[2], clip.shape[3])
            clip = F.interpolate(clip[:, :, top:top + h, left:left + w], size=(self.size, self.size),
                                 mode="bilinear", align_corners=False, antialias=False)
            if rng.random() < self.flip_prob:
                clip = clip.flip(-1)
            array = clip.permute(1, 0, 2, 3).contiguous().numpy()
        else:
            frames = [np.asarray(Image.fromarray(frame).resize((self.size, self.size), Image.BILINEAR))
                      for frame in data]
            array = np.stack(frames).transpose(3, 0, 1, 2).astype(np.float32) / np.float32(255.0)
            array = np.ascontiguousarray(array)
        return {name: torch.from_numpy(dataset.normalize[name](array))}

    def tiles(self, array: np.ndarray, shown: np.ndarray, background: np.ndarray | None):
        rgb = np.clip(array * 255.0, 0, 255).astype(np.uint8)  # normalisation inverted to [0, 1]
        return [rgb[:, t].transpose(1, 2, 0) for t in shown], rgb


class ChannelLastArraySpec(_Unplanned):
    """Per-frame channel-last arrays (T, H, W, C) -> (C, T, H, W), normalised, nothing else."""

    kind = "array"
    plan_rank = 4

    def __init__(self, name: str, reader_type: type, mean: Sequence[float], std: Sequence[float],
                 lambda_ce: float | None = None):
        self.name = name
        self.reader_type = reader_type
        self.normalization = (tuple(mean), tuple(std), 1.0)
        self.lambda_ce = lambda_ce

    def default_reader(self, folder_layout: bool) -> Any:
        return self.reader_type()

    def channels(self, reader: Any) -> int:
        return int(reader.shape[-1])

    def to_item(self, name: str, data: np.ndarray, plan: SpatialPlan | None, reference_size: Any,
                dataset: Any, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        array = np.ascontiguousarray(np.asarray(data, dtype=np.float32).transpose(3, 0, 1, 2))
        return {name: torch.from_numpy(dataset.normalize[name](array))}


@gin.configurable("mmcdfsl_rgb_spec")
def mmcdfsl_rgb_spec(size: int = 224, scale: Sequence[float] = (0.08, 1.0),
                     ratio: Sequence[float] = (3 / 4, 4 / 3), flip_prob: float = 0.5) -> MmcdfslRgbSpec:
    return MmcdfslRgbSpec("rgb", size, scale, ratio, flip_prob)


@gin.configurable("mmcdfsl_flow_spec")
def mmcdfsl_flow_spec() -> ChannelLastArraySpec:
    # lambda_ce 0.01: configs/trainer/modality/flow.yaml (and pose.yaml), as the built-in specs
    return ChannelLastArraySpec("flow", MmcdfslFlowFrames, FLOW_MEAN, FLOW_STD, lambda_ce=0.01)


@gin.configurable("mmcdfsl_pose_spec")
def mmcdfsl_pose_spec() -> ChannelLastArraySpec:
    return ChannelLastArraySpec("pose", MmcdfslPoseFrames, POSE_MEAN, POSE_STD, lambda_ce=0.01)
