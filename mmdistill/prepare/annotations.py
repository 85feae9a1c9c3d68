"""`annotations` step: clip lists from a folder-per-class layout of videos.

Writes the unlabeled list (distillation data, no labels) and the labelled list(s) for few-shot
evaluation. The class of a video is its first folder below the input root; its id is the path
without extension (``serve/serve1``), the same id the frames/flow/skeleton steps use.

Formats:
- ``tennis``: F3Set-style JSON (the tennis fork reads ``video`` and ``events``; the other keys
  are ours), a list of ``{"video", "fps", "height", "width",
  "num_frames", "events": [{"frame": 0, "label": class}]}``. A whole short clip is written as ONE
  event at frame 0, the video's first frame, our tennis reader's default ``frame_base=0`` (the
  fork reads event frames as 1-based file numbers, 0 clamped to 1). Unlabeled entries have
  no label: read them with ``clip_annotations.label_key = None``.
- ``flat`` (JSON) / ``csv``: one row per video, ``video`` and ``label`` only, no start: the reader
  then samples clips over the whole video.

``--split-classes val=2,test=5 --seed 0`` deals the classes at random (seeded) into disjoint
groups, one labelled file per group, and records the deal in ``split.json``.
``--unlabeled-clips 1-20`` splits by clip number instead (the trailing number of the file name):
clips 1-20 of every class go only to the unlabeled list, all others only to the labelled list(s),
so no clip is both trained on and evaluated on. Contiguous ranges keep clips cut from the same
source video together.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .common import PrepareError, find_videos, write_changed_files

EXAMPLE = """example:
  python -m mmdistill.prepare annotations --videos ../shared/data/tennis_strokes --out data/tennis \\
      --format tennis --split-classes val=2,test=5 --seed 0
  -> data/tennis/unlabeled.json, val.json, test.json, split.json"""

FORMATS = {"tennis": ".json", "flat": ".json", "csv": ".csv"}
UNLABELED = "unlabeled"
FIRST_FRAME = 0  # how F3Set-style files number a video's first frame
LABELLED = "labelled"


@dataclass
class VideoInfo:
    video: str
    label: str
    fps: float
    height: int
    width: int
    num_frames: int


@dataclass
class AnnotationReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> classes
    clips_per_class: dict[str, int] = field(default_factory=dict)
    ok: bool = True

    def summary(self) -> str:
        lines = [f"annotations: {len(self.written)} file(s) written, {len(self.unchanged)} unchanged "
                 f"(already identical), 0 failed"]
        lines += [f"  wrote {path}" for path in self.written]
        for group, classes in self.groups.items():
            clips = sum(self.clips_per_class[c] for c in classes)
            lines.append(f"  {group}: {len(classes)} classes, {clips} clips: {', '.join(classes)}")
        fewest = min(self.clips_per_class.items(), key=lambda item: item[1])
        lines.append(f"  {len(self.clips_per_class)} classes, {sum(self.clips_per_class.values())} "
                     f"clips; fewest clips: {fewest[0]} ({fewest[1]})")
        return "\n".join(lines)


def parse_split(text: str) -> dict[str, int]:
    """'val=2,test=5' -> {'val': 2, 'test': 5} (order kept)."""
    groups: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"([A-Za-z][\w-]*)=(\d+)", part)
        if not match or int(match[2]) == 0:
            raise PrepareError(f"--split-classes part {part!r} is not NAME=COUNT with COUNT >= 1, "
                               f"e.g. val=2,test=5")
        if match[1] in groups or match[1] in (UNLABELED, "split"):
            raise PrepareError(f"--split-classes group name {match[1]!r} is repeated or reserved")
        groups[match[1]] = int(match[2])
    if not groups:
        raise PrepareError("--split-classes is empty; e.g. val=2,test=5")
    return groups


def split_classes(classes: list[str], counts: dict[str, int], seed: int) -> dict[str, list[str]]:
    """Deal the classes into disjoint groups of the given sizes, shuffled by ``seed``."""
    if sum(counts.values()) != len(classes):
        raise PrepareError(f"--split-classes assigns {sum(counts.values())} classes but there are "
                           f"{len(classes)} ({', '.join(classes)}); make the counts add up to "
                           f"{len(classes)}")
    order = sorted(classes)
    random.Random(seed).shuffle(order)
    groups, start = {}, 0
    for name, count in counts.items():
        groups[name] = sorted(order[start:start + count])
        start += count
    return groups


def class_of(video: str, source: Path) -> str:
    parts = video.split("/")
    if len(parts) < 2:
        raise PrepareError(f"{source} is not inside a class folder; lay videos out as "
                           f"ROOT/<class>/<clip>.mp4")
    return parts[0]


def probe_videos(videos: dict[str, Path], progress: bool = True) -> list[VideoInfo]:
    import decord

    infos = []
    for video, path in tqdm(videos.items(), desc="annotations", unit="video",
                            disable=not progress or None):
        label = class_of(video, path)
        try:
            reader = decord.VideoReader(str(path), num_threads=1)
            height, width = reader[0].shape[:2]
            infos.append(VideoInfo(video, label, round(float(reader.get_avg_fps()), 3),
                                   int(height), int(width), len(reader)))
        except Exception as error:  # decord raises its own error types; name the file
            raise PrepareError(f"cannot read video {path}: {type(error).__name__}: {error}; "
                               f"remove or repair it") from error
    return infos


def render(infos: list[VideoInfo], fmt: str, labelled: bool) -> str:
    if fmt == "tennis":
        entries = [{"video": i.video, "fps": i.fps, "height": i.height, "width": i.width,
                    "num_frames": i.num_frames,
                    "events": [{"frame": FIRST_FRAME, "label": i.label} if labelled
                               else {"frame": FIRST_FRAME}]}
                   for i in infos]
        return json.dumps(entries, indent=1) + "\n"
    if fmt == "flat":
        entries = [{"video": i.video, "label": i.label} if labelled else {"video": i.video}
                   for i in infos]
        return json.dumps(entries, indent=1) + "\n"
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["video", "label"] if labelled else ["video"])
        writer.writerows([i.video, i.label] if labelled else [i.video] for i in infos)
        return text.getvalue()
    raise PrepareError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")


def clip_number(video: str) -> int:
    """The trailing number of a clip's name (`serve/serve12` -> 12)."""
    match = re.search(r"(\d+)$", Path(video).name)
    if match is None:
        raise PrepareError(f"--unlabeled-clips needs numbered clip names; '{video}' has no "
                           f"trailing number")
    return int(match.group(1))


def parse_range(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if match is None or int(match.group(1)) > int(match.group(2)):
        raise PrepareError(f"--unlabeled-clips {text!r}: expected FIRST-LAST, e.g. 1-20")
    return int(match.group(1)), int(match.group(2))


def prepare_annotations(videos_root: Path, out_dir: Path, *, fmt: str = "tennis",
                        split: dict[str, int] | None = None, seed: int = 0,
                        unlabeled_from: list[str] | None = None,
                        unlabeled_clips: tuple[int, int] | None = None, overwrite: bool = False,
                        progress: bool = True) -> AnnotationReport:
    """``unlabeled_from``: groups whose videos go into the unlabeled list (None: every video).
    ``unlabeled_clips`` (first, last): clips with these numbers form the unlabeled list and are
    left out of the labelled lists."""
    if fmt not in FORMATS:
        raise PrepareError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if unlabeled_clips is not None and unlabeled_from:
        raise PrepareError("--unlabeled-clips and --unlabeled-from both choose the unlabeled "
                           "list; give one of them")
    videos = find_videos(Path(videos_root))
    for video, path in videos.items():
        class_of(video, path)  # fail on a stray file before probing anything
    infos = probe_videos(videos, progress)
    classes = sorted({i.label for i in infos})
    groups = split_classes(classes, split, seed) if split else {LABELLED: classes}
    if unlabeled_from:
        unknown = sorted(set(unlabeled_from) - set(groups))
        if unknown:
            raise PrepareError(f"--unlabeled-from names {unknown}, not among the groups "
                               f"{sorted(groups)}")
        unlabeled_classes = {c for g in unlabeled_from for c in groups[g]}
    else:
        unlabeled_classes = set(classes)

    unlabeled = [i for i in infos if i.label in unlabeled_classes]
    labelled = infos
    if unlabeled_clips is not None:
        first, last = unlabeled_clips
        held_out = {i.video for i in infos if first <= clip_number(i.video) <= last}
        unlabeled = [i for i in infos if i.video in held_out]
        labelled = [i for i in infos if i.video not in held_out]
        if not unlabeled or not labelled:
            raise PrepareError(f"--unlabeled-clips {first}-{last} leaves "
                               f"{'no unlabeled' if not unlabeled else 'no labelled'} clips")
    ext = FORMATS[fmt]
    out_dir = Path(out_dir)
    contents = {out_dir / f"{UNLABELED}{ext}": render(unlabeled, fmt, labelled=False)}
    for group, members in groups.items():
        contents[out_dir / f"{group}{ext}"] = render([i for i in labelled if i.label in members],
                                                     fmt, labelled=True)
    if split or unlabeled_clips is not None:
        contents[out_dir / "split.json"] = json.dumps(
            {"seed": seed, "counts": split, "groups": groups,
             "unlabeled_from": unlabeled_from or "all",
             "unlabeled_clips": list(unlabeled_clips) if unlabeled_clips else None}, indent=1) + "\n"

    report = AnnotationReport(groups=groups, clips_per_class=dict(sorted(
        Counter(i.label for i in labelled).items())))
    report.written, report.unchanged = write_changed_files("annotations", contents, overwrite)
    return report


def _split_argument(text: str) -> dict[str, int]:
    try:
        return parse_split(text)
    except PrepareError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _range_argument(text: str) -> tuple[int, int]:
    try:
        return parse_range(text)
    except PrepareError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", type=Path, required=True,
                        help="folder with one sub-folder of videos per class")
    parser.add_argument("--out", type=Path, required=True, help="folder for the list files")
    parser.add_argument("--format", choices=sorted(FORMATS), default="tennis",
                        help="tennis (F3Set-style JSON, one event at frame 0 = first frame per clip; default), flat "
                             "(JSON list of {video, label}) or csv (video,label)")
    parser.add_argument("--split-classes", type=_split_argument, default=None, metavar="NAME=N,...",
                        help="deal the classes into disjoint groups, e.g. val=2,test=5; one labelled "
                             "file per group (default: one file, labelled, with every class)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the class split (default 0)")
    parser.add_argument("--unlabeled-from", default=None, metavar="GROUP,...",
                        help="only these groups' videos go into the unlabeled list (default: all "
                             "videos; note that then evaluation videos are also seen unlabeled)")
    parser.add_argument("--unlabeled-clips", type=_range_argument, default=None, metavar="FIRST-LAST",
                        help="split by clip number: clips FIRST..LAST of every class (trailing "
                             "number of the name) form the unlabeled list and are left out of "
                             "the labelled list(s), e.g. 1-20")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing list files that differ from the new ones")


def main(args: argparse.Namespace) -> AnnotationReport:
    unlabeled_from = [g.strip() for g in args.unlabeled_from.split(",")] if args.unlabeled_from else None
    return prepare_annotations(args.videos, args.out, fmt=args.format, split=args.split_classes,
                               seed=args.seed, unlabeled_from=unlabeled_from,
                               unlabeled_clips=args.unlabeled_clips, overwrite=args.overwrite)
