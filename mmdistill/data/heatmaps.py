"""Keypoints -> one Gaussian heatmap per joint and frame, the skeleton teacher's input.

A 2-D Gaussian is the outer product of a row Gaussian and a column Gaussian, so all joints and
frames are rendered from (H + W) exponentials per joint instead of H * W: the cost is little more
than writing the output once. Coordinates are pixel centres: a joint at x = 3 peaks on column 3.
"""
from __future__ import annotations

import gin
import numpy as np

# Joints rendered at once when several persons are merged with a max: the per-person temporary
# then stays in cache (about 2x faster than one temporary of the whole clip at 16x224x384).
_JOINTS_PER_BLOCK = 2


def render_heatmaps(xy: np.ndarray, score: np.ndarray, size: tuple[int, int], sigma: float) -> np.ndarray:
    """`xy` (M, T, V, 2) pixel (x, y), `score` (M, T, V) in [0, 1] -> float32 (V, T, H, W).

    Each heatmap is `score * exp(-d^2 / (2 sigma^2))`, the maximum over persons. A joint with
    score 0 contributes nothing wherever its coordinates are.
    """
    xy = np.asarray(xy, dtype=np.float32)
    score = np.asarray(score, dtype=np.float32)
    if xy.ndim != 4 or xy.shape[-1] != 2 or score.shape != xy.shape[:3]:
        raise ValueError(f"expected xy (M, T, V, 2) and score (M, T, V), got {xy.shape} and {score.shape}")
    height, width = size
    num_persons, num_frames, num_joints, _ = xy.shape
    inv_two_var = np.float32(1.0 / (2.0 * sigma * sigma))
    columns = np.arange(width, dtype=np.float32)
    rows = np.arange(height, dtype=np.float32)
    # (M, V, T, W) and (M, V, T, H): joints first so the output is channel-major.
    gauss_x = np.exp(-np.square(columns - xy[..., 0:1]) * inv_two_var).transpose(0, 2, 1, 3)
    gauss_y = (np.exp(-np.square(rows - xy[..., 1:2]) * inv_two_var) * score[..., None]).transpose(0, 2, 1, 3)
    out = np.empty((num_joints, num_frames, height, width), dtype=np.float32)
    if num_persons == 0:
        out.fill(0.0)
        return out
    np.multiply(gauss_y[0][..., :, None], gauss_x[0][..., None, :], out=out)
    if num_persons > 1:
        scratch = np.empty((_JOINTS_PER_BLOCK, num_frames, height, width), dtype=np.float32)
        for first in range(0, num_joints, _JOINTS_PER_BLOCK):
            block = slice(first, first + _JOINTS_PER_BLOCK)
            target = out[block]
            temp = scratch[: target.shape[0]]
            for person in range(1, num_persons):
                np.multiply(gauss_y[person][block, :, :, None], gauss_x[person][block, :, None, :], out=temp)
                np.maximum(target, temp, out=target)
    return out


def render_heatmaps_per_joint(xy: np.ndarray, score: np.ndarray, size: tuple[int, int],
                              sigma: float) -> np.ndarray:
    """The original project's renderer: one full-frame `np.ogrid` Gaussian per joint, frame and
    person. Kept only as the correctness and speed reference for `render_heatmaps`."""
    height, width = size
    num_persons, num_frames, num_joints, _ = xy.shape
    out = np.zeros((num_joints, num_frames, height, width), dtype=np.float32)
    for person in range(num_persons):
        for frame in range(num_frames):
            for joint in range(num_joints):
                y, x = np.ogrid[0:height, 0:width]
                cx, cy = xy[person, frame, joint]
                gauss = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2)) * score[person, frame, joint]
                out[joint, frame] = np.maximum(out[joint, frame], gauss)
    return out


@gin.configurable("skeleton_heatmaps")
class HeatmapRenderer:
    """Renders keypoints already moved into the crop's pixel space; `sigma` in output pixels."""

    def __init__(self, sigma: float = 2.0):
        if sigma <= 0:
            raise ValueError(f"skeleton_heatmaps.sigma must be positive, got {sigma}")
        self.sigma = float(sigma)

    def __call__(self, xy: np.ndarray, score: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return render_heatmaps(xy, score, size, self.sigma)
