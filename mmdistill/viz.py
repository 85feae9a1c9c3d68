"""Pictures of what a run learned: masked-autoencoder reconstructions as a PNG grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmdistill.data.device_batches import DeviceBatches
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
    """(input, masked input, reconstruction), each (B, C, T, H, W) on the CPU, of a finished
    batch (`mmdistill.data.device_batches`).

    Predicted tubelets are in normalised-target units; they are mapped back with each tubelet's
    own mean and std (as VideoMAE's visualisation does), and visible tubelets keep the input.
    """
    model = objective.trainable
    video = batch[getattr(objective, "reconstruction_input", objective.modality)].float()
    visible_index, masked_index = batch["visible_index"], batch["masked_index"]
    with torch.autocast(video.device.type, enabled=False):
        pred = model(video, visible_index, masked_index).float()
    tubelet, patch = model.tubelet_size, model.patch_size
    patches = patchify(video, tubelet, patch)  # (B, N, P, C)
    b, n, p, c = patches.shape
    pred = pred.reshape(b, -1, p, c)
    masked_tubelets = masked_index[:, :, None, None]
    if objective.normalize_target:
        mean, std = patch_stats(patches)  # the statistics the normalised targets used
        pred = (pred * torch.gather(std, 1, masked_tubelets.expand(-1, -1, 1, c))
                + torch.gather(mean, 1, masked_tubelets.expand(-1, -1, 1, c)))
    where = masked_tubelets.expand(-1, -1, p, c)
    out = patches.scatter(1, where, pred)
    masked = patches.scatter(1, where, torch.zeros_like(pred))
    shape = video.shape
    return (video.cpu(), unpatchify(masked, shape, tubelet, patch).cpu(),
            unpatchify(out, shape, tubelet, patch).cpu())


def save_reconstructions(objective, loader, ctx, num_clips: int = 4, frames: int = 4) -> Path:
    """Rows: clips x (input, masked, reconstruction); columns: `frames` evenly spaced frames."""
    batch = next(iter(DeviceBatches(loader, ctx.device)))
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
