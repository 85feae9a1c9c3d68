"""What `python -m mmdistill.data check` reports (the command is mmdistill/commands/data.py): scan a dataset once and say what is there and what is not,
optionally with a picture of a few training clips so a user can see the modalities line up.

The scan asks every source of every video for its frame count and reads one frame (or the
skeleton file), so it is quick; `--decode` also builds every clip the way training would. The
report starts with how the annotation file was read (layout, which key gave which field, and
what each field held), so a wrong key mapping shows before any frame is opened.
"""
from __future__ import annotations

import contextlib
import dataclasses
import statistics
from collections import Counter, defaultdict
from pathlib import Path

import gin
import numpy as np

from mmdistill.data.annotation_fields import describe_keys
from mmdistill.data.annotations import AnnotationReading, Clip, read_annotation_file
from mmdistill.data.dataset import ClipDataset, build_clip_dataset
from mmdistill.data.colours import flow_to_colour  # noqa: F401  (tests)
from mmdistill.data.sources import BadClipError
from mmdistill.progress import progress as progress_bar

# ---------------------------------------------------------------------------------------------
# Building the dataset a gin file describes

def dataset_in_scope(scope: str | None = None, **overrides) -> ClipDataset:
    """Call `clip_data` with the parsed bindings (inside `scope`, e.g. 'fewshot')."""
    try:
        if scope:
            with gin.config_scope(scope):
                return build_clip_dataset(**overrides)
        return build_clip_dataset(**overrides)
    except TypeError as err:
        if "annotations" in str(err):
            raise SystemExit(f"no annotation file bound: set clip_data.annotations (or {scope or 'SCOPE'}/"
                             f"clip_data.annotations with --scope), or pass --annotations") from None
        raise


# ---------------------------------------------------------------------------------------------
# How the annotation file was read

LAYOUT_NAMES = {"tennis": "tennis-style events", "flat": "flat list", "folders": "class folders"}


def annotation_reading_in_scope(scope: str | None, on_bad_clip: str = "error",
                                annotations: str | None = None) -> AnnotationReading | None:
    """The annotation file `clip_data` read, read again with the same bindings for the report
    (None when the clips were given as a list)."""
    with gin.config_scope(scope) if scope else contextlib.nullcontext():
        data_options = gin.get_bindings("clip_data")
        path = annotations or data_options.get("annotations")
        if not isinstance(path, (str, Path)):
            return None
        options = {**gin.get_bindings("clip_annotations"), "require_labels": data_options.get("labeled") is True,
                   "on_bad_entry": "skip" if on_bad_clip == "skip" else "error"}
        return read_annotation_file(path, **options)


def _field_summary(field: str, clips: list[Clip], frame_base: int) -> str:
    count = len(clips)
    if field == "video":
        return f"{count} clips, {len({clip.video for clip in clips})} videos"
    if field == "label":
        labelled = [clip.label for clip in clips if clip.label is not None]
        return f"{len(labelled)} of {count} clips, {len(set(labelled))} classes"
    frames = [getattr(clip, field) for clip in clips if getattr(clip, field) is not None]
    if not frames:
        return f"0 of {count} clips (in no entry)"
    return (f"{len(frames)} of {count} clips, frames {min(frames)}..{max(frames)} (0-based: the file's number "
            f"- frame_base {frame_base})")


def format_annotation_reading(reading: AnnotationReading) -> str:
    """Layout, then per clip field: the entry key(s) it came from and what it held."""
    fields = reading.fields
    under = f", the list under '{reading.entries_key}'" if reading.entries_key else ""
    lines = [f"annotations: {reading.path} ({LAYOUT_NAMES[reading.layout]}{under}): {reading.num_entries} "
             f"entries -> {len(reading.clips)} clips"]
    if reading.layout == "folders":
        sources = {"video": "file path under the root", "start": None, "end": None, "label": "class folder"}
    else:
        label = describe_keys(fields.label) if fields.label else None
        tennis = reading.layout == "tennis"
        sources = {"video": describe_keys(fields.video),
                   "start": "events[].'frame'" if tennis else fields.start and describe_keys(fields.start),
                   "end": None if tennis else fields.end and describe_keys(fields.end),
                   "label": label and (f"events[].{label}" if tennis else label)}
    for field, source in sources.items():
        lines.append(f"  {field:6s}" + (" not read" if source is None else
                                        f" <- {source}: {_field_summary(field, reading.clips, reading.frame_base)}"))
    if reading.unread_keys:
        listed = ", ".join(f"{key} ({count})" for key, count in sorted(reading.unread_keys.items()))
        lines.append(f"  keys not read (entries holding them): {listed}")
    if reading.skipped:
        lines.append(f"  skipped entries: {len(reading.skipped)}; first: {reading.skipped[0]}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The scan

@dataclasses.dataclass
class CheckReport:
    """What a scan found; `problems` lists (modality, video, message) for every bad file."""

    num_clips: int
    num_videos: int
    modalities: list[str]
    class_counts: dict[str, int]
    frame_counts: dict[str, list[int]]
    frame_sizes: dict[str, Counter]
    videos_ok: dict[str, int]
    videos_complete: int
    clips_ok: int
    problems: list[tuple[str, str, str]]

    @property
    def ok(self) -> bool:
        return not self.problems


def scan_dataset(dataset: ClipDataset, decode: bool = False, progress: bool = True) -> CheckReport:
    """Check every video of every modality once (and every clip with `decode`)."""
    clips_by_video = defaultdict(list)
    for index, clip in enumerate(dataset.clips):
        clips_by_video[clip.video].append(index)
    frame_counts = {name: [] for name in dataset.sources}
    frame_sizes = {name: Counter() for name in dataset.sources}
    videos_ok = Counter()
    problems = []
    usable = set()
    for video, indices in progress_bar(clips_by_video.items(), desc="videos", disable=not progress):
        counts, first_frames = {}, {}
        # the first frame a clip reads: sparse per-frame files (MM-CDFSL's) may lack frame 0
        first = min(dataset.clips[index].start or 0 for index in indices)
        for name, source in dataset.sources.items():
            try:
                counts[name] = source.num_frames(video)
                first_frames[name] = source.read(video, [min(first, counts[name] - 1)])
                frame_sizes[name][dataset.specs[name].describe(first_frames[name])] += 1
            except BadClipError as err:
                problems.append((name, video, str(err)))
                continue
            frame_counts[name].append(counts[name])
            videos_ok[name] += 1
        if len(counts) < len(dataset.sources):
            continue
        if len(set(counts.values())) > 1 and dataset.frame_counts == "equal":
            problems.append(("all", video, f"modalities disagree on the number of frames {counts}"))
            continue
        try:  # frames of another aspect ratio than the RGB would be stretched onto it
            dataset.plan_size(first_frames, video)
        except BadClipError as err:
            problems.append(("all", video, str(err)))
            continue
        length = min(counts.values())
        for index in indices:
            clip = dataset.clips[index]
            if (clip.start is not None and clip.start >= length) or (clip.end is not None and clip.end > length):
                problems.append(("annotation", video, f"clip #{index} (start {clip.start}, end {clip.end}) lies "
                                                      f"past the video's {length} frames"))
            else:
                usable.add(index)
    if decode:
        for index in progress_bar(sorted(usable), desc="clips", disable=not progress):
            try:
                dataset.load_clip(dataset.clips[index], np.random.default_rng(0), np.random.default_rng(0))
            except BadClipError as err:
                usable.discard(index)
                problems.append(("decode", dataset.clips[index].video, f"clip #{index}: {err}"))
    broken = {video for kind, video, _ in problems if kind in dataset.sources or kind == "all"}
    complete = sum(1 for video in clips_by_video if video not in broken)
    class_counts = dict(sorted(Counter(dataset.class_names[label] for label in dataset.labels if label >= 0).items()))
    return CheckReport(len(dataset.clips), len(clips_by_video), list(dataset.sources), class_counts, frame_counts,
                       frame_sizes, dict(videos_ok), complete, len(usable), problems)


def format_report(report: CheckReport, max_listed: int = 20) -> str:
    lines = [f"clips: {report.num_clips} from {report.num_videos} videos; modalities: {', '.join(report.modalities)}"]
    if report.class_counts:
        counts = list(report.class_counts.values())
        lines.append(f"classes: {len(counts)}; clips per class min {min(counts)}, median "
                     f"{statistics.median(counts):g}, max {max(counts)}")
        shown = sorted(report.class_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if len(shown) > max_listed:
            lines.append(f"  (the {max_listed} largest of {len(shown)} classes)")
            shown = shown[:max_listed]
        lines += [f"  {count:6d}  {name}" for name, count in shown]
    else:
        lines.append("classes: none (unlabelled)")
    lines.append("modality coverage (videos whose files are all there and readable):")
    for name in report.modalities:
        lines.append(f"  {name:10s} {report.videos_ok.get(name, 0)}/{report.num_videos}")
    lines.append(f"  {'all':10s} {report.videos_complete}/{report.num_videos}; usable clips {report.clips_ok}/"
                 f"{report.num_clips}")
    for name in report.modalities:
        counts = report.frame_counts[name]
        if counts:
            lines.append(f"frames per video, {name}: min {min(counts)}, median {statistics.median(counts):g}, "
                         f"max {max(counts)}")
        sizes = ", ".join(f"{size} ({count})" for size, count in report.frame_sizes[name].most_common(5))
        lines.append(f"frame size, {name}: {sizes or '-'}")
    if report.problems:
        by_kind = Counter(kind for kind, _, _ in report.problems)
        lines.append(f"PROBLEMS: {len(report.problems)} ({', '.join(f'{k}: {n}' for k, n in sorted(by_kind.items()))})")
        lines += [f"  [{kind}] {message}" for kind, _, message in report.problems[:max_listed]]
        if len(report.problems) > max_listed:
            lines.append(f"  ... and {len(report.problems) - max_listed} more")
    else:
        lines.append("no problems found")
    return "\n".join(lines)
