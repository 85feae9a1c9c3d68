"""Which stored frame a modality reads for each frame of a clip, and what a frame past the end is.

A spec parameter (`rgb_spec.frames`, `flow_spec.frames`, `skeleton_spec.frames`,
mmdistill/data/modalities/variants.py): without one, clip frame k reads the reader's index k (the
default). With a `FrameRule`, clip frame k (0-based: the annotation's frame minus
`clip_annotations.frame_base`, then + i * sampling_rate) reads the file numbered
`max(floor, k) + shift`; for a reader of numbered files (`rgb_frames`, `flow_frames`) that is index
`number - first_frame`, for one array per video (a skeleton pickle) the row `number`.

The tennis fork (Ricky513125/Tennis at a9d8a78) numbers its frames from 000000 and reads, for an
event at frame f, JPEG and flow pair `max(1, f + i)` and skeleton row `max(1, f + i) - 1`
(datamodule/dataset/tennis_unlabel_combined_multimodal_dataset.py:87, :146, :154, :192-195):
`floor=1` for all three and `shift=-1` for the skeleton.

`past_end` says what a frame past the last stored one is: 'error' (a BadClipError naming the
fix), 'last' (the last stored frame again: the fork's RGB repeats the previous image,
tennis_unlabel_only_dataset.py:45-48, and its skeleton clamps the row, tennis_skeleton_dataset.py
:91) or 'zeros' (flow only: a zero field before normalisation, as the fork's flow,
tennis_unlabel_only_dataset.py:55-59). It only happens with `temporal_sampling.past_end = 'keep'`.
Never silent: each item holds `<modality>_past_end`, the number of its frames past the end, and the
loader warns once per clip and modality.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import gin
import numpy as np

from mmdistill.data.clip_types import BadClipError

log = logging.getLogger("mmdistill.data")

PAST_END = ("error", "last", "zeros")
PAST_END_SUFFIX = "_past_end"


@dataclasses.dataclass
class RuledRead:
    """What a reader gave for the rule's indices, and which clip frames were past the end."""

    data: Any
    past_end: np.ndarray  # bool (T,)


@gin.configurable("frame_rule")
class FrameRule:
    def __init__(self, floor: int = 0, shift: int = 0, past_end: str = "error"):
        for setting, value in (("floor", floor), ("shift", shift)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"frame_rule.{setting} must be a whole number (the tennis fork: floor=1, "
                                 f"shift=-1 for the skeleton), got {value!r}")
        if floor < 0:
            raise ValueError(f"frame_rule.floor must be >= 0 (the lowest file number read), got {floor}")
        if past_end not in PAST_END:
            raise ValueError(f"frame_rule.past_end must be 'error', 'last' (repeat the last stored frame) or "
                             f"'zeros' (flow only: a zero field), got {past_end!r}")
        self.floor, self.shift, self.past_end = floor, shift, past_end

    def __repr__(self) -> str:
        return f"FrameRule(floor={self.floor}, shift={self.shift}, past_end={self.past_end!r})"

    def indices(self, clip_frames: np.ndarray, reader: Any, stored: int, video: str, what: str
                ) -> tuple[np.ndarray, np.ndarray]:
        """-> (reader indices, all within [0, stored), bool mask of the frames past the end)."""
        numbers = np.maximum(np.asarray(clip_frames, dtype=np.int64), self.floor) + self.shift
        indices = numbers - int(getattr(reader, "first_frame", 0))
        if indices.min() < 0:
            raise BadClipError(f"{what} of video '{video}': frame rule {self} reads file/row {int(numbers.min())}, "
                               f"before the first stored one; raise frame_rule.floor or shift")
        past = indices >= stored
        if past.any() and self.past_end == "error":
            raise BadClipError(f"{what} of video '{video}': clip frames {np.asarray(clip_frames)[past].tolist()} "
                               f"are past its last stored frame ({stored} stored); set frame_rule.past_end to 'last' "
                               f"(or 'zeros' for flow) for this modality, or temporal_sampling.past_end = 'shift'")
        return np.minimum(indices, stored - 1), past


def warn_past_end(name: str, video: str, start: int, past: np.ndarray, rule: FrameRule, seen: set) -> None:
    """One warning per clip and modality in this process: how many frames and what they became."""
    key = (name, video, start)
    if past.any() and key not in seen:
        seen.add(key)
        became = "zero fields" if rule.past_end == "zeros" else "the last stored frame"
        log.warning("video '%s', clip from frame %d: %d of %d %s frames are past the last stored one and are "
                    "%s (its %s)", video, start, int(past.sum()), past.size, name, became, rule)
