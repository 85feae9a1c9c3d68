"""Distillation epochs of another length than the clip list: `distill_data.epoch_length`.

MM-CDFSL's distillation epoch is as long as its labelled source list (Ego4D) although it reads
only target clips: item i is target clip (i mod N) (datamodule/dataset/
ego4d_unlabel_combined_multimodal_dataset.py:205-214, 240-241), the target list reshuffled at
every epoch start (models/lit_MMDistillTrainer.py:134-150). `CycledClips` does the same with a
permutation drawn from (seed, epoch), so resumed runs and workers agree; a clip met twice in one
epoch gets fresh crop, flip and mask draws each round (its draws are keyed on the round).
"""
from __future__ import annotations

import math
from typing import Any

import gin
import numpy as np
from torch.utils.data import Dataset

from mmdistill.data.dataset import ClipDataset
from mmdistill.data.paired import ORDER_STREAM, EpochOrder

EPOCH_LENGTHS = ("target", "source")


class CycledClips(Dataset):
    """`length` items per epoch: item i = clips[order(epoch)[i mod N]], N = len(clips).

    Everything else (finish_on_device, class names, ...) is the wrapped dataset's."""

    def __init__(self, clips: ClipDataset, length: int, seed: int = 0):
        if length < 1 or len(clips) == 0:
            raise ValueError(f"an epoch of {length} items over {len(clips)} clips: both must be "
                             f"at least 1")
        self.clips, self.length, self.seed = clips, int(length), int(seed)
        self.rounds = math.ceil(self.length / len(clips))  # passes over the list per epoch
        self.epoch = 0
        self._order = EpochOrder(self.seed, ORDER_STREAM)

    def __len__(self) -> int:
        return self.length

    def __getattr__(self, name: str) -> Any:
        if name == "clips":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.clips, name)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.clips.set_epoch(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The clip order of `epoch`: item i reads clip `order(epoch)[i % N]`."""
        return self._order(epoch, len(self.clips))

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        if not 0 <= int(index) < self.length:
            raise IndexError(f"item {index} out of range for an epoch of {self.length}")
        count = len(self.clips)
        clip = int(self.order(epoch)[int(index) % count])
        return self.clips[(int(epoch) * self.rounds + int(index) // count, clip)]

    def finish_on_device(self, batch: dict) -> dict:
        return self.clips.finish_on_device(batch)


@gin.configurable("distill_data")
def distill_epoch_length(epoch_length: str = "target") -> int | None:
    """Items per distillation epoch: None = one pass over the target clips ('target'); 'source'
    = as many as the labelled source list holds (`source/clip_data.annotations`, read with its
    `source/clip_annotations.*` bindings, its exclude list included), as MM-CDFSL's
    distillation does."""
    if epoch_length not in EPOCH_LENGTHS:
        raise ValueError(f"distill_data.epoch_length={epoch_length!r}: choose 'target' (one pass "
                         f"over the target clips) or 'source' (as long as the source list)")
    if epoch_length == "target":
        return None
    from mmdistill.data.annotations import read_annotations

    try:
        path = gin.query_parameter("source/clip_data.annotations")
    except ValueError:
        raise ValueError("distill_data.epoch_length='source' counts the source list: bind "
                         "source/clip_data.annotations (MM-CDFSL: ego4d_train.json)") from None
    if isinstance(path, gin.config.ConfigurableReference):  # a %MACRO
        path = path.scoped_configurable_fn()
    with gin.config_scope("source"):
        length = len(read_annotations(path))
    print(f"[data] distillation epoch: {length} items, as many as the source list {path} "
          f"(distill_data.epoch_length='source')", flush=True)
    return length
