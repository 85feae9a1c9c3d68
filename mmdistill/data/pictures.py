"""Pictures of clips as the transforms make them (`python -m mmdistill.data check --visualize`):
each modality drawn by its spec's `tiles`, with the colourings they use."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

from mmdistill.data.device_batches import finish_item


def clip_pictures(dataset: Any, item: dict, frames_shown: int = 4) -> tuple[list[list[np.ndarray]], str]:
    """Rows of uint8 tiles (one per modality, as its spec draws it: RGB; flow as colour;
    skeleton on the RGB) for the frames shown, and a caption."""
    num_frames = next(value for key, value in item.items() if key in dataset.sources).shape[1]
    shown = np.linspace(0, num_frames - 1, min(frames_shown, num_frames)).round().astype(int)
    rows = []
    background = None
    for name in dataset.sources:
        array = dataset.normalize[name].invert(item[name].numpy())
        row, background = dataset.specs[name].tiles(array, shown, background)
        rows.append(row)
    size = max((tile.shape[:2] for row in rows for tile in row), key=lambda hw: hw[0] * hw[1])
    # a modality drawn smaller (heatmaps at a stride) is scaled up to the largest
    rows = [[tile if tile.shape[:2] == size else cv2.resize(tile, size[::-1], interpolation=cv2.INTER_NEAREST)
             for tile in row] for row in rows]
    label = dataset.class_names[item["label"]] if item["label"] >= 0 else "unlabelled"
    caption = f"#{item['index']} {item['video']} start {item['start']} frames {shown.tolist()} {label}"
    return rows, caption


def write_montage(dataset: Any, path: str | Path, num_clips: int, seed: int = 0,
                  frames_shown: int = 4) -> Path:
    """A PNG of `num_clips` random readable clips as the training transforms produce them."""
    blocks = []
    for index in np.random.default_rng(seed).permutation(len(dataset)).tolist():
        if len(blocks) == num_clips:
            break
        item = dataset[(0, index)]
        if item is None:  # a bad clip (already reported by the scan): show another one
            continue
        rows, caption = clip_pictures(dataset, finish_item(item, dataset), frames_shown)
        strip = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
        header = Image.new("RGB", (strip.shape[1], 14), "black")
        ImageDraw.Draw(header).text((2, 1), caption[: strip.shape[1] // 6], fill="white")
        blocks.append(np.concatenate([np.asarray(header), strip], axis=0))
    if not blocks:
        raise SystemExit("no clip could be read for the montage; run check without --visualize to see why")
    width = max(block.shape[1] for block in blocks)
    canvas = np.concatenate([np.pad(block, ((0, 4), (0, width - block.shape[1]), (0, 0))) for block in blocks])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path
