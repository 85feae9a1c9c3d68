"""The plain types the data modules share, in a leaf module (it imports no other mmdistill
module), so readers, transforms and the device-side decoders can all use them without a circle."""
from __future__ import annotations

import dataclasses

import numpy as np

# COCO-17 order: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles (left, right).
COCO17_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


class BadClipError(ValueError):
    """The data of one clip is missing or malformed (the dataset may skip the clip)."""


@dataclasses.dataclass
class Keypoints:
    """Keypoints of some frames: `xy` float32 (M, T, V, 2) pixel (x, y) with pixel centres at
    integers, `score` float32 (M, T, V) in [0, 1] (0 = absent), `img_shape` (H, W) of the frames
    the coordinates refer to (None: the same frames as the RGB), `flip_pairs` the (left, right)
    joint indices swapped by a horizontal flip."""

    xy: np.ndarray
    score: np.ndarray
    img_shape: tuple[int, int] | None
    flip_pairs: tuple[tuple[int, int], ...] = COCO17_FLIP_PAIRS


@dataclasses.dataclass(frozen=True)
class SpatialPlan:
    """Where one clip's frames go: resized to `resized` (H, W), then cropped to `crop` (H, W)
    at (`top`, `left`), then mirrored when `flip`."""

    resized: tuple[int, int]
    top: int
    left: int
    crop: tuple[int, int]
    flip: bool
