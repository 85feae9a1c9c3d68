"""Tube masks: one random spatial mask repeated over every temporal slice, so a hidden patch
cannot be recovered from the same place in a neighbouring frame (VideoMAE's tube masking).

The same mask goes to every modality of a clip, so teachers and student see the same tokens.
Tokens are ordered t * Hp * Wp + h * Wp + w; True means hidden.
"""
from __future__ import annotations

from typing import Sequence

import gin
import numpy as np


class TubeMaskGenerator:
    """`grid` (T', H', W') tokens; exactly round(ratio * H' * W') positions hidden per slice."""

    def __init__(self, grid: Sequence[int], ratio: float):
        if len(grid) != 3 or min(grid) < 1:
            raise ValueError(f"tube mask grid must be three positive sizes (T', H', W'), got {tuple(grid)}")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"tube mask ratio must be within [0, 1], got {ratio}")
        self.grid = tuple(int(size) for size in grid)
        self.ratio = float(ratio)
        self.num_spatial = self.grid[1] * self.grid[2]
        self.num_masked_spatial = int(round(self.ratio * self.num_spatial))

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.num_spatial

    @property
    def num_masked(self) -> int:
        return self.grid[0] * self.num_masked_spatial

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        spatial = np.zeros(self.num_spatial, dtype=bool)
        spatial[rng.permutation(self.num_spatial)[: self.num_masked_spatial]] = True
        return np.tile(spatial, self.grid[0])

    def __repr__(self) -> str:
        return f"TubeMaskGenerator(grid={self.grid}, ratio={self.ratio})"


@gin.configurable("tube_mask")
def tube_mask(num_frames: int = 16, input_size: Sequence[int] = (224, 384), patch_size: int = 16,
              tubelet_size: int = 2, ratio: float = 0.75) -> TubeMaskGenerator:
    """A generator for a model's token grid, from its input and patch sizes."""
    height, width = input_size
    if num_frames % tubelet_size or height % patch_size or width % patch_size:
        raise ValueError(f"tube_mask: input {num_frames}x{height}x{width} is not divisible by the tubelet "
                         f"{tubelet_size} and patch {patch_size}")
    return TubeMaskGenerator((num_frames // tubelet_size, height // patch_size, width // patch_size), ratio)
