"""Skeleton: keypoints drawn as one Gaussian heatmap per joint, the skeleton teacher's input.

Read as `Keypoints` (`skeleton_pickle`: .pkl/.npz/.npy per video), in the pixels of the frames
the estimator saw (`img_shape`, else the RGB's). Moved into the crop's pixel space by the clip's
plan (a flip mirrors x and swaps left/right joints, `flip_pairs`), then drawn as `num_joints`
heatmaps (`skeleton_heatmaps`). Travels in a batch as the float `skeleton`, or, with
`skeleton_heatmaps.render_on='device'`, as `skeleton_keypoints` float32 (M, T, V, 3) rows of
(x, y, score) in crop pixels (a batch pads M with score-0 persons), drawn on the device.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmdistill.data.colours import overlay_heatmaps
from mmdistill.data.modalities.base import ModalitySpec
from mmdistill.data.skeleton_source import SkeletonSource
from mmdistill.data.sources import Keypoints
from mmdistill.data.transforms import SpatialPlan, apply_to_keypoints

KEYPOINTS_SUFFIX = "_keypoints"


class SkeletonSpec(ModalitySpec):
    kind = "keypoints"
    normalization = ((0.0,), (1.0,), 1.0)
    plan_rank = 2
    travel_suffixes = (KEYPOINTS_SUFFIX,)
    size_what = "skeleton img_shape"
    lambda_ce = 0.01  # MM-CDFSL's configs/trainer/modality/pose.yaml (its pose is our skeleton)
    size_fix = ("img_shape must be the size of the frames the keypoints were detected on: correct it in "
                "the skeleton file, or detect them on these frames (python -m mmdistill.prepare skeleton "
                "--data ROOT)")

    def __init__(self, name: str = "skeleton"):
        self.name = name

    def default_reader(self, folder_layout: bool) -> Any:
        return SkeletonSource()

    def channels(self, reader: Any) -> int:
        return reader.num_joints

    def frame_size(self, data: Keypoints) -> tuple[int, int] | None:
        return tuple(data.img_shape) if data.img_shape is not None else None

    def describe(self, data: Keypoints) -> str:
        shape = data.img_shape or "RGB size"
        shape = f"{shape[1]}x{shape[0]}" if isinstance(shape, tuple) else shape
        return f"{shape}, {data.xy.shape[0]} person(s)"

    def to_item(self, name: str, data: Keypoints, plan: SpatialPlan, reference_size: tuple[int, int],
                dataset: Any, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        moved = apply_to_keypoints(data, plan, reference_size)
        if dataset.heatmaps.render_on == "device":  # drawn by `finish`
            return {name + KEYPOINTS_SUFFIX: torch.from_numpy(np.concatenate(
                [moved.xy, moved.score[..., None]], axis=-1).astype(np.float32))}
        array = dataset.heatmaps(moved.xy, moved.score, plan.crop)
        return {name: torch.from_numpy(dataset.normalize[name](array))}

    def finish(self, name: str, batch: dict, dataset: Any) -> None:
        keypoints = batch.pop(name + KEYPOINTS_SUFFIX, None)
        if keypoints is not None:
            heatmaps = dataset.heatmaps.render_batch(keypoints, dataset.spatial.crop_size)
            batch[name] = dataset.normalize[name].apply_to_batch(heatmaps)

    def pad(self, items: list[dict]) -> list[dict]:
        """Keypoint tensors padded to the batch's largest person count (padded persons: score 0)."""
        keys = [key for key in (items[0] if items else {}) if key.endswith(KEYPOINTS_SUFFIX)]
        for key in keys:
            most = max(item[key].shape[0] for item in items)
            items = [item if item[key].shape[0] == most else {**item, key: torch.cat(
                         [item[key], item[key].new_zeros((most - item[key].shape[0],) + item[key].shape[1:])])}
                     for item in items]
        return items

    def cache_store(self, name: str, data: Keypoints, whole: SpatialPlan, folder: Path, cache: Any,
                    video: str, reference: tuple[int, int]) -> dict:
        np.save(folder / f"{name}_xy.npy", data.xy.astype(np.float32))
        np.save(folder / f"{name}_score.npy", data.score.astype(np.float32))
        return {"img_shape": list(data.img_shape or reference), "flip_pairs": [list(p) for p in data.flip_pairs]}

    def cache_load(self, name: str, entry: Any, info: dict, indices: np.ndarray, quantised: bool) -> Keypoints:
        xy = entry.array(f"{name}_xy.npy")
        score = entry.array(f"{name}_score.npy")
        pairs = tuple(tuple(pair) for pair in info["flip_pairs"])
        return Keypoints(np.array(xy[:, indices]), np.array(score[:, indices]), tuple(info["img_shape"]), pairs)

    def tiles(self, array: np.ndarray, shown: np.ndarray, background: np.ndarray | None
              ) -> tuple[list[np.ndarray], np.ndarray | None]:
        base = background if background is not None else np.zeros((3,) + array.shape[1:], np.uint8)
        return [overlay_heatmaps(base[:, t].transpose(1, 2, 0), array[:, t]) for t in shown], background


SKELETON = SkeletonSpec()
