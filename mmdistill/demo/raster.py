"""The demo's rasteriser: capsules -> anti-aliased frames and their exact forward flow.

Hand-written rather than PIL.ImageDraw because the flow needs, for every pixel, which capsule
covers it and where on that capsule it lies; one distance field gives both the anti-aliased
drawing and that correspondence, so frames and flow cannot disagree.
"""

from __future__ import annotations

import numpy as np


def _axis_frame(start, end):
    """Unit axis direction and its normal per frame and layer; (1, 0) for discs."""
    axis = end - start
    length = np.linalg.norm(axis, axis=-1, keepdims=True)
    unit = np.where(length > 1e-3, axis / np.maximum(length, 1e-9), np.array([1.0, 0.0]))
    normal = np.stack([-unit[..., 1], unit[..., 0]], -1)
    return unit, normal


def _capsule_coordinates(px, py, ax, ay, bx, by):
    """For pixel centres (px, py) and capsules from (ax, ay) to (bx, by), all broadcast: the
    axis position t in [0, 1] of the nearest axis point and the offset (dx, dy) from it."""
    axis_x, axis_y = bx - ax, by - ay
    t = ((px - ax) * axis_x + (py - ay) * axis_y) / np.maximum(axis_x ** 2 + axis_y ** 2, 1e-9)
    t = np.minimum(np.maximum(t, 0), 1)  # np.clip's wrapper costs more than the work here
    return t, px - ax - t * axis_x, py - ay - t * axis_y


def _paint(layers, background):
    """Paint capsules back to front. Frames that stack their layers in the same order are
    painted together, each layer only inside its bounding box over those frames: limbs cover
    a few percent of a frame, and per-frame loops would cost more in overhead than in work.

    Returns frames (T, H, W, 3) uint8 and, per pixel, the front-most layer covering at least
    half of it (-1 for background).
    """
    num_frames = layers.start.shape[0]
    height, width = background.shape[:2]
    image = np.broadcast_to(background, (num_frames, height, width, 3)).astype(np.float32)
    owner = np.full((num_frames, height, width), -1)
    columns, rows = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    order = np.argsort(layers.depth, axis=1, kind='stable')
    starts, ends = layers.start.astype(np.float32), layers.end.astype(np.float32)
    for stacking in np.unique(order, axis=0):
        group = np.flatnonzero((order == stacking).all(axis=1))
        frames = slice(None) if len(group) == num_frames else group
        for layer in stacking.tolist():
            a, b = starts[group, layer], ends[group, layer]  # (n, 2)
            reach = layers.radius[layer] + 1
            low = np.floor(np.minimum(a, b).min(0) - reach).astype(int)
            high = np.ceil(np.maximum(a, b).max(0) + reach).astype(int) + 1
            x0, y0 = max(low[0], 0), max(low[1], 0)
            x1, y1 = min(high[0], width), min(high[1], height)
            if x0 >= x1 or y0 >= y1:
                continue  # entirely outside the frame
            column = lambda v: v[:, None, None]
            _, dx, dy = _capsule_coordinates(columns[None, None, x0:x1], rows[None, y0:y1, None],
                                             column(a[:, 0]), column(a[:, 1]),
                                             column(b[:, 0]), column(b[:, 1]))
            alpha = np.minimum(np.maximum(np.float32(layers.radius[layer] + 0.5)
                                          - np.hypot(dx, dy), 0), 1)
            colour = layers.colour[group, layer].astype(np.float32)[:, None, None, :]
            patch = image[frames, y0:y1, x0:x1]
            image[frames, y0:y1, x0:x1] = patch + alpha[..., None] * (colour - patch)
            owned = owner[frames, y0:y1, x0:x1]
            owner[frames, y0:y1, x0:x1] = np.where(alpha >= 0.5, layer, owned)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), owner


def render(layers, background):
    """Frames (T, H, W, 3) uint8 and forward flow (T-1, 2, H, W) float32 in pixels."""
    frames, owner = _paint(layers, background)
    # Each owned pixel is a point of a rigid capsule: keep its axis position t and its offset in
    # the capsule's own (axis, normal) frame, and re-place it on the capsule one frame later.
    k, y, x = np.nonzero(owner[:-1] >= 0)
    layer = owner[k, y, x]
    start, end = layers.start[k, layer], layers.end[k, layer]
    t, dx, dy = _capsule_coordinates(x, y, start[:, 0], start[:, 1], end[:, 0], end[:, 1])
    unit, normal = _axis_frame(layers.start, layers.end)
    along = dx * unit[k, layer, 0] + dy * unit[k, layer, 1]
    across = dx * normal[k, layer, 0] + dy * normal[k, layer, 1]
    flow = np.zeros((len(owner) - 1, 2) + owner.shape[1:], np.float32)
    for c, pixel in ((0, x), (1, y)):
        start, end = layers.start[k + 1, layer, c], layers.end[k + 1, layer, c]
        moved = (start + t * (end - start) + along * unit[k + 1, layer, c]
                 + across * normal[k + 1, layer, c])
        flow[k, c, y, x] = moved - pixel
    return frames, flow

