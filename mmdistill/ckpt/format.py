"""The identity of our training checkpoint files: the `format` tag and version they carry.

It sits apart from `training_checkpoint` (which writes, reads and resumes these files) only so the
model-side reader (`mmdistill.models.checkpoint`) can recognise them without importing the
trainer's side, which itself imports the model readers to rebuild models for evaluation.
Everyone else takes these names from `mmdistill.train.training_checkpoint`.
"""
from __future__ import annotations

from typing import Any

FORMAT = "mmdistill"
VERSION = 1


def is_training_checkpoint(obj: Any) -> bool:
    """Whether a loaded container is one of our training checkpoints (any version)."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT
