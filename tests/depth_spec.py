"""A fourth modality added from outside mmdistill: a one-channel depth-like array per video.

The whole modality is this file: a reader and a spec. A gin config names it with

    import depth_spec
    modality_specs.extra = {'depth': @depth_spec()}

(tests/test_fourth_modality.py runs a distillation and a few-shot evaluation with it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import gin
import numpy as np
import torch

from mmdistill.data.modalities.base import ModalitySpec
from mmdistill.data.sources import BadClipError
from mmdistill.data.transforms import SpatialPlan, apply_to_frames


@gin.configurable("depth_array")
class DepthArraySource:
    """`template` (relative to `root`): one float32 (F, H, W) `.npy` per video."""

    def __init__(self, template: str = "depth/{video}.npy", root: str | Path | None = None):
        self.template = template
        self.root = Path(root) if root is not None else None

    def path(self, video: str) -> Path:
        return self.root / self.template.format(video=video)

    def files(self, video: str) -> list[Path]:
        return [self.path(video)]

    def _array(self, video: str) -> np.ndarray:
        try:
            array = np.load(self.path(video), mmap_mode="r")
        except FileNotFoundError:
            raise BadClipError(f"video '{video}': missing depth file {self.path(video)}") from None
        if array.ndim != 3:
            raise BadClipError(f"video '{video}': depth {self.path(video)} has shape {array.shape}, "
                               f"expected (frames, H, W)")
        return array

    def num_frames(self, video: str) -> int:
        return self._array(video).shape[0]

    def read(self, video: str, indices: Sequence[int]) -> np.ndarray:
        return np.asarray(self._array(video)[np.asarray(indices)], dtype=np.float32)[..., None]


class DepthSpec(ModalitySpec):
    """Depth as a one-channel image: resized, cropped and flipped like RGB pixels, values kept."""

    name = "depth"
    kind = "depth"
    plan_rank = 3
    size_what = "depth"
    size_fix = "write the depth at the frames' aspect ratio"

    def default_reader(self, folder_layout: bool) -> Any:
        return DepthArraySource()

    def channels(self, reader: Any) -> int:
        return 1

    def frame_size(self, data: np.ndarray) -> tuple[int, int]:
        return tuple(data.shape[1:3])

    def to_item(self, name: str, data: np.ndarray, plan: SpatialPlan, reference_size: tuple[int, int],
                dataset: Any, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(dataset.normalize[name](apply_to_frames(data, plan, is_flow=False)))}


@gin.configurable("depth_spec")
def depth_spec() -> DepthSpec:
    return DepthSpec()
