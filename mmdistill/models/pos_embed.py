"""Position tables for the token grid (T', H', W') and the one resample used whenever a grid changes.

Why a 3-D resample: VideoMAE's tables are indexed by the flattened token `t*H'*W' + h*W' + w`.
Building a fresh table for a new input size (what the official code does at 224x384) gives every
token a position it never saw in training. Resampling the trained table on its (T', H', W') grid
keeps neighbouring tokens' positions where the checkpoint learned them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Grid = tuple[int, int, int]


def sinusoid_table(num_tokens: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed 1-D sinusoid table over the flattened token index, shape (1, N, D).

    Even channels hold sin, odd channels cos, of `pos / 10000^(2*(j//2)/D)`; computed in float64
    like the reference (numpy) so tables agree to float32 rounding.
    """
    position = torch.arange(num_tokens, dtype=torch.float64)[:, None]
    channel = torch.arange(dim, dtype=torch.float64)
    angle = position / torch.pow(10000.0, 2 * torch.div(channel, 2, rounding_mode="floor") / dim)
    table = torch.empty(num_tokens, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.float().unsqueeze(0)


def resample_pos_embed(table: torch.Tensor, src_grid: Grid, dst_grid: Grid) -> torch.Tensor:
    """Resample a (1, N, D) or (N, D) table from `src_grid` to `dst_grid` (each (T', H', W')).

    H', W' are interpolated per frame (bicubic), T' linearly; a step whose size is unchanged is
    skipped, so equal grids return the input unchanged.
    """
    src_grid, dst_grid = tuple(int(s) for s in src_grid), tuple(int(s) for s in dst_grid)
    squeeze = table.dim() == 2
    if squeeze:
        table = table.unsqueeze(0)
    if table.dim() != 3 or table.shape[0] != 1:
        raise ValueError(f"position table must be (1, N, D) or (N, D), got {tuple(table.shape)}")
    if table.shape[1] != math.prod(src_grid):
        raise ValueError(f"position table has {table.shape[1]} tokens, but grid {src_grid} "
                         f"has {math.prod(src_grid)}")
    if src_grid == dst_grid:
        return table.squeeze(0) if squeeze else table
    dim = table.shape[-1]
    (t0, h0, w0), (t1, h1, w1) = src_grid, dst_grid
    out_dtype = table.dtype
    x = table.float().reshape(t0, h0, w0, dim).permute(0, 3, 1, 2)  # (T, D, H, W): frames as batch
    if (h0, w0) != (h1, w1):
        x = F.interpolate(x, size=(h1, w1), mode="bicubic", align_corners=False)
    if t0 != t1:
        x = x.permute(1, 2, 3, 0).reshape(1, dim * h1 * w1, t0)  # (1, D*H*W, T): time as length
        x = F.interpolate(x, size=t1, mode="linear", align_corners=False)
        x = x.reshape(dim, h1, w1, t1).permute(3, 0, 1, 2)
    out = x.permute(0, 2, 3, 1).reshape(1, t1 * h1 * w1, dim).to(out_dtype)
    return out.squeeze(0) if squeeze else out


def guess_grid(num_tokens: int, dst_grid: Grid) -> Grid | None:
    """Best guess of the grid a table of `num_tokens` was trained on, when nothing recorded it.

    Assumes a square spatial grid (every released VideoMAE is trained at 224x224) and prefers the
    candidate sharing a side or the frame count with `dst_grid`. None when no candidate fits.
    """
    if num_tokens == math.prod(dst_grid):
        return tuple(dst_grid)
    candidates = [(num_tokens // (s * s), s, s) for s in range(1, math.isqrt(num_tokens) + 1)
                  if num_tokens % (s * s) == 0]
    t1, h1, w1 = dst_grid
    for wanted in (lambda g: g[1] in (h1, w1), lambda g: g[0] == t1):
        matches = [g for g in candidates if wanted(g)]
        if len(matches) == 1:
            return matches[0]
    return None
