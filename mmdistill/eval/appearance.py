"""The appearance baseline: what scene colour alone gives on the same episodes.

Clips cut from one recording share court, light and clothing, so a classifier of colour
histograms can score well above chance without seeing any motion. A network's few-shot number
is read against it: where it is not clearly above this baseline, the number may measure which
recording a clip comes from rather than the action. Never tune a network to beat it (a network
that learns more scene colour is not what we want).

Features: per clip, a joint RGB histogram (`bins`^3 cells) over every frame the evaluation clip
holds (the frames the networks see, after the evaluation crop), each frame first shrunk to
`size` (area averaging), normalised to sum 1 and square-rooted (the Hellinger embedding, so
Euclidean distance compares distributions); classified by the nearest class mean
(`euclidean_centroid`). The issue's reviewer used 6 bins, 48x27 frames, every 10th frame of the
whole video; here the frames are the evaluation clip's.
"""
from __future__ import annotations

from typing import Sequence

import gin
import torch
import torch.nn.functional as F
from torch import nn

NAME = "colour_histogram"
CLASSIFIER = "euclidean_centroid"


@gin.configurable("colour_histogram", denylist=["normalize"])
class ColourHistogram(nn.Module):
    """`model(x) -> (tokens, pooled)` like the video ViT, so the few-shot code runs it as is.

    `normalize`: the dataset's RGB `Normalize`, inverted to get pixel values back.
    """

    def __init__(self, normalize, bins: int = 6, size: Sequence[int] = (27, 48)):
        super().__init__()
        if int(bins) != bins or bins < 2:
            raise ValueError(f"colour_histogram.bins must be an integer >= 2, got {bins!r}")
        self.bins, self.size, self.in_chans = int(bins), tuple(int(s) for s in size), 3
        # Buffers, so the feature cache key (a hash of the state dict) tells settings apart.
        self.register_buffer("mean", torch.as_tensor(normalize.mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(normalize.std, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor([normalize.scale, self.bins, *self.size],
                                                   dtype=torch.float32))

    def forward(self, x: torch.Tensor, visible_index=None):
        if visible_index is not None:
            raise ValueError("the colour histogram has no tokens to mask; evaluate it unmasked")
        b, c, t, h, w = x.shape
        if c != 3:
            raise ValueError(f"the colour histogram reads RGB clips, got {c} channels")
        shape = (1, 3, 1, 1, 1)
        pixels = (x.float() * self.std.view(shape) + self.mean.view(shape)) / self.scale[0]
        frames = pixels.permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w)
        frames = F.interpolate(frames, size=self.size, mode="area")
        cell = (frames / 256.0 * self.bins).floor().clamp(0, self.bins - 1).long()
        code = (cell[:, 0] * self.bins + cell[:, 1]) * self.bins + cell[:, 2]  # (B*T, h, w)
        code = code.reshape(b, -1)
        hist = torch.zeros(b, self.bins ** 3, device=x.device).scatter_add_(
            1, code, torch.ones_like(code, dtype=torch.float32))
        pooled = (hist / hist.sum(1, keepdim=True)).sqrt()
        return pooled.unsqueeze(1), pooled
