"""Which recording (group) each evaluation clip comes from, for recording-disjoint episodes.

Clips cut from one recording share court, player, light and clothing: a query whose support
holds a clip of its own recording can be classified by scene alone. A group per clip lets the
episode sampler keep support and queries of a class in different recordings.

Where a clip's group comes from (one of):
- `video`: the clip's video is its recording (tennis event lists; the EPIC lists read by
  gin/base/mmcdfsl_annotations_epic.gin, whose video is participant_id/video_id);
- `video_folder`: the folder part of the video, e.g. the participant `P01` of `P01/P01_01`;
- a groups file (JSON), for lists whose videos are cut clips of unlabelled recordings (the
  tennis strokes folders): `{"groups": {"<group>": ["<video>", ...], ...}}`, videos spelt as the
  clip lists spell them (`forehand/forehand21`). Other top-level keys (e.g. `"how"`) are notes.
  Checked on read: every evaluated clip in exactly one group; the file may list more clips than
  are evaluated (one file serves every slice of a dataset).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence

GROUP_BY = ("video", "video_folder")


class GroupsError(ValueError):
    """A groups file that does not give every evaluated clip exactly one group."""


def read_groups_file(path: str | Path) -> dict[str, str]:
    """video -> group from a groups file; a video listed twice (in one group or two) is an error."""
    path = Path(path)
    if not path.is_file():
        raise GroupsError(f"groups file {path} does not exist; write one with `python -m "
                          f"mmdistill.eval.scene_groups` or set fewshot.groups_file = None")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise GroupsError(f"{path}: not valid JSON ({err})") from None
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, dict) or not all(
            isinstance(v, list) and all(isinstance(c, str) for c in v) for v in groups.values()):
        raise GroupsError(f"{path}: expected {{\"groups\": {{\"<group>\": [\"<video>\", ...]}}}}, "
                          f"a list of clip videos per group")
    seen: dict[str, str] = {}
    twice = []
    for group, videos in groups.items():
        for video in videos:
            if video in seen:
                twice.append(f"{video} ({seen[video]}, {group})" if seen[video] != group
                             else f"{video} (twice in {group})")
            seen[video] = group
    if twice:
        raise GroupsError(f"{path}: {len(twice)} clip(s) listed more than once, e.g. "
                          f"{', '.join(twice[:5])}; give each clip exactly one group")
    return seen


def clip_groups(videos: Sequence[str], group_by: str | None = None,
                groups_file: str | Path | None = None) -> list[str] | None:
    """The group of each clip (by its video), or None when no grouping is configured."""
    if group_by is not None and groups_file is not None:
        raise ValueError("set fewshot.group_by or fewshot.groups_file, not both: a clip has one "
                         "group")
    if groups_file is not None:
        mapping = read_groups_file(groups_file)
        missing = sorted({v for v in videos if v not in mapping})
        if missing:
            raise GroupsError(f"{groups_file}: {len(missing)} evaluated clip(s) have no group, e.g. "
                              f"{missing[:5]}; add them to a group (a clip of its own recording is "
                              f"a group of one)")
        return [mapping[v] for v in videos]
    if group_by is None:
        return None
    if group_by == "video":
        return list(videos)
    if group_by == "video_folder":
        flat = [v for v in videos if "/" not in v]
        if flat:
            raise GroupsError(f"fewshot.group_by = 'video_folder' needs videos inside folders, but "
                              f"{len(flat)} have none, e.g. {flat[:3]}; use 'video' or a groups file")
        return [v.rsplit("/", 1)[0] for v in videos]
    raise ValueError(f"fewshot.group_by must be one of {GROUP_BY} or None, got {group_by!r}")


def groups_per_class(labels: Iterable[int], groups: Sequence[str],
                     class_names: Sequence[str]) -> dict[str, int]:
    """Class name -> number of distinct groups among its clips."""
    seen: dict[int, set] = {}
    for label, group in zip(labels, groups):
        seen.setdefault(int(label), set()).add(group)
    return {class_names[c]: len(seen[c]) for c in sorted(seen)}


def describe(per_class: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in per_class.items())


def format_groups(clips: Sequence, group_by: str | None = None,
                  groups_file: str | Path | None = None) -> str:
    """`data check`'s lines: groups (recordings) per class and the classes that cannot give a
    group-disjoint episode at all (one group)."""
    groups = clip_groups([clip.video for clip in clips], group_by, groups_file)
    source = f"groups file {groups_file}" if groups_file is not None else f"group_by {group_by}"
    labels = [clip.label for clip in clips]
    names = sorted({label for label in labels if label is not None})
    if not names:
        return f"groups ({source}): {len(set(groups))} over {len(clips)} unlabelled clips"
    per_class = groups_per_class([names.index(label) for label in labels if label is not None],
                                 [g for g, label in zip(groups, labels) if label is not None], names)
    lines = [f"groups ({source}): {len(set(groups))} over {len(clips)} clips; groups per class: "
             f"{describe(per_class)}"]
    single = [name for name, count in per_class.items() if count < 2]
    if single:
        lines.append(f"  classes with one group (never in a group-disjoint episode): "
                     f"{', '.join(single)}")
    shared = sorted({g for g in groups if len({l for l, h in zip(labels, groups) if h == g}) > 1})
    if shared:
        lines.append(f"  groups holding clips of several classes: {len(shared)} (e.g. {shared[:3]})")
    return "\n".join(lines)
