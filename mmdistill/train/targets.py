"""Reconstruction targets for masked autoencoding: per-tubelet normalised pixels."""
from __future__ import annotations

import torch


def patchify(video: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, N, tubelet*patch*patch, C) in the encoder's token order."""
    b, c, t, h, w = video.shape
    x = video.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # b, t', h', w', tubelet, patch, patch, c
    return x.reshape(b, (t // tubelet) * (h // patch) * (w // patch), tubelet * patch * patch, c)


def unpatchify(patches: torch.Tensor, shape: tuple[int, ...], tubelet: int, patch: int) -> torch.Tensor:
    """Inverse of `patchify`: (B, N, tubelet*patch*patch, C) -> (B, C, T, H, W)."""
    b, c, t, h, w = shape
    x = patches.reshape(b, t // tubelet, h // patch, w // patch, tubelet, patch, patch, c)
    return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, c, t, h, w)


def patch_stats(patches: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Each tubelet's per-channel mean and unbiased std + eps over P: (..., 1, C) each."""
    mean = patches.mean(dim=-2, keepdim=True)
    return mean, patches.var(dim=-2, unbiased=True, keepdim=True).sqrt() + eps


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Standardise each tubelet's pixels per channel: (..., P, C) over P, unbiased std + eps."""
    mean, std = patch_stats(patches, eps)
    return (patches - mean) / std


def normalized_patch_targets(video: torch.Tensor, tubelet: int, patch: int, eps: float = 1e-6
                             ) -> torch.Tensor:
    """VideoMAE's target: each tubelet's pixels standardised per channel, flattened to (B, N, P*C).

    Standardising per tubelet cancels any per-channel affine normalisation applied earlier (up to
    eps), so inputs of any modality (RGB, flow, heatmaps) need no un-normalising first.
    """
    return normalize_patches(patchify(video.float(), tubelet, patch), eps).flatten(2)
