"""Which key of an annotation entry holds which clip field, and the key checks that keep a
misspelt or unexpected key from silently changing what is read.

The mapping is one gin binding per field (`clip_annotations.video_key`, `start_key`, `end_key`,
`label_key`), so a list in another schema is read as it is, without a conversion step
(`gin/base/mmcdfsl_annotations_*.gin` map MM-CDFSL's four schemas). A field given as several
keys joins their values with '/': a class made of a verb and a noun, or a frame folder made of a
participant and a video id.

Keys that no field reads are a warning, listed once per file, not an error: annotation files
carry metadata no clip needs (match scores, timestamps, boxes), and refusing them would make
every user enumerate them (`clip_annotations.ignored_keys` silences the ones you know about).
A key that looks like a misspelling of a key the reader would have used when the entry lacks
that key (`evnets`, `strat`, `lable`) is an error: read silently, it changes the clips (whole
videos instead of events, unlabelled clips) with no other symptom.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections import Counter
from typing import Any, Iterable, Sequence

JOIN = "/"
# A JSON entry holding this key is a tennis-style video whose events are the clips.
EVENTS_KEY = "events"
# Keys of the F3Set tennis files (every video of the real val.json has them) that no clip field
# reads: the video's size and rate, and the match state of each rally.
TENNIS_VIDEO_KEYS = frozenset({
    "fps", "height", "width", "num_frames",
    "far_name", "far_hand", "far_set", "far_game", "far_point",
    "near_name", "near_hand", "near_set", "near_game", "near_point"})
TENNIS_EVENT_KEYS = frozenset({"label", "outcome"})
MISSPELLING_CUTOFF = 0.8  # difflib ratio: catches one swapped, dropped or doubled letter


def _as_keys(value: Any, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    keys = (value,) if isinstance(value, str) else tuple(value)
    if not keys or not all(isinstance(key, str) and key for key in keys):
        raise ValueError(f"clip_annotations.{name} must be a key, a list of keys or None, got {value!r}")
    return keys


@dataclasses.dataclass(frozen=True)
class FieldMap:
    """The entry keys of each clip field; None: the field is not read."""

    video: tuple[str, ...] = ("video",)
    start: str | None = "start"
    end: str | None = "end"
    label: tuple[str, ...] | None = ("label",)

    @classmethod
    def from_options(cls, video_key: Any = "video", start_key: str | None = "start",
                     end_key: str | None = "end", label_key: Any = "label") -> "FieldMap":
        video = _as_keys(video_key, "video_key")
        if video is None:
            raise ValueError("clip_annotations.video_key cannot be None: every clip needs its video")
        for name, key in (("start_key", start_key), ("end_key", end_key)):
            if key is not None and not (isinstance(key, str) and key):
                raise ValueError(f"clip_annotations.{name} must be one key or None, got {key!r}")
        return cls(video, start_key, end_key, _as_keys(label_key, "label_key"))

    def keys(self) -> set[str]:
        """Every key some field reads."""
        return {*self.video, *(key for key in (self.start, self.end) if key), *(self.label or ())}

    def optional_keys(self) -> list[str]:
        """Keys an entry may lack (the field is then absent): a near miss of one is suspicious."""
        return [key for key in (self.start, self.end, *(self.label or ())) if key]


def joined(entry: dict, keys: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the values of `keys` joined with '/', or None when all are absent; the absent keys)."""
    missing = [key for key in keys if key not in entry]
    if len(missing) == len(keys):
        return None, missing
    return JOIN.join(str(entry[key]) for key in keys if key in entry), missing


def describe_keys(keys: Sequence[str] | str | None) -> str:
    if keys is None:
        return "not read"
    return " + ".join(f"'{key}'" for key in ((keys,) if isinstance(keys, str) else keys))


def misspelt(key: str, wanted: Iterable[str]) -> str | None:
    """The wanted key that `key` most likely misspells (case-insensitive), or None."""
    lowered = {name.lower(): name for name in wanted if name != key}
    match = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=MISSPELLING_CUTOFF)
    return lowered[match[0]] if match else None


def did_you_mean(key: str, present: Iterable[str]) -> str:
    """'; did you mean 'x'?' from the keys an entry has, for a missing-key message."""
    close = difflib.get_close_matches(key, list(present), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(name) for name in close)}?" if close else ""


def unread_keys(entries: Iterable[tuple[str, Any]], known: set[str],
                optional: Sequence[str]) -> tuple[Counter, str | None]:
    """(counts of the keys no field reads, over `(where, entry)` pairs; the message naming the
    first entry where an unread key misspells an optional key that entry lacks, else None).

    A misspelling of a required key needs no check here: its absence fails with a did-you-mean.
    """
    counts: Counter = Counter()
    suspect: dict[str, str | None] = {}
    for where, entry in entries:
        if not isinstance(entry, dict):
            continue
        for key in entry.keys() - known:
            counts[key] += 1
            if key not in suspect:
                suspect[key] = misspelt(key, optional)
            meant = suspect[key]
            if meant is not None and meant not in entry:
                return counts, (f"{where}: key '{key}' looks like a misspelt '{meant}', which this entry lacks; "
                                f"rename it to '{meant}' (or, if '{key}' is meant, add it to "
                                f"clip_annotations.ignored_keys)")
    return counts, None
