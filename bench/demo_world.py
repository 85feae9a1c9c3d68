"""Measure the cross-domain demo world: what each modality tells, and what transfers.

Part 1, probes (seconds): logistic regression on simple hand-made features per modality, 5-fold
cross-validated within each domain (source classes in the source look; target few-shot classes
in the target look), and source -> target transfer: fit on source.json, test on the same source
actions rendered in the target look (a domain shift with the classes held fixed).
Part 2, tiny ViTs (minutes, CPU): one VideoViT per modality (the demo's size: 128 wide, 3
blocks, 8x64x64, patch 16) trained by cross-entropy on source.json (plain torch loop on the
project's ClipDataset), then 5-way 1-shot / 5-shot few-shot (logistic regression, the project's
eval.fewshot.evaluate) on the target novel classes (fewshot.json), against an untrained ViT.

    python bench/demo_world.py                       # writes/reuses .cache/demo_world
    python bench/demo_world.py --skip-vit            # probes only
    python bench/demo_world.py --epochs 40 --modalities rgb flow
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmdistill.demo.cache import ensure_demo_dataset  # noqa: E402
from mmdistill.demo.clip import clip_rng, render_clip  # noqa: E402
from mmdistill.demo.writer import demo_data_params, plan_videos  # noqa: E402

TRANSFER_CODE = 99  # random-stream code of the source actions re-rendered in the target look


# ----------------------------------------------------------------------------- probes
def colour_features(clip):
    """Colour histogram (8 bins per channel): appearance with no shape in it."""
    pixels = clip.frames.reshape(-1, 3)
    return np.concatenate([np.histogram(pixels[:, c], bins=8, range=(0, 256))[0] / len(pixels)
                           for c in range(3)])


def mean_frame_features(clip):
    """The clip's mean frame at 8x8: colours plus the figure's average silhouette."""
    mean = np.asarray(Image.fromarray(clip.frames.mean(0).astype(np.uint8)).resize((8, 8)))
    return mean.ravel() / 255


def pixel_features(clip):
    """Raw RGB of 4 frames at 16x16."""
    return np.concatenate([np.asarray(Image.fromarray(f).resize((16, 16))).ravel() / 255
                           for f in clip.frames[::max(len(clip.frames) // 4, 1)][:4]])


def flow_features(clip, chunks=4, bands=3, bins=8):
    """Magnitude-weighted flow direction histograms per time chunk and horizontal band, with
    left/right folded together (|dx|) so mirrored clips match."""
    flow = clip.flow  # (T-1, 2, H, W)
    height = flow.shape[2]
    feats = []
    for part in np.array_split(flow, chunks):
        for band in np.array_split(np.arange(height), bands):
            dx, dy = np.abs(part[:, 0, band]).ravel(), part[:, 1, band].ravel()
            magnitude = np.hypot(dx, dy)
            angle = np.arctan2(dy, dx)  # in [-pi/2, pi/2] since dx >= 0
            hist = np.histogram(angle, bins=bins, range=(-np.pi / 2, np.pi / 2),
                                weights=magnitude)[0]
            feats.append(hist / (flow.shape[2] * flow.shape[3]))
    return np.log1p(np.concatenate(feats))


def pose_features(clip):
    """Keypoint trajectories, centred on the hips, scaled by the figure height, |x|."""
    xy = clip.keypoints - clip.keypoints[:, 11:13].mean(axis=(0, 1))
    xy = xy / max(np.ptp(clip.keypoints[..., 1]), 1e-6)
    xy[..., 0] = np.abs(xy[..., 0])
    return np.concatenate([xy[::2].ravel(), np.abs(np.diff(xy, axis=0)).mean(0).ravel()])


PROBES = {'appearance: colour histogram': colour_features,
          'mean frame 8x8 (colours + average silhouette)': mean_frame_features,
          'raw RGB pixels (4 frames at 16x16), linear': pixel_features,
          'motion: flow direction histograms over time': flow_features,
          'pose: normalised keypoint trajectories': pose_features}


def render_split(params, name, look=None, code=None):
    """The clips of one split, rendered in memory as the writer does (or in another look)."""
    clips, labels = [], []
    for split, _, action, index in plan_videos(params):
        if split.name != name:
            continue
        cue = ((split.classes.index(action) / len(split.classes), split.cue)
               if split.cue and look is None else None)
        rng = clip_rng(params['seed'], split.code if code is None else code, index)
        clips.append(render_clip(action, rng, params['num_frames'], tuple(params['size']),
                                 look=look or split.look, cue=cue))
        labels.append(action)
    return clips, np.array(labels)


def run_probes(params):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    source, source_y = render_split(params, 'source')
    target, target_y = render_split(params, 'fewshot')
    shifted, shifted_y = render_split(params, 'source', look=params['target_look'],
                                      code=TRANSFER_CODE)
    model = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
    rows = []
    for name, featurise in PROBES.items():
        fs, ft, fx = (np.stack([featurise(c) for c in clips]) for clips in (source, target,
                                                                              shifted))
        within_source = cross_val_score(model(), fs, source_y, cv=5).mean()
        within_target = cross_val_score(model(), ft, target_y, cv=5).mean()
        transfer = model().fit(fs, source_y).score(fx, shifted_y)
        rows.append((name, within_source, within_target, transfer))
    n_source, n_target = len(set(source_y)), len(set(target_y))
    print(f'\nProbes (5-fold CV; chance {1 / n_source:.2f} source, {1 / n_target:.2f} target)')
    print('| features | source (studio) | target (street) | source -> target look |')
    print('|---|---|---|---|')
    for name, s, t, x in rows:
        print(f'| {name} | {s:.2f} | {t:.2f} | {x:.2f} |')
    return rows


# ----------------------------------------------------------------------------- tiny ViTs
def configure_clips():
    import gin

    import mmdistill.data.dataset  # noqa: F401  registers the clip configurables
    gin.parse_config('temporal_sampling.num_frames = 8\n'
                     'temporal_sampling.sampling_rate = 2\n'
                     'spatial_transform.short_side = None\n'
                     'spatial_transform.crop_size = (64, 64)\n'
                     'skeleton_heatmaps.sigma = 2.0\n')


def load_split(path, modalities):
    """Every clip of an annotation file as tensors (eval transforms: no crop jitter, no flip)."""
    from mmdistill.data.dataset import build_clip_dataset
    dataset = build_clip_dataset(path, mode='eval', modalities=modalities, labeled=True)
    items = [dataset[i] for i in range(len(dataset))]
    tensors = {m: torch.stack([item[m] for item in items]) for m in modalities}
    return tensors, torch.tensor([item['label'] for item in items]), list(dataset.class_names)


def tiny_vit(in_chans):
    from mmdistill.models.vit import video_vit
    return video_vit(size='tiny', in_chans=in_chans, num_frames=8, img_size=(64, 64),
                     patch_size=16, embed_dim=128, depth=3, num_heads=4, use_mean_pooling=True)


def flip(x, modality):
    """Horizontal flip of a batch; flow's dx changes sign. Skeleton heatmaps would also need
    their left/right joints swapped, so skeletons are not flipped here."""
    if modality == 'skeleton':
        return x
    x = x.flip(-1)
    if modality == 'flow':
        x = torch.cat([-x[:, :1], x[:, 1:]], 1)
    return x


def train_ce(x, y, modality, epochs, lr, seed):
    torch.manual_seed(seed)
    encoder = tiny_vit(x.shape[1])
    head = torch.nn.Linear(128, int(y.max()) + 1)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    steps = epochs * ((len(y) + 15) // 16)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps,
                                                   pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=g).split(16):
            xb = x[batch]
            if torch.rand(1, generator=g) < 0.5:
                xb = flip(xb, modality)
            loss = torch.nn.functional.cross_entropy(head(encoder(xb)[1]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        accuracy = (head(encoder(x)[1]).argmax(1) == y).float().mean().item()
    return encoder, accuracy


def fewshot(encoder, x, y, class_names, episodes):
    from mmdistill.eval.features import FeatureBank
    from mmdistill.eval.fewshot import evaluate
    with torch.no_grad():
        pooled = torch.cat([encoder(b)[1] for b in x.split(32)])
    bank = FeatureBank(y, class_names, {'pooled': pooled.float()}, torch.arange(len(y)))
    report = evaluate(bank, [(5, 1, 15, episodes), (5, 5, 15, episodes)])
    return [r.accuracy.mean for r in report.results]  # already in percent


def run_vits(root, modalities, epochs, lr, episodes, seed):
    configure_clips()
    source, source_y, _ = load_split(root / 'source.json', modalities)
    target, target_y, target_names = load_split(root / 'fewshot.json', modalities)
    print(f'\nTiny ViTs: cross-entropy on source.json ({len(source_y)} clips), {epochs} epochs; '
          f'few-shot on fewshot.json ({len(target_y)} clips, {len(target_names)} classes), '
          f'{episodes} episodes')
    print('| modality | source train acc | target 5w1s | target 5w5s | untrained 5w1s | '
          'untrained 5w5s |')
    print('|---|---|---|---|---|---|')
    rows = []
    for modality in modalities:
        began = time.perf_counter()
        torch.manual_seed(seed)
        untrained = fewshot(tiny_vit(source[modality].shape[1]).eval(), target[modality],
                            target_y, target_names, episodes)
        encoder, train_acc = train_ce(source[modality], source_y, modality, epochs, lr, seed)
        trained = fewshot(encoder.eval(), target[modality], target_y, target_names, episodes)
        rows.append((modality, train_acc, *trained, *untrained))
        print(f'| {modality} | {100 * train_acc:.0f}% | {trained[0]:.1f} | {trained[1]:.1f} | '
              f'{untrained[0]:.1f} | {untrained[1]:.1f} |  ({time.perf_counter() - began:.0f} s)',
              flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', default='.cache/demo_world')
    parser.add_argument('--seed', type=int, default=0, help='of the world and of training')
    parser.add_argument('--skip-vit', action='store_true')
    parser.add_argument('--skip-probes', action='store_true')
    parser.add_argument('--modalities', nargs='+', default=['rgb', 'flow', 'skeleton'])
    parser.add_argument('--epochs', type=int, default=30)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--episodes', type=int, default=400)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = demo_data_params(world='cross_domain', seed=args.seed)
    began = time.perf_counter()
    root = ensure_demo_dataset(args.root, progress=False, world='cross_domain', seed=args.seed)
    print(f'World: {root} ({time.perf_counter() - began:.1f} s); classes '
          f'{json.dumps(json.loads((root / "manifest.json").read_text())["classes"])}')
    if not args.skip_probes:
        run_probes(params)
    if not args.skip_vit:
        run_vits(Path(root), args.modalities, args.epochs, args.lr, args.episodes, args.seed)


if __name__ == '__main__':
    main()
