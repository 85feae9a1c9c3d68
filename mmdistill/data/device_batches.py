"""The one way a loader's batch becomes what models and objectives take: on the device, heatmaps
drawn, the tube mask as token indices. A loader wrapper like timm's PrefetchLoader, minus its
side CUDA stream: the copy, the drawing and the mask's host sync run on the current stream.

A finished batch holds, besides the collate's other keys:
- every modality as a float tensor `(B, C, T, H, W)` on the device: whatever form a modality
  travelled in (its spec's `travel_suffixes`, mmdistill/data/modalities/), its spec's `finish`
  completes it here, through the dataset's `finish_on_device`: with
  `skeleton_heatmaps.render_on='device'` the `skeleton_keypoints` are drawn, with a clip cache
  (`clip_cache.finish_on='device'`) the `<name>_quantised` integers are made float and
  normalised, with `rgb_frames.decode_on='device'` the `rgb_jpeg` frames are decoded, resized,
  cropped, flipped and normalised;
- with a tube mask, `'visible_index'` `(B, n_visible)` and `'masked_index'` `(B, n_masked)`
  (long, ascending) instead of the bool `'mask'` `(B, N)`: one host sync per batch, here, so
  the (possibly compiled) forward holds none, and the student and every teacher share them.
  A bernoulli mask (visible counts differ per clip) gives `'visible_valid'` `(B, n_max)` bool
  instead of `'masked_index'` (`mmdistill.data.masking.batch_token_indices`).
  A source/target pair (`mmdistill.data.paired`) carries one mask, so both halves share its
  indices too, and both halves' keypoints are drawn.

Training, few-shot features, reconstructions and statistics all take batches from here.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import torch

from mmdistill.data.dataset import ClipDataset
from mmdistill.data.masking import batch_token_indices
from mmdistill.data.modalities.specs import travel_suffixes

HeatmapDrawer = Callable[[dict], dict]
_END = object()  # the loader's end, told apart from any batch


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts and lists) to `device`, without waiting for the copy when the
    loader pinned them; everything else as is. Containers are new, so the caller's stay intact."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def heatmap_drawer(dataset: Any) -> HeatmapDrawer | None:
    """What finishes what a ClipDataset's (or a source/target pair's) loader left to the device
    (heatmaps from keypoints, cached integers to normalised floats); None for other datasets."""
    return getattr(dataset, "finish_on_device", None)


def finish_batch(batch: dict, device: torch.device | str,
                 draw_heatmaps: HeatmapDrawer | None = None) -> dict:
    """A collated batch, finished on `device` (see the module docstring); the input is left as is.
    `draw_heatmaps`: the dataset's (`heatmap_drawer`), needed when the batch holds keypoints."""
    batch = to_device(batch, torch.device(device))
    deferred = sorted(key for key in batch if key.endswith(travel_suffixes()))
    if deferred:
        if draw_heatmaps is None:
            raise ValueError(f"the batch holds keypoints {deferred} to be drawn as heatmaps "
                             f"(skeleton_heatmaps.render_on='device'), cached integers to be made "
                             f"float (clip_cache.finish_on='device') or JPEG frames to decode "
                             f"(rgb_frames.decode_on='device') but nothing to finish them "
                             f"with: pass the ClipDataset's heatmap_drawer(dataset)")
        batch = draw_heatmaps(batch)
    mask = batch.pop("mask", None)
    if mask is not None:
        batch.update(batch_token_indices(mask))
    return batch


def finish_item(item: dict, dataset: ClipDataset) -> dict:
    """`finish_batch` of one ClipDataset item on the CPU (pictures, checks): a batch of one."""
    as_batch = {key: value.unsqueeze(0) if isinstance(value, torch.Tensor) else value
                for key, value in item.items()}
    finished = finish_batch(as_batch, "cpu", heatmap_drawer(dataset))
    return {key: value[0] if isinstance(value, torch.Tensor) else value
            for key, value in finished.items()}


class DeviceBatches:
    """Iterates `loader`, yielding each batch finished on `device` (`finish_batch`).

    The loader stays the caller's: its sampler and dataset take `set_epoch`, its `batch_size`
    and length describe the epoch. On CUDA the copies overlap with the host when the loader pins
    its memory (`build_loader` does whenever CUDA is present). `loader_wait` sums the seconds
    spent waiting for the loader alone: finishing may wait for the device's queued work (the
    mask's host sync), which is not the data's fault.
    """

    def __init__(self, loader, device: torch.device | str):
        self.loader = loader
        self.device = torch.device(device)
        self.draw_heatmaps = heatmap_drawer(loader.dataset)
        self.loader_wait = 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        # The loader's iterator is made now, not at the first next(): its workers start loading
        # as soon as the caller asks for the iterator (the loop asks one step early).
        return self._finished(iter(self.loader))

    def _finished(self, batches) -> Iterator[dict]:
        while True:
            start = time.perf_counter()
            batch = next(batches, _END)
            self.loader_wait += time.perf_counter() - start
            if batch is _END:
                return
            yield finish_batch(batch, self.device, self.draw_heatmaps)
