"""`python -m mmdistill.data stats`: per-channel mean and std of flow and skeleton inputs, measured
on the clips as the model sees them (eval crop, before normalisation), printed as gin lines."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mmdistill.data.dataset import ClipDataset, collate_clips
from mmdistill.data.device_batches import DeviceBatches
from mmdistill.progress import progress as progress_bar


def channel_stats(dataset: ClipDataset, modalities: Sequence[str], max_clips: int = 200, num_workers: int = 0,
                  seed: int = 0, progress: bool = False) -> dict[str, tuple[list[float], list[float]]]:
    """{modality: (mean per channel, std per channel)} over up to `max_clips` random clips.

    The dataset's normalisation for these modalities must be the identity (or, for RGB, the
    /255 scaling only), so the numbers are in the units `clip_data.mean/std` expect.
    """
    for name in modalities:
        normalize = dataset.normalize[name]
        if normalize.mean.any() or (normalize.std != 1).any():
            raise ValueError(f"'{name}' is already normalised; compute statistics on raw values")
    chosen = np.arange(len(dataset))
    if max_clips < len(dataset):
        chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), size=max_clips, replace=False))
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, sampler=chosen.tolist(), num_workers=num_workers,
                                         collate_fn=collate_clips)
    sums, squares, counts = {}, {}, {}
    for batch in progress_bar(DeviceBatches(loader, "cpu"), desc="clips", disable=not progress):
        for name in modalities:
            if name not in batch:
                continue
            values = batch[name].double().transpose(0, 1).flatten(1)  # (C, everything else)
            sums[name] = sums.get(name, 0) + values.sum(1)
            squares[name] = squares.get(name, 0) + (values ** 2).sum(1)
            counts[name] = counts.get(name, 0) + values.shape[1]
    if not counts:
        raise ValueError("no clip could be read; run `python -m mmdistill.data check` to see why")
    stats = {}
    for name in counts:
        mean = sums[name] / counts[name]
        std = (squares[name] / counts[name] - mean ** 2).clamp_min(0).sqrt()
        stats[name] = (mean.tolist(), std.tolist())
    return stats


def format_gin(stats: dict[str, tuple[list[float], list[float]]]) -> str:
    def values(numbers):
        return "[" + ", ".join(f"{number:.4g}" for number in numbers) + "]"
    means = ", ".join(f"'{name}': {values(mean)}" for name, (mean, _) in stats.items())
    stds = ", ".join(f"'{name}': {values([max(s, 1e-6) for s in std])}" for name, (_, std) in stats.items())
    return f"clip_data.mean = {{{means}}}\nclip_data.std = {{{stds}}}"
