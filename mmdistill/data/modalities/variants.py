"""The built-in modalities with their variants as spec parameters: a frame rule (which stored
frame each clip frame reads, and what a frame past the end is), whether the clip's flip applies,
and for the skeleton another heatmap renderer. A gin config swaps them in for the built-ins:

    modality_specs.extra = {'rgb': @rgb_spec(), 'flow': @flow_spec(), 'skeleton': @skeleton_spec()}
    flow_spec.flip = False
    flow_spec.frames = @flow/frame_rule()
    flow/frame_rule.floor = 1
    flow/frame_rule.past_end = 'zeros'

With every parameter at its default a variant is its built-in spec (`rgb_spec()` reads, crops,
flips and normalises exactly as `RGB`). gin/tennis_fork.gin sets the tennis fork's rules.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import gin
import numpy as np
import torch

from mmdistill.data.modalities.flow import FlowSpec
from mmdistill.data.modalities.frame_rule import PAST_END_SUFFIX, FrameRule, RuledRead, warn_past_end
from mmdistill.data.modalities.grid_heatmaps import GridHeatmaps
from mmdistill.data.modalities.rgb import ImageSpec
from mmdistill.data.modalities.skeleton import SkeletonSpec
from mmdistill.data.transforms import SpatialPlan


class _Variant:
    """Mixed in before a built-in spec: the frame rule in `read`, the flip switch in `to_item`."""

    frames: FrameRule | None = None
    flip: bool = True
    zeros_allowed = False

    def _set(self, frames: FrameRule | None, flip: bool) -> None:
        if frames is not None and not isinstance(frames, FrameRule):
            raise ValueError(f"{self.name}_spec.frames must be a frame rule, e.g. @{self.name}/frame_rule(), "
                             f"got {frames!r}")
        if frames is not None and frames.past_end == "zeros" and not self.zeros_allowed:
            raise ValueError(f"frame_rule.past_end='zeros' is for flow (a zero field); the {self.name} frame rule "
                             f"can take 'error' or 'last'")
        if not isinstance(flip, bool):
            raise ValueError(f"{self.name}_spec.flip must be True or False, got {flip!r}")
        self.frames, self.flip = frames, flip
        self._warned: set = set()

    def stored(self, reader: Any, video: str) -> int:
        """How many frames (files, rows) the reader holds for the video."""
        return int(reader.num_frames(video))

    def cache_refusal(self, reader: Any) -> str | None:
        if self.frames is not None:
            return f"{self.name}_spec.frames (a frame rule reads frames the clip cache does not index)"
        return super().cache_refusal(reader)

    def read(self, reader: Any, video: str, indices: np.ndarray) -> Any:
        if self.frames is None:
            return super().read(reader, video, indices)
        chosen, past = self.frames.indices(indices, reader, self.stored(reader, video), video, self.name)
        warn_past_end(self.name, video, int(np.asarray(indices)[0]), past, self.frames, self._warned)
        return RuledRead(self.fill(super().read(reader, video, chosen), past), past)

    def fill(self, data: Any, past: np.ndarray) -> Any:
        return data

    def frame_size(self, data: Any):
        return super().frame_size(data.data if isinstance(data, RuledRead) else data)

    def describe(self, data: Any) -> str:
        return super().describe(data.data if isinstance(data, RuledRead) else data)

    def to_item(self, name: str, data: Any, plan: SpatialPlan, reference_size: tuple[int, int],
                dataset: Any, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if not self.flip:
            plan = dataclasses.replace(plan, flip=False)
        item = {}
        if isinstance(data, RuledRead):
            item[name + PAST_END_SUFFIX] = torch.tensor(int(data.past_end.sum()))
            data = data.data
        item.update(self.draw(name, data, plan, reference_size, dataset, rng))
        return item

    def draw(self, name, data, plan, reference_size, dataset, rng) -> dict[str, torch.Tensor]:
        return super().to_item(name, data, plan, reference_size, dataset, rng)


class RgbVariant(_Variant, ImageSpec):
    pass


class FlowVariant(_Variant, FlowSpec):
    zeros_allowed = True

    def stored(self, reader: Any, video: str) -> int:
        return int(reader.num_frames(video)) - 1  # flow readers count frames: one field fewer

    def fill(self, data: Any, past: np.ndarray) -> Any:
        if self.frames.past_end == "zeros" and past.any():
            data = np.array(data, dtype=np.float32)
            data[past] = 0.0
        return data


class SkeletonVariant(_Variant, SkeletonSpec):
    heatmaps: GridHeatmaps | None = None

    def draw(self, name, data, plan, reference_size, dataset, rng) -> dict[str, torch.Tensor]:
        if self.heatmaps is None:
            return super().draw(name, data, plan, reference_size, dataset, rng)
        if dataset.heatmaps.render_on == "device":  # a setting, not a bad clip: never skipped
            raise ValueError("skeleton_spec.heatmaps = @grid_heatmaps() draws in the loader; set "
                             "skeleton_heatmaps.render_on = 'loader' (the device draws our own heatmaps only)")
        if dataset.heatmaps.stride != 1:
            raise ValueError(f"skeleton_spec.heatmaps = @grid_heatmaps() draws at the crop's size from its own "
                             f"grid; skeleton_heatmaps.stride = {dataset.heatmaps.stride} (our renderer's) "
                             f"would be ignored: drop it")
        array = self.heatmaps(data, plan.crop, reference_size)
        return {name: torch.from_numpy(dataset.normalize[name](array))}


@gin.configurable("rgb_spec")
def rgb_spec(frames: FrameRule | None = None, flip: bool = True) -> RgbVariant:
    spec = RgbVariant()
    spec._set(frames, flip)
    return spec


@gin.configurable("flow_spec")
def flow_spec(frames: FrameRule | None = None, flip: bool = True) -> FlowVariant:
    spec = FlowVariant()
    spec._set(frames, flip)
    return spec


@gin.configurable("skeleton_spec")
def skeleton_spec(frames: FrameRule | None = None, flip: bool = True,
                  heatmaps: GridHeatmaps | None = None) -> SkeletonVariant:
    """`heatmaps=@grid_heatmaps()`: the tennis fork's renderer (grid_heatmaps.py) instead of ours."""
    if heatmaps is not None and not isinstance(heatmaps, GridHeatmaps):
        raise ValueError(f"skeleton_spec.heatmaps must be @grid_heatmaps() or None (ours), got {heatmaps!r}")
    spec = SkeletonVariant()
    spec._set(frames, flip)
    spec.heatmaps = heatmaps
    return spec
