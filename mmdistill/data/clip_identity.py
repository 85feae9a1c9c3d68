"""Which clips are the same clip: the same video and the same frames read, under the temporal
sampler's rule (`TemporalSampler`): a clip with a start and no end reads from its start, so two
entries with one start are one clip whatever else they say; a window read centred (evaluation, or
`placement='center'`) is the clip at its centre; a window drawn at random is its window.

A list that holds a clip twice counts it twice: in a few-shot episode a query can then meet its
own copy in the support, which raises the accuracy without a word. `deduplicate` keeps each clip
once and says what it dropped; one clip under two labels is refused with both entries named.
"""
from __future__ import annotations

import logging
from typing import Hashable, Sequence

from mmdistill.data.annotations import AnnotationError, Clip

log = logging.getLogger("mmdistill.data")


def clip_key(clip: Clip, span: int, centred: bool) -> Hashable:
    """What identifies the frames `clip` reads: (video, first frame), or (video, window) for a
    window drawn at random, or (video, 'whole') for a whole video drawn at random."""
    if clip.start is not None and clip.end is None:
        return clip.video, clip.start
    if not centred:
        return clip.video, ("window", clip.start, clip.end) if (clip.start, clip.end) != (None, None) \
            else "whole"
    if clip.end is None:
        return clip.video, "centre of the whole video"
    low = clip.start or 0
    return clip.video, max(0, low + (clip.end - low - span) // 2)


def _describe(index: int, clip: Clip) -> str:
    frames = (f"start {clip.start}" if clip.end is None else f"frames {clip.start or 0}-{clip.end}") \
        if (clip.start, clip.end) != (None, None) else "whole video"
    label = "" if clip.label is None else f", label '{clip.label}'"
    return f"clip #{index} (video '{clip.video}', {frames}{label})"


def deduplicate(clips: Sequence[Clip], span: int, centred: bool, where: str = "the clip list") -> list[Clip]:
    """`clips` with each clip (`clip_key`) kept once, in order; a warning reports what was
    dropped. The same clip under two labels raises AnnotationError naming both entries."""
    first: dict[Hashable, int] = {}
    kept, dropped = [], []
    for index, clip in enumerate(clips):
        key = clip_key(clip, span, centred)
        earlier = first.get(key)
        if earlier is None:
            first[key] = index
            kept.append(clip)
            continue
        if clips[earlier].label != clip.label:
            raise AnnotationError(
                f"{where}: {_describe(index, clip)} reads the same frames as {_describe(earlier, clips[earlier])} "
                f"under another label; one clip cannot be both: correct or remove one of them")
        dropped.append((index, earlier))
    if dropped:
        index, earlier = dropped[0]
        log.warning("%s: %d of %d clips read the same frames as an earlier entry (same video, same frames "
                    "read: %d frames from the same start) and were dropped, so no clip counts twice; "
                    "first: %s = %s", where, len(dropped), len(clips), span, _describe(index, clips[index]),
                    _describe(earlier, clips[earlier]))
    return kept
