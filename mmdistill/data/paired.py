"""Stage-1 pretraining items: a labelled SOURCE clip paired with an unlabelled TARGET clip under
one tube mask, the way MM-CDFSL pairs them (datamodule/dataset/ego4d_unlabel_combined_dataset.py):
item i is source clip i with target clip (i mod len(target)), the target order reshuffled every
epoch; the epoch is as long as the source list.

The shuffle is a permutation drawn from (seed, epoch), so a resumed run, and every worker, sees the
same pairs. Each clip keeps its own dataset's crop and flip; the one mask is drawn here, from
(seed, epoch, index), and both halves are masked by it.

An item has one level of keys: the target's as a plain ClipDataset item (`rgb`, `label`, `video`,
...) and the source's with the prefix `source_` (`source_rgb`, `source_label`, ...), plus the
shared `mask`. Without a target it holds the source keys and the mask only.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmdistill.data.dataset import ClipDataset
from mmdistill.data.masking import TubeMaskGenerator

SOURCE_PREFIX = "source_"
# Streams of (seed, epoch, ...) so the pairing and the mask never reuse the clips' own draws;
# cycled.py's clip order is stream 4.
_PAIRING_STREAM, _MASK_STREAM, _SOURCE_STREAM, ORDER_STREAM = 1, 2, 3, 4


class EpochOrder:
    """A permutation drawn from (seed, epoch, stream), so a resumed run and every worker get the
    same one; kept for the epoch, since every item of it asks."""

    def __init__(self, seed: int, stream: int):
        self.seed, self.stream = int(seed), int(stream)
        self._drawn: tuple[int, np.ndarray] | None = None  # (epoch, permutation)

    def __call__(self, epoch: int, n: int) -> np.ndarray:
        if self._drawn is None or self._drawn[0] != int(epoch):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch), self.stream]))
            self._drawn = (int(epoch), rng.permutation(n))
        return self._drawn[1]


def source_seed(seed: int) -> int:
    """The seed of the source dataset's own draws (crop, flip, start), apart from the target's:
    with the run's seed, source clip i and target clip i would crop alike."""
    return int(np.random.SeedSequence([int(seed), _SOURCE_STREAM]).generate_state(1)[0])


class PairedClipDataset(Dataset):
    """`source[i]` + `target[pairing(epoch)[i mod len(target)]]` + one mask; see the module doc.

    `source` and `target` must have no mask generator of their own: the pair shares this one.
    """

    def __init__(self, source: ClipDataset, target: ClipDataset | None,
                 mask_generator: TubeMaskGenerator, seed: int = 0):
        for name, part in (("source", source), ("target", target)):
            if part is not None and part.mask_generator is not None:
                raise ValueError(f"the {name} dataset draws its own mask; a pair shares one, so "
                                 f"build it without a mask generator")
        if not source.labeled:
            raise ValueError("the source clips must be labelled (source/clip_data.annotations "
                             "with a label per clip)")
        self.source, self.target = source, target
        self.mask_generator = mask_generator
        self.seed = int(seed)
        self.epoch = 0
        self._pairing = EpochOrder(self.seed, _PAIRING_STREAM)

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    def __len__(self) -> int:
        return len(self.source)  # the source list sets the epoch; the targets wrap around

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for part in (self.source, self.target):
            if part is not None:
                part.set_epoch(epoch)

    def pairing(self, epoch: int) -> np.ndarray:
        """The target order of `epoch`: item i takes target clip `pairing(epoch)[i % len(target)]`."""
        return self._pairing(epoch, len(self.target))

    def target_index(self, epoch: int, index: int) -> int:
        return int(self.pairing(epoch)[index % len(self.target)])

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        index = int(index)
        source = self.source[(epoch, index)]
        if source is None:  # a bad clip under on_bad_clip='skip': the pair is dropped
            return None
        item: dict[str, Any] = {}
        if self.target is not None:
            target = self.target[(epoch, self.target_index(epoch, index))]
            if target is None:
                return None
            item.update(target)
        item.update({SOURCE_PREFIX + name: value for name, value in source.items()})
        mask_rng = np.random.default_rng(np.random.SeedSequence(
            [self.seed, int(epoch), index, _MASK_STREAM]))
        item["mask"] = torch.from_numpy(self.mask_generator(mask_rng))
        return item

    def finish_on_device(self, batch: dict) -> dict:
        """Both halves' device-side finishing (deferred heatmaps, cached integers), each by its
        own dataset; `mmdistill.data.device_batches` calls it."""
        if self.target is not None:
            batch = self.target.finish_on_device(batch)
        source_keys = [key for key in batch if key.startswith(SOURCE_PREFIX)]
        source = self.source.finish_on_device({key[len(SOURCE_PREFIX):]: batch.pop(key)
                                               for key in source_keys})
        batch.update({SOURCE_PREFIX + key: value for key, value in source.items()})
        return batch
