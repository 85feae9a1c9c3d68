"""The identity of our training checkpoint files (the `format` tag and version they carry), and
reading one of them strictly: what resuming, keep-best and the step count read.

Any other container (and ours, for evaluation or export) goes through `ckpt.reading`, which
recognises ours by `is_training_checkpoint`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

FORMAT = "mmdistill"
VERSION = 1


def is_training_checkpoint(obj: Any) -> bool:
    """Whether a loaded container is one of our training checkpoints (any version)."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Read one of our checkpoint files safely (no code is unpickled). `mmap=True` maps the
    tensors instead of reading them (for callers that only need the small fields)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass an existing .ckpt file "
                                f"(a run's checkpoints/last.ckpt resumes that run).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # torch's long advice to load with weights_only=False is not for us
        reason = (str(err).splitlines() or [""])[0][:200]
        raise ValueError(f"cannot read checkpoint {path}: {type(err).__name__}: {reason}. The file is "
                         f"damaged or not an mmdistill checkpoint; use checkpoints/last.ckpt or an "
                         f"earlier epoch=*.ckpt of the same run.") from err
    if not is_training_checkpoint(payload):
        raise ValueError(f"{path} is not an mmdistill training checkpoint (no format='{FORMAT}'); "
                         f"to start from other weights use a model loader, not resume.")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint version {payload.get('version')}, this code reads "
                         f"version {VERSION}; use the mmdistill version that wrote it.")
    return payload
