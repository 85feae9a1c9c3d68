"""What a modality is, in one object: the contract every modality spec meets.

A spec says, for one modality (rgb, flow, skeleton, or one a user adds):
- its readers: `default_reader` (the canonical layout; `clip_data.sources` may give another) and
  `read` (what the loader takes from a reader: pixels, or bytes to decode on the device);
- `channels(reader)`: what the model reading it takes as `in_chans` (stages build every ViT
  with it; `video_vit.in_chans` is never bound by hand);
- `normalization`: the default (mean, std, scale) (`clip_data.mean`/`std` override it);
- the frame rule: `frame_indices` maps the clip's sampled frame indices to the ones this
  modality reads (the shared `temporal_sampling` picks them once per clip for all modalities);
- the spatial rule: `to_item` applies the clip's one `SpatialPlan` (resize, crop, flip; flow
  negates dx, a skeleton swaps left/right joints) and gives the item's entries; its `rng` is this
  modality's own generator for the item (from (seed, epoch, index, name)), for a transform that
  only this modality draws (an RGB-only random resized crop, say) without moving the others;
- the form it travels in a batch (`travel_suffixes`: keys `<name><suffix>` the loader may leave
  for the device) and `finish`, which turns them into the float `(B, C, T, H, W)` `<name>`;
- `frame_size`: the (H, W) of what was read, on which the clip's spatial plan is made
  (`plan_rank`: lowest first, RGB always first), and the fix to name when sizes disagree;
- the clip cache's storage (`cache_store`/`cache_load`), a picture (`tiles`) and a one-line size
  (`describe`) for `python -m mmdistill.data check`.

Built-in specs are instances in `mmdistill.data.modalities.specs.BUILTIN_SPECS`; a user adds one
through gin (`modality_specs.extra`, see that module). A variant (another frame rule, transform,
flip rule, normalisation or file format) is a new spec or a spec parameter, never a branch in the
code that uses specs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mmdistill.data.transforms import SpatialPlan


class ModalitySpec:
    """The defaults are those of a plain frame-like array modality; subclasses override."""

    name = "?"
    kind = "frames"  # what its readers give, recorded in a clip-cache entry
    normalization: tuple[Sequence[float], Sequence[float], float] = ((0.0,), (1.0,), 1.0)
    plan_rank = 5
    uses_plan = True  # False: the spec has its own spatial rule and ignores the clip's plan
    travel_suffixes: tuple[str, ...] = ()
    size_what = "frames"
    size_fix = "give every modality of a video the same aspect ratio"
    lambda_ce: float | None = None  # the stage-1 CE weight when pretrain.lambda_ce is None

    def default_reader(self, folder_layout: bool) -> Any:
        raise ValueError(f"modality '{self.name}' has no default reader; give one in clip_data.sources")

    def channels(self, reader: Any) -> int:
        raise NotImplementedError

    def cache_refusal(self, reader: Any) -> str | None:
        """The setting that keeps this reader out of the clip cache, if any."""
        return None

    def read(self, reader: Any, video: str, indices: np.ndarray) -> Any:
        return reader.read(video, indices)

    def frame_indices(self, indices: np.ndarray) -> np.ndarray:
        return indices

    def frame_size(self, data: Any) -> tuple[int, int] | None:
        raise NotImplementedError

    def describe(self, data: Any) -> str:
        height, width = self.frame_size(data)
        return f"{width}x{height}"

    def to_item(self, name: str, data: Any, plan: SpatialPlan, reference_size: tuple[int, int],
                dataset: Any, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """What was read -> the item's entries: `{name: float32 (C, T, h, w)}` normalised with
        `dataset.normalize[name]`, or keys `<name><suffix>` (`travel_suffixes`) for `finish`."""
        raise NotImplementedError

    def finish(self, name: str, batch: dict, dataset: Any) -> None:
        """Turn what the loader left under `<name><suffix>` into `<name>`, in place."""

    def pad(self, items: list[dict]) -> list[dict]:
        """Make items collatable (e.g. pad a per-item count); as they are by default."""
        return items

    def cache_store(self, name: str, data: Any, whole: SpatialPlan, folder: Path, cache: Any, video: str,
                    reference: tuple[int, int]) -> dict:
        """Save the whole video's `data`, resized by `whole`, under `folder`; -> what `cache_load`
        needs besides (kept in the entry's meta.json)."""
        raise ValueError(f"the clip cache cannot store modality '{self.name}' (its spec has no "
                         f"cache_store); set clip_data.cache_dir = None")

    def cache_load(self, name: str, entry: Any, info: dict, indices: np.ndarray, quantised: bool) -> Any:
        """The frames `indices` of what `cache_store` kept, read from `entry` (a `CachedVideo`:
        `entry.array(file)` is one of its arrays, memory-mapped)."""
        raise NotImplementedError

    def tiles(self, array: np.ndarray, shown: np.ndarray, background: np.ndarray | None
              ) -> tuple[list[np.ndarray], np.ndarray | None]:
        """uint8 (H, W, 3) tiles of the frames `shown` of an un-normalised (C, T, H, W) array, and
        the background later modalities may draw on (RGB's frames)."""
        first = array[:1]
        scaled = (first - first.min()) / max(float(np.ptp(first)), 1e-6) * 255
        return [np.repeat(scaled[:, t].transpose(1, 2, 0), 3, axis=2).astype(np.uint8) for t in shown], background
