"""Optical flow: the flow teacher's input.

Read as float (T, 2, H, W), channel 0 = dx (pixels, + right), 1 = dy (+ down) (`flow_frames`,
`flow_array`, `flow_jpeg`; frame index i reads the field from frame i to i + 1, the last frame
reusing the last field). Resized like pixels with its values rescaled into the new pixel units; a
horizontal flip mirrors it and negates dx. Not normalised by default. Travels in a batch as the
float `flow`, or as `flow_quantised` + `flow_step` (a clip cache's integers).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmdistill.data.clip_cache import (FLOW_DTYPES, QUANTISED_SUFFIX, STEP_SUFFIX, QuantisedFrames,
                                       finish_quantised)
from mmdistill.data.flow_sources import FlowFrameSource
from mmdistill.data.modalities.base import ModalitySpec
from mmdistill.data.colours import flow_to_colour
from mmdistill.data.transforms import SpatialPlan, apply_to_frames


class FlowSpec(ModalitySpec):
    kind = "flow"
    normalization = ((0.0, 0.0), (1.0, 1.0), 1.0)
    plan_rank = 1
    travel_suffixes = (QUANTISED_SUFFIX, STEP_SUFFIX)
    size_what = "flow"
    lambda_ce = 0.01  # MM-CDFSL's configs/trainer/modality/flow.yaml
    size_fix = ("compute the flow from these frames (python -m mmdistill.prepare flow --data ROOT), "
                "or at their aspect ratio: a flow of another size but the same shape is fine")

    def __init__(self, name: str = "flow"):
        self.name = name

    def default_reader(self, folder_layout: bool) -> Any:
        return FlowFrameSource()

    def channels(self, reader: Any) -> int:
        return 2

    def frame_size(self, data: Any) -> tuple[int, int]:
        return tuple(data.shape[2:4])

    def to_item(self, name: str, data: Any, plan: SpatialPlan, reference_size: tuple[int, int],
                dataset: Any, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if hasattr(data, "ship"):  # cached integers: finished on the device
            return data.ship(name, plan)
        return {name: torch.from_numpy(dataset.normalize[name](apply_to_frames(data, plan, is_flow=True)))}

    def finish(self, name: str, batch: dict, dataset: Any) -> None:
        finish_quantised(name, batch, dataset.normalize[name])

    def cache_store(self, name: str, data: np.ndarray, whole: SpatialPlan, folder: Path, cache: Any,
                    video: str, reference: tuple[int, int]) -> dict:
        values = apply_to_frames(data, whole, is_flow=True).transpose(1, 0, 2, 3)
        dtype = FLOW_DTYPES[cache.flow_dtype]
        largest = float(np.abs(values).max(initial=0.0))
        scale = largest / np.iinfo(dtype).max if largest > 0 else 1.0
        np.save(folder / f"{name}.npy", np.round(values / np.float32(scale)).astype(dtype))
        return {"scale": scale}

    def cache_load(self, name: str, entry: Any, info: dict, indices: np.ndarray, quantised: bool) -> Any:
        frames = entry.array(f"{name}.npy")[indices]
        if not quantised:
            return frames.astype(np.float32) * np.float32(info["scale"])
        step = np.float32(info["scale"])
        return QuantisedFrames(np.ascontiguousarray(frames), True, np.array([step, step], dtype=np.float32),
                               np.array([-1.0, 1.0], dtype=np.float32), str(entry.folder))

    def tiles(self, array: np.ndarray, shown: np.ndarray, background: np.ndarray | None
              ) -> tuple[list[np.ndarray], np.ndarray | None]:
        max_magnitude = float(np.sqrt((array ** 2).sum(0)).max()) or 1.0
        return [flow_to_colour(array[:, t], max_magnitude) for t in shown], background


FLOW = FlowSpec()
