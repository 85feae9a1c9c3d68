"""Tube masks: one random spatial mask repeated over every temporal slice, so a hidden patch
cannot be recovered from the same place in a neighbouring frame (VideoMAE's tube masking).

The same mask goes to every modality of a clip, so teachers and student see the same tokens.
Tokens are ordered t * Hp * Wp + h * Wp + w; True means hidden. Models never see the bool mask:
`token_indices` turns a batch's masks into the token indices they take.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


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


class BernoulliMaskGenerator:
    """Each of the `grid`'s tokens hidden with probability `ratio`, independently: the tennis
    fork's distillation mask (datamodule/dataset/tennis_unlabel_combined_multimodal_dataset.py:
    179-184, `torch.rand(N) < 0.75`, one per clip, :247-250, shared by its four models). Visible
    counts differ between clips; `batch_token_indices` pads them with a validity mask. A draw
    that hides every token shows one, at random: a clip must leave the encoder something."""

    def __init__(self, grid: Sequence[int], ratio: float):
        if len(grid) != 3 or min(grid) < 1:
            raise ValueError(f"bernoulli mask grid must be three positive sizes (T', H', W'), "
                             f"got {tuple(grid)}")
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"a bernoulli mask hides each token with probability mask_ratio, "
                             f"which must be within (0, 1), got {ratio}: the tennis fork uses "
                             f"0.75; for no mask set the mask_ratio to 0")
        self.grid = tuple(int(size) for size in grid)
        self.ratio = float(ratio)

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        mask = rng.random(self.num_tokens) < self.ratio
        if mask.all():
            mask[rng.integers(self.num_tokens)] = False
        return mask

    def __repr__(self) -> str:
        return f"BernoulliMaskGenerator(grid={self.grid}, ratio={self.ratio})"


MASK_TYPES = {"tube": TubeMaskGenerator, "bernoulli": BernoulliMaskGenerator}


def mask_generator(mask_type: str, grid: Sequence[int], ratio: float):
    """The generator of `mask_type` ('tube' | 'bernoulli') for a token grid."""
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type={mask_type!r}: choose 'tube' (VideoMAE's: the same spatial "
                         f"mask in every time slice, an exact count) or 'bernoulli' (each token "
                         f"hidden independently, the tennis fork's distillation mask)")
    return MASK_TYPES[mask_type](grid, ratio)


def tube_mask(num_frames: int = 16, input_size: Sequence[int] = (224, 384), patch_size: int = 16,
              tubelet_size: int = 2, ratio: float = 0.75) -> TubeMaskGenerator:
    """A generator for a model's token grid, from its input and patch sizes. Not a gin
    configurable: the stages build the mask from the model's grid and the stage's one mask ratio
    (distill.mask_ratio, pretrain.mask_ratio), so `tube_mask.*` is refused at parse time."""
    height, width = input_size
    if num_frames % tubelet_size or height % patch_size or width % patch_size:
        raise ValueError(f"tube_mask: input {num_frames}x{height}x{width} is not divisible by the tubelet "
                         f"{tubelet_size} and patch {patch_size}")
    return TubeMaskGenerator((num_frames // tubelet_size, height // patch_size, width // patch_size), ratio)


def token_indices(mask: torch.Tensor, num_tokens: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(visible_index (B, n_visible), masked_index (B, n_masked)) of a bool (B, N) tube mask
    (True = masked), each ascending, from one sort.

    Selecting tokens with a bool mask makes the host wait for the device in every model that does
    it (the output size is data-dependent); this pays that wait once per batch (reading the
    visible count), and the student and every teacher then share the indices.
    `num_tokens`: the models' N, when the caller knows it, to refuse a mask of another grid.
    """
    if mask.dtype != torch.bool or mask.dim() != 2:
        raise ValueError(f"mask must be a bool (B, N) tensor with True = masked, got {mask.dtype} "
                         f"{tuple(mask.shape)}")
    if num_tokens is not None and mask.shape[1] != num_tokens:
        raise ValueError(f"mask must be bool (B, N) = ({mask.shape[0]}, {num_tokens}) with True = "
                         f"masked, got {tuple(mask.shape)}: it was made for another token grid")
    visible = (~mask).sum(dim=1)
    low, high = torch.stack([visible.min(), visible.max()]).tolist()  # the one host sync
    if low != high:
        raise ValueError(f"every clip in a batch must hide the same number of tokens; visible "
                         f"counts per clip: {visible.tolist()}")
    # A stable sort puts the visible (False) tokens first, each part in its original order.
    order = torch.sort(mask.to(torch.uint8), dim=1, stable=True).indices
    return order[:, :low], order[:, low:]


def batch_token_indices(mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a finished batch carries for its bool (B, N) mask, with one host sync: when every
    clip hides as many tokens (tube masks), `token_indices`'s 'visible_index' and
    'masked_index'; otherwise (bernoulli masks) 'visible_index' (B, n_max), each row's visible
    tokens ascending then padded with masked ones up to the longest row, and 'visible_valid'
    (B, n_max) bool, False on the padding. Models give the padding no attention and leave it
    out of their mean (`VideoViT.forward`), so each clip's features are its own."""
    if mask.dtype != torch.bool or mask.dim() != 2:
        raise ValueError(f"mask must be a bool (B, N) tensor with True = masked, got {mask.dtype} "
                         f"{tuple(mask.shape)}")
    visible = (~mask).sum(dim=1)
    low, high = torch.stack([visible.min(), visible.max()]).tolist()  # the one host sync
    order = torch.sort(mask.to(torch.uint8), dim=1, stable=True).indices
    if low == high:
        return {"visible_index": order[:, :low], "masked_index": order[:, low:]}
    valid = torch.arange(high, device=mask.device) < visible[:, None]
    return {"visible_index": order[:, :high], "visible_valid": valid}
