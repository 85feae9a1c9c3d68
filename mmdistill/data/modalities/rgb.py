"""RGB: what the student and the RGB teacher see.

Read as uint8 (T, H, W, 3) frames (`rgb_frames`: a folder of images per video; `rgb_video`: one
video file, the default for a class-folder layout) or, with `rgb_frames.decode_on='device'`, as
the JPEG files' bytes. Resized, cropped and flipped with `apply_to_frames`, normalised with the
ImageNet statistics in [0, 1] units. Travels in a batch as the float `rgb`, or as `rgb_jpeg` +
`rgb_jpeg_offsets` + `rgb_plan` (decoded on the device, `jpeg_on_device.py`), or as
`rgb_quantised` + `rgb_step` (a clip cache's integers, `clip_cache.finish_on='device'`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmdistill.data.clip_cache import QUANTISED_SUFFIX, STEP_SUFFIX, QuantisedFrames, finish_quantised
from mmdistill.data.jpeg_on_device import JPEG_SUFFIX, OFFSETS_SUFFIX, PLAN_SUFFIX, decode_clips
from mmdistill.data.modalities.base import ModalitySpec
from mmdistill.data.sources import BadClipError, FrameFolderSource, VideoFileSource
from mmdistill.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SpatialPlan, apply_to_frames


def _decodes_on_device(reader: Any) -> bool:
    return getattr(reader, "decode_on", "loader") == "device"


class ImageSpec(ModalitySpec):
    """Frames of `channels` colour channels in their files' (T, H, W, C) layout."""

    kind = "image"
    normalization = (IMAGENET_MEAN, IMAGENET_STD, 1.0 / 255.0)
    plan_rank = 0
    travel_suffixes = (JPEG_SUFFIX, OFFSETS_SUFFIX, PLAN_SUFFIX, QUANTISED_SUFFIX, STEP_SUFFIX)
    size_what = "frames"
    size_fix = "extract every image modality from the videos at one aspect ratio"
    # MM-CDFSL's configs/trainer/modality/rgb.yaml: lambda_ce 0.05.
    lambda_ce = 0.05

    def __init__(self, name: str = "rgb", channels: int = 3):
        self.name = name
        self._channels = channels

    def default_reader(self, folder_layout: bool) -> Any:
        return VideoFileSource() if folder_layout else FrameFolderSource()

    def channels(self, reader: Any) -> int:
        return self._channels

    def cache_refusal(self, reader: Any) -> str | None:
        if _decodes_on_device(reader):
            return "rgb_frames.decode_on='device'"
        return None

    def read(self, reader: Any, video: str, indices: np.ndarray) -> Any:
        return (reader.read_encoded if _decodes_on_device(reader) else reader.read)(video, indices)

    def frame_size(self, data: Any) -> tuple[int, int]:
        return tuple(data.shape[1:3])

    def to_item(self, name: str, data: Any, plan: SpatialPlan, reference_size: tuple[int, int],
                dataset: Any, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if hasattr(data, "ship"):  # JPEG bytes or cached integers: finished on the device
            return data.ship(name, plan)
        return {name: torch.from_numpy(dataset.normalize[name](apply_to_frames(data, plan, is_flow=False)))}

    def finish(self, name: str, batch: dict, dataset: Any) -> None:
        encoded = batch.pop(name + JPEG_SUFFIX, None)
        if encoded is not None:
            offsets, plans = batch.pop(name + OFFSETS_SUFFIX), batch.pop(name + PLAN_SUFFIX)
            videos = batch.get("video")
            videos = [videos] if isinstance(videos, str) else videos  # finish_item: one video
            pixels = decode_clips(encoded, offsets, plans, offsets.device, videos)
            batch[name] = dataset.normalize[name].apply_to_batch(pixels)
        finish_quantised(name, batch, dataset.normalize[name])

    def cache_store(self, name: str, data: np.ndarray, whole: SpatialPlan, folder: Path, cache: Any,
                    video: str, reference: tuple[int, int]) -> dict:
        if data.dtype != np.uint8:
            raise BadClipError(f"video '{video}': {name} frames are {data.dtype}; the clip cache "
                               f"stores uint8 images")
        frames = apply_to_frames(data, whole, is_flow=False).transpose(1, 2, 3, 0)
        np.save(folder / f"{name}.npy", frames.astype(np.uint8))
        return {}

    def cache_load(self, name: str, entry: Any, info: dict, indices: np.ndarray, quantised: bool) -> Any:
        frames = np.ascontiguousarray(entry.array(f"{name}.npy")[indices])
        if not quantised:
            return frames
        ones = np.ones(frames.shape[-1], dtype=np.float32)
        return QuantisedFrames(frames, False, ones, ones, str(entry.folder))

    def tiles(self, array: np.ndarray, shown: np.ndarray, background: np.ndarray | None
              ) -> tuple[list[np.ndarray], np.ndarray | None]:
        rgb = np.clip(array, 0, 255).astype(np.uint8)  # inverted normalisation gives pixel values
        return [rgb[:, t].transpose(1, 2, 0) for t in shown], rgb


RGB = ImageSpec()
