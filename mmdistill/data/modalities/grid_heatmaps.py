"""Skeleton heatmaps drawn on a coarse grid over the whole source frame, then upsampled: the
tennis fork's renderer, as a `skeleton_spec.heatmaps` option.

Our own renderer (mmdistill/data/heatmaps.py) draws each joint where the clip's crop and flip put
it, at the output resolution, every person. The tennis fork (Ricky513125/Tennis at a9d8a78,
datamodule/dataset/tennis_skeleton_dataset.py:79-166, :197-209 in pretraining,
tennis_unlabel_combined_multimodal_dataset.py:76-141, :235-245 in distillation) instead:
- takes person `person` (0) only, joints whose score is above `threshold` (0.1, `>`);
- divides the coordinates by the file's `img_shape` (H, W) and multiplies by the grid (56 x 98),
  so the grid spans the full source frame whatever the RGB crop;
- draws `score * exp(-((c - x)^2 + (r - y)^2) / (2 sigma^2))` on the integer grid (sigma 2 cells);
- resizes to the clip's crop size bilinearly (align_corners False, antialias True,
  datamodule/utils/augmentation.py:421-427): about sigma 8 px at 224 x 384.
No crop, no flip: they do not apply to these heatmaps (a flipped RGB clip meets unflipped
heatmaps, as in the fork when RGB is flipped).
"""
from __future__ import annotations

from typing import Sequence

import gin
import numpy as np
import torch

from mmdistill.data.clip_types import Keypoints


@gin.configurable("grid_heatmaps")
class GridHeatmaps:
    def __init__(self, grid: Sequence[int] = (56, 98), sigma: float = 2.0, threshold: float = 0.1,
                 person: int = 0):
        if len(grid) != 2 or min(int(v) for v in grid) < 1:
            raise ValueError(f"grid_heatmaps.grid must be (rows, columns) of positive sizes (the tennis fork: "
                             f"(56, 98)), got {grid!r}")
        if sigma <= 0:
            raise ValueError(f"grid_heatmaps.sigma must be positive (grid cells; the tennis fork: 2.0), got {sigma}")
        if not 0 <= threshold < 1:
            raise ValueError(f"grid_heatmaps.threshold must be in [0, 1) (joints drawn above it; the tennis "
                             f"fork: 0.1), got {threshold}")
        if isinstance(person, bool) or not isinstance(person, int) or person < 0:
            raise ValueError(f"grid_heatmaps.person must be a person index >= 0 (the tennis fork: 0), got {person!r}")
        self.grid = (int(grid[0]), int(grid[1]))
        self.sigma, self.threshold, self.person = float(sigma), float(threshold), person

    def __call__(self, keypoints: Keypoints, size: tuple[int, int], frame_size: tuple[int, int]) -> np.ndarray:
        """Keypoints in `keypoints.img_shape` pixels (else `frame_size`'s) -> float32 (V, T, *size)."""
        persons, frames, joints, _ = keypoints.xy.shape
        rows, columns = self.grid
        out = np.zeros((frames, joints, rows, columns), dtype=np.float32)
        if self.person < persons:
            height, width = keypoints.img_shape or frame_size
            x = keypoints.xy[self.person, ..., 0].astype(np.float64) / width * columns    # (T, V)
            y = keypoints.xy[self.person, ..., 1].astype(np.float64) / height * rows
            score = keypoints.score[self.person].astype(np.float64)
            d2 = ((np.arange(columns)[None, None, None, :] - x[..., None, None]) ** 2
                  + (np.arange(rows)[None, None, :, None] - y[..., None, None]) ** 2)
            maps = score[..., None, None] * np.exp(-d2 / (2 * self.sigma ** 2))
            # float32 against float32: the fork's `confidences[k] > 0.1` under numpy >= 2 (under numpy 1
            # a score of exactly float32(0.1) compared as float64 and was drawn)
            drawn = keypoints.score[self.person].astype(np.float32) > np.float32(self.threshold)
            out = np.where(drawn[..., None, None], maps, 0.0).astype(np.float32)
        resized = torch.nn.functional.interpolate(torch.from_numpy(out), size=tuple(size), mode="bilinear",
                                                  align_corners=False, antialias=True)
        return np.ascontiguousarray(resized.numpy().transpose(1, 0, 2, 3))
