"""Pictures of what a run learned: masked-autoencoder reconstructions as a PNG grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmdistill.train.loop import to_device
from mmdistill.train.targets import patch_stats, patchify, unpatchify


def _to_image(frame: torch.Tensor) -> np.ndarray:
    """(C, H, W) -> uint8 (H, W, 3): RGB as is, other channel counts as their max, each
    min-max scaled per picture so every modality is visible."""
    x = frame.float()
    x = x if x.shape[0] == 3 else x.abs().amax(dim=0, keepdim=True).expand(3, -1, -1)
    lo, hi = x.min(), x.max()
    x = (x - lo) / (hi - lo + 1e-8)
    return (x.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


@torch.no_grad()
def reconstruct(objective, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input, masked input, reconstruction), each (B, C, T, H, W) on the CPU.

    Predicted tubelets are in normalised-target units; they are mapped back with each tubelet's
    own mean and std (as VideoMAE's visualisation does), and visible tubelets keep the input.
    """
    model = objective.trainable
    video, mask = batch[objective.modality].float(), batch["mask"]
    with torch.autocast(video.device.type, enabled=False):
        pred = model(video, mask).float()
    tubelet, patch = model.tubelet_size, model.patch_size
    patches = patchify(video, tubelet, patch)  # (B, N, P, C)
    b, n, p, c = patches.shape
    out = patches.clone()
    pred = pred.reshape(b, -1, p, c)
    if objective.normalize_target:
        mean, std = patch_stats(patches)  # the statistics the normalised targets used
        pred = pred * std[mask].reshape(b, -1, 1, c) + mean[mask].reshape(b, -1, 1, c)
    out[mask] = pred.reshape(-1, p, c)
    masked = patches.clone()
    masked[mask] = 0
    shape = video.shape
    return (video.cpu(), unpatchify(masked, shape, tubelet, patch).cpu(),
            unpatchify(out, shape, tubelet, patch).cpu())


def save_reconstructions(objective, loader, ctx, num_clips: int = 4, frames: int = 4) -> Path:
    """Rows: clips x (input, masked, reconstruction); columns: `frames` evenly spaced frames."""
    batch = to_device(next(iter(loader)), ctx.device)
    if hasattr(loader.dataset, "finish_batch"):  # heatmaps drawn on the device, if so configured
        batch = loader.dataset.finish_batch(batch)
    objective.eval()
    video, masked, recon = reconstruct(objective, batch)
    objective.train()
    t = video.shape[2]
    picks = np.linspace(0, t - 1, min(frames, t)).round().astype(int)
    rows = []
    for i in range(min(num_clips, video.shape[0])):
        for source in (video, masked, recon):
            rows.append(np.concatenate([_to_image(source[i, :, f]) for f in picks], axis=1))
    grid = np.concatenate(rows, axis=0)
    path = ctx.dir / "reconstructions.png"
    Image.fromarray(grid).save(path)
    return path
