"""Fingerprints of dataset items and finished batches on a tiny demo world, for every modality and
every data path (plain loader, clip cache finished in the loader or on the device, skeleton
heatmaps drawn in the loader or on the device, JPEG frames decoded on the device, a
source/target pair), so a refactor of the data code can show it changed no bit.

`python tests/data_fingerprints.py --record` writes tests/data_fingerprints.json from the code as
it is; tests/test_data_fingerprints.py compares against that file (when the libraries that decode
and resize are the versions it was recorded with).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import cv2
import gin
import numpy as np
import PIL
import torch

RECORD = Path(__file__).with_name("data_fingerprints.json")
WORLD = dict(num_classes=2, val_classes=0, clips_per_class=2, unlabeled_clips=2, num_frames=6,
             size=(40, 56), max_distractors=1)
COMMON = ["temporal_sampling.num_frames = 4", "temporal_sampling.sampling_rate = 1",
          "spatial_transform.short_side = 36", "spatial_transform.crop_size = (32, 48)",
          "spatial_transform.flip_prob = 0.5"]
# name -> (extra bindings, mode, cache folder name or None, modalities)
PATHS = {
    "plain_train": ([], "train", None, ("rgb", "flow", "skeleton")),
    "plain_eval": ([], "eval", None, ("rgb", "flow", "skeleton")),
    "heatmaps_on_device": (["skeleton_heatmaps.render_on = 'device'"], "train", None, ("rgb", "skeleton")),
    "skeleton_alone": (["skeleton_heatmaps.render_on = 'device'"], "train", None, ("skeleton",)),
    "cache_finish_loader": (["clip_cache.finish_on = 'loader'"], "train", "c1", ("rgb", "flow", "skeleton")),
    "cache_finish_device": (["clip_cache.finish_on = 'device'"], "train", "c2", ("rgb", "flow", "skeleton")),
    "cache_int16_device": (["clip_cache.finish_on = 'device'", "clip_cache.flow_dtype = 'int16'",
                            "skeleton_heatmaps.render_on = 'device'"], "train", "c3", ("rgb", "flow", "skeleton")),
    "jpeg_on_device": (["rgb_frames.decode_on = 'device'"], "train", None, ("rgb", "flow")),
    "flow_alone_eval": ([], "eval", None, ("flow",)),
}


def _digest(value) -> str:
    hasher = hashlib.sha256()

    def feed(obj):
        if isinstance(obj, torch.Tensor):
            obj = obj.detach().cpu().contiguous()
            hasher.update(f"T{obj.dtype}{tuple(obj.shape)}".encode())
            hasher.update(obj.numpy().tobytes() if obj.dtype != torch.bfloat16 else obj.float().numpy().tobytes())
        elif isinstance(obj, dict):
            for key in sorted(obj):
                hasher.update(f"K{key}".encode())
                feed(obj[key])
        elif isinstance(obj, (list, tuple)):
            hasher.update(f"L{len(obj)}".encode())
            for part in obj:
                feed(part)
        elif isinstance(obj, (bytes, bytearray)):
            hasher.update(b"B" + bytes(obj))
        else:
            hasher.update(f"V{obj!r}".encode())

    feed(value)
    return hasher.hexdigest()[:24]


def versions() -> dict:
    return {"numpy": np.__version__, "cv2": cv2.__version__, "PIL": PIL.__version__,
            "torch": torch.__version__.split("+")[0]}


def fingerprints(workdir: Path) -> dict:
    """{path: {'items': digest, 'batch': digest}} on a tiny demo world written under `workdir`."""
    from mmdistill.data.dataset import build_clip_dataset, collate_clips
    from mmdistill.data.device_batches import finish_batch, heatmap_drawer
    from mmdistill.data.masking import TubeMaskGenerator
    from mmdistill.data.paired import PairedClipDataset
    from mmdistill.demo.writer import generate_demo_dataset

    root = generate_demo_dataset(Path(workdir) / "world", progress=False, **WORLD)
    out = {}
    for name, (bindings, mode, cache, modalities) in PATHS.items():
        gin.clear_config()
        gin.parse_config(COMMON + bindings)
        mask = TubeMaskGenerator((2, 2, 3), 0.5) if mode == "train" else None
        dataset = build_clip_dataset(root / "unlabeled.json", modalities=list(modalities), mode=mode,
                                     mask=mask, seed=3, labeled=False,
                                     cache_dir=None if cache is None else Path(workdir) / cache)
        items = [dataset[(epoch, index)] for epoch in (0, 1) for index in range(len(dataset))]
        batch = finish_batch(collate_clips(items), "cpu", heatmap_drawer(dataset))
        out[name] = {"items": _digest(items), "batch": _digest(batch)}
    gin.clear_config()
    gin.parse_config(COMMON)
    source = build_clip_dataset(root / "fewshot.json", modalities=["flow"], mode="train", seed=1, labeled=True)
    target = build_clip_dataset(root / "unlabeled.json", modalities=["flow"], mode="train", seed=2)
    paired = PairedClipDataset(source, target, TubeMaskGenerator((2, 2, 3), 0.5), seed=2)
    items = [paired[(epoch, index)] for epoch in (0, 1) for index in range(len(paired))]
    batch = finish_batch(collate_clips(items), "cpu", heatmap_drawer(paired))
    out["paired_flow"] = {"items": _digest(items), "batch": _digest(batch)}
    gin.clear_config()
    return out


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    with tempfile.TemporaryDirectory() as folder:
        result = fingerprints(Path(folder))
    if "--record" in sys.argv:
        RECORD.write_text(json.dumps({"versions": versions(), "paths": result}, indent=1) + "\n")
        print(f"wrote {RECORD}")
    else:
        print(json.dumps(result, indent=1))
