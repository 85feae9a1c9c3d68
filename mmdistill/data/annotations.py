"""Clip lists from the annotation layouts users bring: tennis events JSON, flat lists, class folders.

Every reader returns `Clip` records with 0-based frame indices, so nothing downstream needs to know
which layout a clip came from. Frame numbering conventions differ between tools, so each reader
takes `frame_base`: the number the annotation file gives to the video's first frame (0 for the
F3Set tennis files, whose events include frame 0).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable

import gin

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


def _fail_or_skip(message: str, on_bad_entry: str, skipped: list[str]) -> None:
    if on_bad_entry == "error":
        raise AnnotationError(message + " (or pass on_bad_clip='skip' to drop such entries)")
    skipped.append(message)


def _report_skipped(path: Path, skipped: list[str]) -> None:
    if skipped:
        log.warning("%s: skipped %d bad annotation entries; first: %s", path, len(skipped), skipped[0])


def _as_int(value: Any, what: str, where: str) -> int:
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


def read_tennis_events(path: str | Path, label_key: str | None = "label", frame_base: int = 0,
                       on_bad_entry: str = "error") -> list[Clip]:
    """F3Set-style list of videos; each event becomes one clip starting at its frame.

    `label_key=None` ignores labels (an unlabelled distillation list). Videos without events
    contribute nothing. An event frame outside `[0, num_frames)` (when the video gives
    `num_frames`) is a bad entry.
    """
    _check_on_bad_entry(on_bad_entry)
    path = Path(path)
    return _tennis_clips(path, _load_json(path), label_key, frame_base, on_bad_entry)


def _tennis_clips(path: Path, videos: Any, label_key: str | None, frame_base: int,
                  on_bad_entry: str) -> list[Clip]:
    if not isinstance(videos, list):
        raise AnnotationError(f"{path}: expected a JSON list of videos ({{'video': ..., 'events': [...]}}), "
                              f"got {type(videos).__name__}")
    clips, skipped = [], []
    for v_index, entry in enumerate(videos):
        where = f"{path} video #{v_index}"
        if not isinstance(entry, dict) or "video" not in entry or "events" not in entry:
            _fail_or_skip(f"{where}: needs the fields 'video' and 'events'", on_bad_entry, skipped)
            continue
        video = str(entry["video"])
        num_frames = entry.get("num_frames")
        for e_index, event in enumerate(entry["events"]):
            where = f"{path} video '{video}' event #{e_index}"
            try:
                if not isinstance(event, dict) or "frame" not in event:
                    raise AnnotationError(f"{where}: needs the field 'frame'")
                start = _as_int(event["frame"], "frame", where) - frame_base
                if start < 0 or (num_frames is not None and start >= int(num_frames)):
                    raise AnnotationError(
                        f"{where}: frame {event['frame']} is outside the video's {num_frames} frames "
                        f"(frame_base={frame_base}: the file numbers the first frame {frame_base})")
                label = None
                if label_key is not None:
                    if label_key not in event:
                        raise AnnotationError(f"{where}: needs the label field '{label_key}' "
                                              f"(set the label key, or label_key=None for unlabelled use)")
                    label = str(event[label_key])
            except AnnotationError as err:
                _fail_or_skip(str(err), on_bad_entry, skipped)
                continue
            clips.append(Clip(video, start=start, label=label))
    _report_skipped(path, skipped)
    return clips


def read_clip_list(path: str | Path, label_key: str | None = "label", frame_base: int = 0,
                   on_bad_entry: str = "error") -> list[Clip]:
    """Flat list (JSON list of objects, or CSV with a header) of `video, start, end, label`.

    Only `video` is required; empty CSV cells count as absent. `end` is exclusive.
    """
    _check_on_bad_entry(on_bad_entry)
    path = Path(path)
    rows = _load_csv(path) if path.suffix.lower() == ".csv" else _load_json(path)
    return _list_clips(path, rows, label_key, frame_base, on_bad_entry)


def _list_clips(path: Path, rows: Any, label_key: str | None, frame_base: int,
                on_bad_entry: str) -> list[Clip]:
    if not isinstance(rows, list):
        raise AnnotationError(f"{path}: expected a JSON list of clips ({{'video': ..., 'start': ...}}), "
                              f"got {type(rows).__name__}")
    clips, skipped = [], []
    for index, row in enumerate(rows):
        where = f"{path} entry #{index}"
        try:
            clips.append(_clip_from_row(row, where, label_key, frame_base))
        except AnnotationError as err:
            _fail_or_skip(str(err), on_bad_entry, skipped)
    _report_skipped(path, skipped)
    return clips


def _clip_from_row(row: Any, where: str, label_key: str | None, frame_base: int) -> Clip:
    if not isinstance(row, dict):
        raise AnnotationError(f"{where}: expected an object with at least 'video', got {row!r}")
    row = {key: value for key, value in row.items() if value not in (None, "")}
    if "video" not in row:
        raise AnnotationError(f"{where}: needs the field 'video'")
    start = _as_int(row["start"], "start", where) - frame_base if "start" in row else None
    end = _as_int(row["end"], "end", where) - frame_base if "end" in row else None
    if start is not None and start < 0:
        raise AnnotationError(f"{where}: start {row['start']} is before the first frame (frame_base={frame_base})")
    if end is not None and end <= (start or 0):
        raise AnnotationError(f"{where}: end {row['end']} must be after start (end is exclusive)")
    label = str(row[label_key]) if label_key is not None and label_key in row else None
    return Clip(str(row["video"]), start=start, end=end, label=label)


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


@gin.configurable("clip_annotations")
def read_annotations(path: str | Path, layout: str = "auto", label_key: str | None = "label",
                     frame_base: int = 0, on_bad_entry: str = "error") -> list[Clip]:
    """Read any supported layout; `layout='auto'` picks by what the path holds.

    A folder is a class-folder layout; `.csv` a flat list; a JSON list whose entries carry
    `events` is tennis-style, otherwise a flat list.
    """
    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"{path}: annotation file or folder does not exist")
    if layout == "auto" and not path.is_dir() and path.suffix.lower() != ".csv":
        # A JSON file: parsed once, for the layout and for the clips.
        data = _load_json(path)
        _check_on_bad_entry(on_bad_entry)
        first = data[0] if isinstance(data, list) and data else None
        reader = _tennis_clips if isinstance(first, dict) and "events" in first else _list_clips
        return reader(path, data, label_key, frame_base, on_bad_entry)
    if layout == "auto":
        layout = "folders" if path.is_dir() else "flat"
    if layout == "folders":
        return read_class_folders(path)
    if layout == "tennis":
        return read_tennis_events(path, label_key, frame_base, on_bad_entry)
    if layout == "flat":
        return read_clip_list(path, label_key, frame_base, on_bad_entry)
    raise ValueError(f"clip_annotations.layout must be 'auto', 'tennis', 'flat' or 'folders', got {layout!r}")


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: not valid JSON ({err})") from None


def _load_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "video" not in reader.fieldnames:
            raise AnnotationError(f"{path}: CSV needs a header row with at least a 'video' column")
        return list(reader)


def natural_key(text: str) -> list:
    """Sort key that puts serve2 before serve10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
