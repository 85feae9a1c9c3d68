"""Features of every labelled clip, computed once per view, optionally cached on disk.

MM-CDFSL's test step re-runs the network on every episode (5 support clips, 75 queries under two
masks: 155 clip forwards an episode, 62,000 for 400). Here each clip goes through the network
once per view and episodes index the result, so any number of episodes and settings costs
classifier time only.

Views in a `FeatureBank`:
- `pooled` (N, D): the model's pooled feature of the whole clip;
- `pooled_masked` (M, N, D): the pooled feature of M tube-masked copies of each clip
  (MM-CDFSL's "ensemble masked inference"); view v of clip i always gets the same mask, from
  (seed, v, dataset index), whatever the batch size or order;
- `cmt_<name>` (N, D'): the mean over tokens of a cross-modal translation head's output.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from mmdistill.data.device_batches import DeviceBatches
from mmdistill.data.masking import TubeMaskGenerator, token_indices
from mmdistill.progress import progress as progress_bar

POOLED = "pooled"
MASKED = "pooled_masked"
HEAD_PREFIX = "cmt_"
CACHE_FORMAT = "mmdistill-features"
CACHE_VERSION = 1

MaskFn = Callable[[int, torch.Tensor], torch.Tensor]  # (view, clip indices) -> bool (B, N)


@dataclasses.dataclass
class FeatureBank:
    """Per-clip features of a labelled clip set, rows ordered by dataset index."""

    labels: torch.Tensor  # (N,) long, indexes class_names
    class_names: list[str]
    views: dict[str, torch.Tensor]  # name -> (N, D) or, for MASKED, (M, N, D); float32, CPU
    indices: torch.Tensor  # (N,) long, the dataset index of each row
    num_skipped: int = 0  # clips the loader dropped (on_bad_clip='skip'); not in the bank
    config: dict[str, Any] = dataclasses.field(default_factory=dict)  # how the views were made
    key: str | None = None  # cache key, when the bank belongs to a cache file

    def __post_init__(self):
        n = self.labels.shape[0]
        for name, value in self.views.items():
            rows = value.shape[1] if name == MASKED else value.shape[0]
            if rows != n:
                raise ValueError(f"feature view {name!r} has {rows} rows for {n} labelled clips")

    @property
    def num_clips(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_mask_views(self) -> int:
        return int(self.views[MASKED].shape[0]) if MASKED in self.views else 0

    @property
    def head_views(self) -> list[str]:
        return sorted(v for v in self.views if v.startswith(HEAD_PREFIX))

    def restrict_classes(self, names: Sequence[str]) -> "FeatureBank":
        """The rows of some classes only (e.g. a validation class split), relabelled 0..len-1."""
        unknown = sorted(set(names) - set(self.class_names))
        if unknown:
            raise ValueError(f"classes {unknown} are not in this feature bank ({self.class_names})")
        names = list(names)
        old_to_new = torch.full((len(self.class_names),), -1, dtype=torch.long)
        for new, name in enumerate(names):
            old_to_new[self.class_names.index(name)] = new
        new_labels = old_to_new[self.labels]
        keep = new_labels >= 0
        views = {k: (v[:, keep] if k == MASKED else v[keep]) for k, v in self.views.items()}
        return FeatureBank(new_labels[keep], names, views, self.indices[keep], self.num_skipped,
                           dict(self.config), key=None)

    def save(self, path: str | Path) -> None:
        """Atomic write: a crash never leaves a truncated cache file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": self.key,
                   "labels": self.labels, "class_names": list(self.class_names),
                   "views": dict(self.views), "indices": self.indices,
                   "num_skipped": self.num_skipped, "config_json": json.dumps(self.config)}
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, key: str | None = None) -> "FeatureBank":
        """Read a cache file; with `key`, refuse a file made from other weights/data/views."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature cache {path} does not exist")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
            raise ValueError(f"{path} is not a mmdistill feature cache; delete it or point the "
                             "cache elsewhere")
        if payload["version"] != CACHE_VERSION:
            raise ValueError(f"{path} is feature cache version {payload['version']}, this code "
                             f"reads version {CACHE_VERSION}; delete the file to re-extract")
        if key is not None and payload["key"] != key:
            raise ValueError(f"{path} holds features for another checkpoint/data/view config "
                             f"(key {payload['key']}, wanted {key}); delete it to re-extract")
        return cls(payload["labels"], list(payload["class_names"]), dict(payload["views"]),
                   payload["indices"], int(payload["num_skipped"]),
                   json.loads(payload["config_json"]), key=payload["key"])


def tube_mask_fn(grid: Sequence[int], ratio: float, seed: int) -> MaskFn:
    """`mask_fn(view, clip_indices) -> (B, N) bool`: one fixed tube mask per (seed, view, clip)."""
    generator = TubeMaskGenerator(tuple(int(g) for g in grid), ratio)

    def mask_fn(view: int, clip_indices: torch.Tensor) -> torch.Tensor:
        masks = [generator(np.random.default_rng([int(seed), int(view), int(i)]))
                 for i in clip_indices.tolist()]
        return torch.from_numpy(np.stack(masks)).bool()

    return mask_fn


def _batch_field(batch: Mapping[str, Any], name: str) -> torch.Tensor:
    if name not in batch:
        raise KeyError(f"few-shot feature extraction needs batch[{name!r}] "
                       f"(keys: {sorted(batch)}); "
                       "use a ClipDataset with the model's modality (evaluate.modalities) and "
                       "labelled clips")
    return torch.as_tensor(batch[name])


@torch.no_grad()
def extract_features(model: nn.Module, loader, device: torch.device | str = "cpu",
                     amp_dtype: torch.dtype | None = None, mask_views: int = 0,
                     mask_ratio: float = 0.75, grid: Sequence[int] | None = None,
                     extra_heads: Mapping[str, nn.Module] | None = None, seed: int = 0,
                     class_names: Sequence[str] | None = None, input_key: str = "rgb",
                     progress: bool = True) -> FeatureBank:
    """Run `model(x, visible_index) -> (tokens, pooled)` once per clip and view; see the module
    docstring. Batches come through `mmdistill.data.device_batches`, like training's.

    `extra_heads` maps a name (e.g. a teacher modality) to a token-wise head; its view is the mean
    over tokens of `head(tokens)`. Models are put in eval mode and restored afterwards.
    """
    device = torch.device(device)
    if int(mask_views) != mask_views or mask_views < 0:
        raise ValueError(f"mask_views must be a non-negative integer, got {mask_views!r}")
    if class_names is None:
        class_names = getattr(getattr(loader, "dataset", None), "class_names", None)
        if class_names is None:
            raise ValueError("pass class_names= (the loader's dataset has no class_names)")
    extra_heads = dict(extra_heads or {})
    mask_fn = None
    if mask_views:
        grid = grid if grid is not None else getattr(model, "grid_size", None)
        if grid is None:
            raise ValueError("masked views need the token grid: pass grid=(T', H', W') or use a "
                             "model with a grid_size attribute")
        mask_fn = tube_mask_fn(grid, mask_ratio, seed)

    modules = [model, *extra_heads.values()]
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    autocast = dict(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    labels, indices, pooled, heads = [], [], [], {name: [] for name in extra_heads}
    masked: list[list[torch.Tensor]] = [[] for _ in range(mask_views)]
    num_skipped = 0
    num_tokens = math.prod(grid) if mask_views else None
    try:
        batches = DeviceBatches(loader, device)
        for batch in progress_bar(batches, desc="few-shot features", disable=not progress):
            num_skipped += int(batch.get("num_skipped", 0))
            if set(batch) <= {"num_skipped"}:  # every clip of this batch was skipped as bad
                continue
            x = _batch_field(batch, input_key)
            batch_labels = _batch_field(batch, "label").long().reshape(-1).cpu()
            batch_indices = _batch_field(batch, "index").long().reshape(-1).cpu()
            if (batch_labels < 0).any():
                videos = batch.get("video", batch_indices.tolist())
                raise ValueError(f"unlabelled clips (label -1) in the few-shot set, e.g. {videos}; "
                                 "point the evaluation at the labelled annotation file")
            with torch.autocast(**autocast):
                tokens, features = model(x)
                for name, head in extra_heads.items():
                    heads[name].append(head(tokens).float().mean(1).cpu())
                for v in range(mask_views):
                    mask = mask_fn(v, batch_indices).to(device, non_blocking=True)
                    visible_index, _ = token_indices(mask, num_tokens)
                    masked[v].append(model(x, visible_index=visible_index)[1].float().cpu())
            pooled.append(features.float().cpu())
            labels.append(batch_labels)
            indices.append(batch_indices)
    finally:
        for m, training in zip(modules, was_training):
            m.train(training)
    if not labels:
        raise ValueError("the few-shot loader yielded no clips; check the annotation file and "
                         "that clips were not all skipped")

    indices_all = torch.cat(indices)
    order = torch.argsort(indices_all)  # rows by dataset index: independent of loader order
    if torch.unique(indices_all).numel() != indices_all.numel():
        raise ValueError("the loader yielded a clip twice (duplicate 'index'); evaluate with a "
                         "non-distributed, non-repeating loader")
    views = {POOLED: torch.cat(pooled)[order]}
    if mask_views:
        views[MASKED] = torch.stack([torch.cat(m)[order] for m in masked])
    for name, feats in heads.items():
        views[HEAD_PREFIX + name] = torch.cat(feats)[order]
    config = {"mask_views": int(mask_views),
              "mask_ratio": float(mask_ratio) if mask_views else None,
              "grid": [int(g) for g in grid] if mask_views else None, "seed": int(seed),
              "heads": sorted(extra_heads), "input_key": input_key}
    return FeatureBank(torch.cat(labels)[order], list(class_names), views, indices_all[order],
                       num_skipped, config)


# --- cache keys ----------------------------------------------------------------------------------

def file_fingerprint(path: str | Path) -> list[list]:
    """(relative name, size, mtime_ns) of a file, or of every file under a directory checkpoint."""
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        return [[str(path.resolve()), stat.st_size, stat.st_mtime_ns]]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return [[str(path.resolve())]] + [
            [str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    raise FileNotFoundError(f"{path} does not exist (needed for the feature cache key)")


def weights_fingerprint(modules: Sequence[nn.Module]) -> str:
    """Hash of the weights themselves, for models that were never saved to a file."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def dataset_fingerprint(dataset) -> str:
    """Hash of what the dataset yields: its class names and clip records (in order)."""
    clips = getattr(dataset, "clips", None)
    if clips is None:
        raise ValueError(f"{type(dataset).__name__} has no `clips` list to fingerprint for the "
                         "feature cache; disable the cache (evaluate.cache_features = False)")
    digest = hashlib.sha256()
    digest.update(json.dumps(list(getattr(dataset, "class_names", []))).encode())
    for clip in clips:
        digest.update(repr(clip).encode())
    # How clips become tensors (frames, crop, normalisation) changes the features too.
    for part in ("temporal", "spatial", "normalize", "mode"):
        value = getattr(dataset, part, None)
        described = {k: vars(v) if hasattr(v, "__dict__") else v for k, v in value.items()} \
            if isinstance(value, dict) else (vars(value) if hasattr(value, "__dict__") else value)
        digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def feature_cache_key(weights: Any, data: Any, views: Mapping[str, Any]) -> str:
    """One hex key for (checkpoint identity, data identity, view config); all JSON-able."""
    text = json.dumps({"weights": weights, "data": data, "views": dict(views)}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()
