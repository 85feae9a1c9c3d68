"""Keypoints -> one Gaussian heatmap per joint and frame, the skeleton teacher's input.

A 2-D Gaussian is the outer product of a row Gaussian and a column Gaussian, so every joint of
every frame is rendered at once from a few exponentials per joint instead of one per pixel.
Beyond 6 sigma a Gaussian is below exp(-18) = 1.5e-8 of its peak, so each joint only needs the
window around it: the windows of all joints and frames are computed in one array and written into
a zeroed output with one scatter per person. `render_heatmaps_per_joint`'s full-frame maps differ
from these by less than 1.5e-8 anywhere. Coordinates are pixel centres: a joint at x = 3
peaks on column 3.
"""
from __future__ import annotations

import math

import gin
import numpy as np
import torch

# exp(-d^2 / (2 sigma^2)) < 1.5e-8 once d > 6 sigma (it underflows to 0 in float32 only at
# 14.4 sigma, but a 6-sigma window is 5x less work and the difference is far below bf16/fp32
# noise); one extra pixel covers rounding the joint to the nearest pixel.
_SUPPORT_IN_SIGMAS = 6.0


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
    radius = math.ceil(_SUPPORT_IN_SIGMAS * sigma) + 1
    window_h, window_w = min(2 * radius + 1, height), min(2 * radius + 1, width)
    out = np.zeros((num_joints * num_frames, height, width), dtype=np.float32)
    if num_persons == 0:
        return out.reshape(num_joints, num_frames, height, width)
    # Joint-major order (V, T) so the output is channel-first; one row per (joint, frame).
    points = xy.transpose(0, 2, 1, 3).reshape(num_persons, -1, 2)
    weights = score.transpose(0, 2, 1).reshape(num_persons, -1, 1)
    # Window origins: centred on the joint, slid back inside the image at the borders (a joint
    # near or outside the border still gets every row/column where its Gaussian is non-zero).
    top = np.clip(np.rint(points[..., 1]).astype(np.int64) - radius, 0, height - window_h)
    left = np.clip(np.rint(points[..., 0]).astype(np.int64) - radius, 0, width - window_w)
    rows = top[..., None] + np.arange(window_h)      # (M, V*T, window_h)
    columns = left[..., None] + np.arange(window_w)  # (M, V*T, window_w)
    inv_two_var = np.float32(1.0 / (2.0 * sigma * sigma))
    gauss_y = np.exp(-np.square(rows.astype(np.float32) - points[..., 1:2]) * inv_two_var) * weights
    gauss_x = np.exp(-np.square(columns.astype(np.float32) - points[..., 0:1]) * inv_two_var)
    windows = gauss_y[..., :, None] * gauss_x[..., None, :]  # (M, V*T, window_h, window_w)
    planes = np.arange(out.shape[0])[:, None, None]
    for person in range(num_persons):
        where = (planes, rows[person][:, :, None], columns[person][:, None, :])
        values = windows[person] if person == 0 else np.maximum(windows[person], out[where])
        out[where] = values
    return out.reshape(num_joints, num_frames, height, width)


def render_heatmaps_torch(keypoints: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Batched `render_heatmaps` on the keypoints' device: (B, M, T, V, 3) rows of (x, y, score)
    -> float32 (B, V, T, H, W).

    For the GPU: a tennis-size clip's heatmaps are 94 MB of float32 (17 x 16 x 224 x 384) against
    a few kB of keypoints, so the loader ships keypoints and the batch is drawn where it is used.
    Every pixel is computed (no windows): on a GPU that is cheaper than gathering windows. It
    equals `render_heatmaps` within float32 rounding (2.5e-7 near a peak; the windows leave out
    less than 1.5e-8). Padded persons (score 0) draw nothing.
    """
    if keypoints.dim() != 5 or keypoints.shape[-1] != 3:
        raise ValueError(f"expected keypoints (B, M, T, V, 3) of (x, y, score), got {tuple(keypoints.shape)}")
    height, width = size
    batch, persons, frames, joints, _ = keypoints.shape
    points = keypoints.float().permute(0, 1, 3, 2, 4)  # (B, M, V, T, 3): joint-major, like the output
    inv_two_var = 1.0 / (2.0 * sigma * sigma)
    rows = torch.arange(height, device=keypoints.device, dtype=torch.float32)
    columns = torch.arange(width, device=keypoints.device, dtype=torch.float32)
    out = torch.zeros(batch, joints, frames, height, width, device=keypoints.device)
    for person in range(persons):
        xy_score = points[:, person]
        gauss_y = torch.exp(-(rows - xy_score[..., 1:2]).square() * inv_two_var) * xy_score[..., 2:3]
        gauss_x = torch.exp(-(columns - xy_score[..., 0:1]).square() * inv_two_var)
        torch.maximum(out, gauss_y.unsqueeze(-1) * gauss_x.unsqueeze(-2), out=out)
    return out


def render_heatmaps_per_joint(xy: np.ndarray, score: np.ndarray, size: tuple[int, int],
                              sigma: float) -> np.ndarray:
    """One full-frame `np.ogrid` Gaussian per joint, frame and person, like the tennis fork's
    `_keypoints_to_heatmap` (which draws person 0 only, joints above 0.1 confidence, at 56x98 and
    resizes). Kept only as the correctness and speed reference for `render_heatmaps`."""
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
    """Renders keypoints already moved into the crop's pixel space; `sigma` in output pixels.

    `render_on='loader'` draws each clip's heatmaps in the loader (the batch holds them);
    `'device'` leaves the batch with the moved keypoints and draws them where the batch goes
    (`mmdistill/data/device_batches.py`), which on a GPU spares the loader most of its work and memory.
    `stride`: heatmaps at 1/stride of the crop (stride 2: 32x32 for a 64x64 crop), one output
    pixel per stride x stride crop pixels, as pose estimators' output strides and MM-CDFSL's
    56 px pose input beside its 224 px RGB (its configs/data_module/modality/pose.yaml:4-5 and
    rgb.yaml:4-5); the skeleton model then reads that size with a patch
    `stride` times smaller, so its token grid is the RGB's. 17 channels make the skeleton's
    heatmaps and embedding the costliest input: stride 2 does a quarter of that work.
    """

    def __init__(self, sigma: float = 2.0, render_on: str = "loader", stride: int = 1):
        if sigma <= 0:
            raise ValueError(f"skeleton_heatmaps.sigma must be positive, got {sigma}")
        if render_on not in ("loader", "device"):
            raise ValueError(f"skeleton_heatmaps.render_on={render_on!r}: choose 'loader' or 'device'")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"skeleton_heatmaps.stride must be a whole number >= 1 (1: heatmaps at the "
                             f"crop's size), got {stride!r}")
        self.sigma = float(sigma)
        self.render_on = render_on
        self.stride = stride

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The heatmaps' (H, W) for a crop of `size`."""
        height, width = size
        if height % self.stride or width % self.stride:
            raise ValueError(f"skeleton_heatmaps.stride = {self.stride} does not divide the crop "
                             f"{height}x{width} (spatial_transform.crop_size): choose a stride that "
                             f"divides both sides")
        return height // self.stride, width // self.stride

    def _on_grid(self, xy):
        """Crop pixel coordinates -> output pixel coordinates (pixel centres: output pixel g covers
        crop pixels g * stride .. g * stride + stride - 1, centred on g * stride + (stride - 1) / 2).
        Stride 1 passes them through untouched, so its heatmaps stay bit for bit what they were."""
        return xy if self.stride == 1 else (xy + 0.5) / self.stride - 0.5

    def __call__(self, xy: np.ndarray, score: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return render_heatmaps(self._on_grid(np.asarray(xy, dtype=np.float32)), score,
                               self.output_size(size), self.sigma)

    def render_batch(self, keypoints: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.stride != 1:
            keypoints = torch.cat([self._on_grid(keypoints[..., :2].float()), keypoints[..., 2:].float()], -1)
        return render_heatmaps_torch(keypoints, self.output_size(size), self.sigma)
