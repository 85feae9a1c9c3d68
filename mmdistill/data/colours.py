"""Colourings of non-RGB modalities for pictures: flow as hue and saturation, heatmaps over RGB."""
from __future__ import annotations

import cv2
import numpy as np


def flow_to_colour(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """(2, H, W) flow -> uint8 (H, W, 3): direction as hue, speed as saturation (white = still)."""
    dx, dy = flow[0].astype(np.float32), flow[1].astype(np.float32)
    magnitude, angle = cv2.cartToPolar(dx, dy, angleInDegrees=True)
    scale = max_magnitude or max(float(magnitude.max()), 1e-6)
    hsv = np.empty(dx.shape + (3,), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8)  # OpenCV hue runs 0..179
    hsv[..., 1] = np.clip(magnitude / scale * 255, 0, 255).astype(np.uint8)
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def overlay_heatmaps(rgb: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) picture + (V, h, w) heatmaps in [0, 1] -> joints drawn in their own colours
    (heatmaps drawn at a stride are scaled up to the picture first)."""
    num_joints = heatmaps.shape[0]
    if heatmaps.shape[1:] != rgb.shape[:2]:
        scaled = cv2.resize(np.ascontiguousarray(heatmaps.transpose(1, 2, 0), dtype=np.float32),
                            rgb.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        heatmaps = scaled.reshape(scaled.shape[:2] + (-1,)).transpose(2, 0, 1)  # one joint: (H, W)
    hues = np.linspace(0, 179, num_joints, endpoint=False).astype(np.uint8)
    palette = cv2.cvtColor(np.stack([hues, np.full_like(hues, 255), np.full_like(hues, 255)], -1)[None],
                           cv2.COLOR_HSV2RGB)[0].astype(np.float32)
    heat = np.clip(heatmaps, 0, 1)
    colour = np.clip(np.einsum("vhw,vc->hwc", heat, palette), 0, 255)
    alpha = heat.max(axis=0)[..., None] * 0.85
    return (rgb * (1 - alpha) + colour * alpha).astype(np.uint8)
