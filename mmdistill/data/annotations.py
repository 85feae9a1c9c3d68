"""Clip lists from the annotation layouts users bring: tennis events JSON, flat lists, class folders.

Every reader returns `Clip` records with 0-based frame indices, so nothing downstream needs to know
which layout a clip came from. Frame numbering conventions differ between tools, so each reader
takes `frame_base`: the number the annotation file gives to the video's first frame (0 for the
F3Set tennis files, whose events include frame 0).

A JSON file's layout is detected from all its entries and every entry must match it: one entry
whose `events` key is misspelt would otherwise turn a tennis-style file into a flat list of whole
videos. Which entry key holds which field, and the checks on unread keys: `annotation_fields`.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import gin

from mmdistill.data.annotation_fields import (EVENTS_KEY, TENNIS_EVENT_KEYS, TENNIS_VIDEO_KEYS, FieldMap,
                                              describe_keys, did_you_mean, joined, misspelt, unread_keys)
from mmdistill.data.exclude import Exclude, exclude_entries
from mmdistill.data.layout import VIDEO_EXTENSIONS

log = logging.getLogger("mmdistill.data")


class AnnotationError(ValueError):
    """An annotation file or entry that cannot describe a clip."""


@dataclasses.dataclass(frozen=True)
class Clip:
    """One clip to read: `start`/`end` are 0-based frame indices, `end` exclusive.

    `start` alone fixes the first frame (a tennis event); `start`/`end` bound a window the clip
    is sampled from; neither means the whole video. `label` is any string, or None.
    """

    video: str
    start: int | None = None
    end: int | None = None
    label: str | None = None


def class_names_of(clips: Iterable[Clip]) -> list[str]:
    """Sorted distinct labels: the index of a label here is its integer class id."""
    return sorted({clip.label for clip in clips if clip.label is not None})


@dataclasses.dataclass
class AnnotationReading:
    """What one annotation file (or class-folder root) was read as: `data check` prints it."""

    path: Path
    layout: str  # 'tennis', 'flat' or 'folders'
    fields: FieldMap
    frame_base: int
    entries_key: str | None
    num_entries: int
    clips: list[Clip]
    unread_keys: Counter = dataclasses.field(default_factory=Counter)
    skipped: list[str] = dataclasses.field(default_factory=list)

    def log_warnings(self) -> None:
        if self.unread_keys:
            listed = ", ".join(f"{key} ({count})" for key, count in sorted(self.unread_keys.items()))
            log.warning("%s: keys no clip field reads (entries holding them): %s; map them to a field, "
                        "or list them in clip_annotations.ignored_keys", self.path, listed)
        if self.skipped:
            log.warning("%s: skipped %d bad annotation entries; first: %s", self.path, len(self.skipped),
                        self.skipped[0])


def _fail_or_skip(message: str, on_bad_entry: str, skipped: list[str]) -> None:
    if on_bad_entry == "error":
        raise AnnotationError(message + " (or pass on_bad_clip='skip' to drop such entries)")
    skipped.append(message)


def _as_int(value: Any, what: str, where: str) -> int:
    """An integer frame number, also from a string ('262', as EPIC lists give them)."""
    if isinstance(value, bool) or value is None:
        raise AnnotationError(f"{where}: '{what}' must be an integer frame number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: '{what}' must be an integer frame number, got {value!r}") from None
    if number != int(number):
        raise AnnotationError(f"{where}: '{what}' must be an integer frame number, got {value!r}")
    return int(number)


def _check_on_bad_entry(on_bad_entry: str) -> None:
    if on_bad_entry not in ("error", "skip"):
        raise ValueError(f"on_bad_entry must be 'error' or 'skip', got {on_bad_entry!r}")


def read_tennis_events(path: str | Path, label_key: str | Sequence[str] | None = "label", frame_base: int = 0,
                       on_bad_entry: str = "error") -> list[Clip]:
    """F3Set-style list of videos; each event becomes one clip starting at its frame.

    `label_key=None` ignores labels (an unlabelled distillation list). Videos without events
    contribute nothing. An event frame outside `[0, num_frames)` (when the video gives
    `num_frames`) is a bad entry.
    """
    reading = read_annotation_file(path, "tennis", label_key, frame_base, on_bad_entry)
    reading.log_warnings()
    return reading.clips


def _tennis_clips(path: Path, videos: list, fields: FieldMap, frame_base: int, on_bad_entry: str,
                  ignored: set[str], require_labels: bool) -> tuple[list[Clip], Counter, list[str]]:
    event_lists = [(index, entry[EVENTS_KEY]) for index, entry in enumerate(videos)
                   if isinstance(entry, dict) and isinstance(entry.get(EVENTS_KEY), list)]
    unread = _unread(((f"{path} video #{index}", entry) for index, entry in enumerate(videos)),
                     {*fields.video, EVENTS_KEY, *TENNIS_VIDEO_KEYS, *ignored}, [])
    unread_in_events = _unread(((f"{path} video #{index} event #{e_index}", event)
                                for index, events in event_lists for e_index, event in enumerate(events)),
                               {"frame", *(fields.label or ()), *TENNIS_EVENT_KEYS, *ignored}, [])
    unread.update({f"{EVENTS_KEY}[].{key}": count for key, count in unread_in_events.items()})
    if require_labels:
        _require_labels(path, fields, [event for _, events in event_lists for event in events], "event")
    clips, skipped = [], []
    for v_index, entry in enumerate(videos):
        where = f"{path} video #{v_index}"
        video, missing = joined(entry, fields.video) if isinstance(entry, dict) else (None, [])
        if video is None or missing or not isinstance(entry.get(EVENTS_KEY), list):
            _fail_or_skip(f"{where}: needs the fields {describe_keys(fields.video)} and 'events' (a list of "
                          f"{{'frame', 'label'}})", on_bad_entry, skipped)
            continue
        num_frames = entry.get("num_frames")
        for e_index, event in enumerate(entry[EVENTS_KEY]):
            where = f"{path} video '{video}' event #{e_index}"
            try:
                clips.append(_clip_from_event(event, video, num_frames, where, fields, frame_base))
            except AnnotationError as err:
                _fail_or_skip(str(err), on_bad_entry, skipped)
    return clips, unread, skipped


def _clip_from_event(event: Any, video: str, num_frames: Any, where: str, fields: FieldMap,
                     frame_base: int) -> Clip:
    if not isinstance(event, dict) or "frame" not in event:
        raise AnnotationError(f"{where}: needs the field 'frame'")
    start = _as_int(event["frame"], "frame", where) - frame_base
    if start < 0 or (num_frames is not None and start >= int(num_frames)):
        raise AnnotationError(f"{where}: frame {event['frame']} is outside the video's {num_frames} frames "
                              f"(frame_base={frame_base}: the file numbers the first frame {frame_base})")
    label = None
    if fields.label is not None:
        label, missing = joined(event, fields.label)
        if missing:
            raise AnnotationError(f"{where}: needs the label field '{missing[0]}' (set the label key, or "
                                  f"label_key=None for unlabelled use){did_you_mean(missing[0], event)}")
    return Clip(video, start=start, label=label)


def read_clip_list(path: str | Path, label_key: str | Sequence[str] | None = "label", frame_base: int = 0,
                   on_bad_entry: str = "error") -> list[Clip]:
    """Flat list (JSON list of objects, or CSV with a header) of `video, start, end, label`.

    Only `video` is required; empty CSV cells count as absent. `end` is exclusive.
    """
    reading = read_annotation_file(path, "flat", label_key, frame_base, on_bad_entry)
    reading.log_warnings()
    return reading.clips


def _list_clips(path: Path, rows: list, fields: FieldMap, frame_base: int, on_bad_entry: str,
                ignored: set[str], require_labels: bool) -> tuple[list[Clip], Counter, list[str]]:
    # A near miss of 'events' here is a tennis-style file whose layout key is misspelt.
    unread = _unread(((f"{path} entry #{index}", row) for index, row in enumerate(rows)),
                     fields.keys() | ignored, [*fields.optional_keys(), EVENTS_KEY])
    if require_labels:
        _require_labels(path, fields, rows, "entry")
    clips, skipped = [], []
    for index, row in enumerate(rows):
        try:
            clips.append(_clip_from_row(row, f"{path} entry #{index}", fields, frame_base, require_labels))
        except AnnotationError as err:
            _fail_or_skip(str(err), on_bad_entry, skipped)
    return clips, unread, skipped


def _clip_from_row(row: Any, where: str, fields: FieldMap, frame_base: int, require_label: bool) -> Clip:
    if not isinstance(row, dict):
        raise AnnotationError(f"{where}: expected an object with at least {describe_keys(fields.video)}, got {row!r}")
    row = {key: value for key, value in row.items() if value not in (None, "")}
    video, missing = joined(row, fields.video)
    if missing:
        raise AnnotationError(f"{where}: needs the field '{missing[0]}' (clip_annotations.video_key; the entry's "
                              f"keys: {sorted(row)}){did_you_mean(missing[0], row)}")
    start = _frame_of(row, fields.start, where, frame_base)
    end = _frame_of(row, fields.end, where, frame_base)
    if start is not None and start < 0:
        raise AnnotationError(f"{where}: {fields.start} {row[fields.start]} is before the first frame "
                              f"(frame_base={frame_base})")
    if end is not None and end <= (start or 0):
        raise AnnotationError(f"{where}: {fields.end} {row[fields.end]} must be after start (end is exclusive)")
    label = None
    if fields.label is not None:
        label, missing = joined(row, fields.label)
        if label is not None and missing:
            raise AnnotationError(f"{where}: the label is made of {describe_keys(fields.label)}, but '{missing[0]}' "
                                  f"is missing{did_you_mean(missing[0], row)}")
        if label is None and require_label:
            raise AnnotationError(f"{where}: needs the label field '{fields.label[0]}' (labelled clips are needed "
                                  f"here){did_you_mean(fields.label[0], row)}")
    return Clip(video, start=start, end=end, label=label)


def _frame_of(row: dict, key: str | None, where: str, frame_base: int) -> int | None:
    return _as_int(row[key], key, where) - frame_base if key is not None and key in row else None


def _unread(entries: Iterable[tuple[str, Any]], known: set[str], optional: Sequence[str]) -> Counter:
    counts, misspelling = unread_keys(entries, known, optional)
    if misspelling is not None:
        raise AnnotationError(misspelling)
    return counts


def _require_labels(path: Path, fields: FieldMap, records: list, what: str) -> None:
    """Refuse a list meant to give labelled clips whose label key matches nothing, naming the key:
    otherwise it reads as an unlabelled list, and few-shot evaluation finds 0 classes."""
    if fields.label is None:
        raise AnnotationError(f"{path}: labelled clips are needed here, but clip_annotations.label_key = None; "
                              f"set it to the key that holds the class")
    records = [record for record in records if isinstance(record, dict)]
    if records and not any(key in record for record in records for key in fields.label):
        seen = sorted(set().union(*records))
        raise AnnotationError(
            f"{path}: labelled clips are needed here, but no {what} of {len(records)} has the label key "
            f"{describe_keys(fields.label)} (their keys: {', '.join(seen)}){did_you_mean(fields.label[0], seen)}; "
            f"set clip_annotations.label_key to the key that holds the class")


def read_class_folders(root: str | Path, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> list[Clip]:
    """`root/<class>/<clip>.<ext>`: one whole-video clip per file, labelled by its folder.

    The video id is the path relative to `root` without the extension (`serve/serve1`), so a
    video source template `{video}.mp4` finds the file and prepared frames land in
    `frames/serve/serve1/`.
    """
    root = Path(root)
    if not root.is_dir():
        raise AnnotationError(f"{root}: class-folder root does not exist or is not a folder")
    extensions = tuple(ext.lower() for ext in extensions)
    clips = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted((p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in extensions),
                       key=lambda p: natural_key(p.name))
        if not files:
            log.warning("%s: class folder holds no videos with extensions %s", class_dir, extensions)
        for file in files:
            video = file.relative_to(root).with_suffix("").as_posix()
            clips.append(Clip(video, label=class_dir.name))
    stray = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in extensions]
    if stray:
        log.warning("%s: %d videos lie outside any class folder and are ignored (e.g. %s)",
                    root, len(stray), stray[0])
    if not clips:
        raise AnnotationError(f"{root}: no videos found in class folders (expected root/<class>/<clip>.mp4)")
    return clips


LAYOUTS = ("auto", "tennis", "flat", "folders")


@gin.configurable("clip_annotations", denylist=["path", "on_bad_entry", "require_labels"])
def read_annotations(path: str | Path, layout: str = "auto", label_key: str | Sequence[str] | None = "label",
                     frame_base: int = 0, on_bad_entry: str = "error", video_key: str | Sequence[str] = "video",
                     start_key: str | None = "start", end_key: str | None = "end", entries_key: str | None = None,
                     ignored_keys: Sequence[str] = (), require_labels: bool = False,
                     exclude: Exclude | None = None) -> list[Clip]:
    """Read any supported layout; `layout='auto'` picks by what the path holds.

    A folder is a class-folder layout; `.csv` a flat list; a JSON list (or the list under
    `entries_key` of a JSON object) whose entries carry `events` is tennis-style, otherwise a
    flat list. `video_key`, `start_key`, `end_key` and `label_key` name each field's entry key
    (a list of keys joins their values with '/'; tennis events take `frame` and `label_key`);
    `ignored_keys` are keys known to hold nothing a clip needs. `require_labels` refuses a list
    whose entries lack the label, naming the key it looked for (`clip_data.labeled = True`, and
    few-shot evaluation, ask for it). `exclude` {entry key: [values]} drops the entries holding
    a listed value before they are read (mmdistill.data.exclude; e.g. MM-CDFSL's Ego4D `delete`).
    """
    reading = read_annotation_file(path, layout, label_key, frame_base, on_bad_entry, video_key=video_key,
                                   start_key=start_key, end_key=end_key, entries_key=entries_key,
                                   ignored_keys=ignored_keys, require_labels=require_labels,
                                   exclude=exclude)
    reading.log_warnings()
    return reading.clips


def read_annotation_file(path: str | Path, layout: str = "auto", label_key: str | Sequence[str] | None = "label",
                         frame_base: int = 0, on_bad_entry: str = "error", *, video_key: str | Sequence[str] = "video",
                         start_key: str | None = "start", end_key: str | None = "end", entries_key: str | None = None,
                         ignored_keys: Sequence[str] = (), require_labels: bool = False,
                         exclude: Exclude | None = None) -> AnnotationReading:
    """`read_annotations`, returning how the file was read as well (layout, fields, unread keys)."""
    _check_on_bad_entry(on_bad_entry)
    if layout not in LAYOUTS:
        raise ValueError(f"clip_annotations.layout must be 'auto', 'tennis', 'flat' or 'folders', got {layout!r}")
    fields = FieldMap.from_options(video_key, start_key, end_key, label_key)
    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"{path}: annotation file or folder does not exist")
    if layout == "folders" or (layout == "auto" and path.is_dir()):
        if exclude:
            raise AnnotationError(f"{path}: clip_annotations.exclude reads annotation entries; a "
                                  f"class-folder layout has none (move the videos out instead)")
        clips = read_class_folders(path)
        return AnnotationReading(path, "folders", fields, frame_base, None, len(clips), clips)
    if path.suffix.lower() == ".csv":
        if layout == "tennis" or entries_key is not None:
            raise AnnotationError(f"{path}: a CSV file is a flat list; unset clip_annotations.entries_key and use "
                                  f"layout 'flat' or 'auto' (got layout={layout!r}, entries_key={entries_key!r})")
        entries = _load_csv(path, fields.video)
    else:
        entries = _entries(path, _load_json(path), entries_key)
    if exclude:
        entries = exclude_entries(path, entries, exclude)
        ignored_keys = (*ignored_keys, *exclude)  # read here, so not "unread"
    if layout == "auto":
        layout = _detect_layout(path, entries)
    read = _tennis_clips if layout == "tennis" else _list_clips
    clips, unread, skipped = read(path, entries, fields, frame_base, on_bad_entry, set(ignored_keys), require_labels)
    return AnnotationReading(path, layout, fields, frame_base, entries_key, len(entries), clips, unread, skipped)


def _entries(path: Path, data: Any, entries_key: str | None) -> list:
    """The list of entries: the file itself, or the list under `entries_key` of a JSON object."""
    if isinstance(data, dict):
        if entries_key is None:
            lists = [key for key, value in data.items() if isinstance(value, list)]
            hint = f" (here: clip_annotations.entries_key = '{lists[0]}')" if len(lists) == 1 else (
                f" (one of {lists})" if lists else "")
            raise AnnotationError(f"{path}: the file is a JSON object with keys {sorted(data)}, not a list of entries; "
                                  f"set clip_annotations.entries_key to the key that holds the list{hint}")
        if entries_key not in data:
            raise AnnotationError(f"{path}: no key '{entries_key}' (clip_annotations.entries_key) at the top level; "
                                  f"its keys: {sorted(data)}")
        data = data[entries_key]
    elif entries_key is not None:
        raise AnnotationError(f"{path}: clip_annotations.entries_key = '{entries_key}', but the file is a JSON "
                              f"{type(data).__name__}, not an object; set entries_key = None")
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a JSON list of videos ({{'video': ..., 'events': [...]}}) or of "
                              f"clips ({{'video': ..., 'start': ...}}), got {type(data).__name__}")
    return data


def _detect_layout(path: Path, entries: list) -> str:
    """'tennis' when any entry carries `events`, else 'flat'; every entry must then agree."""
    first = next((index for index, entry in enumerate(entries) if isinstance(entry, dict) and EVENTS_KEY in entry),
                 None)
    if first is None:
        return "flat"
    for index, entry in enumerate(entries):
        if isinstance(entry, dict) and EVENTS_KEY not in entry:
            typo = next((key for key in entry if misspelt(key, [EVENTS_KEY])), None)
            fault = (f"its key '{typo}' looks like a misspelt 'events'" if typo
                     else f"its keys: {', '.join(sorted(entry))}")
            raise AnnotationError(
                f"{path} entry #{index}: entry #{first} carries 'events', so this is a tennis-style file, but this "
                f"entry has no 'events' ({fault}); every entry needs 'video' and 'events' (a list of "
                f"{{'frame', 'label'}}): fix the entry")
    return "tennis"


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: not valid JSON ({err})") from None


def _load_csv(path: Path, video_keys: Sequence[str] = ("video",)) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [key for key in video_keys if key not in (reader.fieldnames or ())]
        if missing:
            raise AnnotationError(f"{path}: CSV needs a header row with at least a '{missing[0]}' column "
                                  f"(clip_annotations.video_key)")
        return list(reader)


def natural_key(text: str) -> list:
    """Sort key that puts serve2 before serve10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
