"""The leakage check each training stage runs first: no label of an evaluation or validation
class may reach a labelled training list, and no evaluation or validation clip an unlabelled one.

- a labelled source (`source/clip_data.annotations`) sharing a class with the few-shot test list
  (`fewshot_data/clip_data.annotations`) or the validation list (`validation.annotations`) would
  train on the labels the evaluation asks for;
- unlabelled clips (`unlabeled/clip_data.annotations`) that read frames of an evaluation or
  validation clip (same video under the same data root, overlapping frames) would train on the
  very clips the evaluation measures.

Refused unless `leakage.allow = True` (a transductive setting chosen on purpose). Lists that are
not bound, or do not exist yet, are not checked here (the stage that reads them says so).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import gin

from mmdistill.data.annotations import Clip, read_annotations
from mmdistill.data.transforms import TemporalSampler


class LeakageError(ValueError):
    """A training list that holds evaluation or validation classes or clips."""


def _query(name: str, scopes: Sequence[str]) -> Any:
    """A binding as gin applies it in `scopes` (innermost first, then unscoped); macros resolved."""
    for scope in [*scopes, ""]:
        try:
            value = gin.query_parameter(f"{scope}/{name}" if scope else name)
        except ValueError:
            continue
        if isinstance(value, gin.config.ConfigurableReference):  # a %MACRO
            value = value.scoped_configurable_fn()
        return value
    return None


class _List:
    """One annotation list as the stage reads it: its clips, root and frame span."""

    def __init__(self, role: str, scope: str, path: Any, labelled: bool):
        self.role, self.path = role, Path(path)
        with gin.config_scope(scope):
            # bad entries are the stage's to report (or skip, with on_bad_clip='skip')
            self.clips: list[Clip] = read_annotations(self.path, on_bad_entry="skip", require_labels=labelled)
            self.span = TemporalSampler().span
        root = _query("clip_data.root", [scope])
        if root is None:
            root = self.path if self.path.is_dir() else self.path.parent
        self.root = Path(root).resolve()

    def frames(self, clip: Clip) -> tuple[float, float]:
        """Frames the clip may read, [first, last) (a window or whole video: all of it)."""
        if clip.start is not None and clip.end is None:
            return clip.start, clip.start + self.span
        return clip.start or 0, clip.end if clip.end is not None else math.inf

    def by_video(self) -> dict[str, list[tuple[float, float]]]:
        videos: dict[str, list[tuple[float, float]]] = {}
        for clip in self.clips:
            videos.setdefault(str(self.root / clip.video), []).append(self.frames(clip))
        return videos


def _evaluation_lists() -> list[_List]:
    lists = []
    test = _query("clip_data.annotations", ["fewshot_data"])
    if test is not None and Path(test).exists():
        lists.append(_List("few-shot evaluation list", "fewshot_data", test, labelled=True))
    try:
        val = gin.query_parameter("validation.annotations")
        every = gin.query_parameter("validation.eval_every")
    except ValueError:
        val, every = None, 0
    if val is not None and every and Path(val).exists():
        lists.append(_List("validation list", "fewshot_val_data", val, labelled=True))
    return lists


def _shared_clips(train: _List, other: _List) -> list[str]:
    theirs = other.by_video()
    shared = []
    for clip in train.clips:
        first, last = train.frames(clip)
        if any(first < o_last and o_first < last for o_first, o_last in theirs.get(str(train.root / clip.video), ())):
            shared.append(clip.video)
    return shared


@gin.configurable("leakage", denylist=["stage", "labelled", "unlabelled"])
def check_leakage(stage: str, labelled: bool = False, unlabelled: bool = True, allow: bool = False) -> None:
    """Refuse the stage's training lists when they hold evaluation or validation classes
    (`labelled`: the source list) or clips (`unlabelled`: the unlabelled list), unless `allow`."""
    if allow:
        return
    evaluation = _evaluation_lists()
    if not evaluation:
        return
    fix = ("split them apart (python -m mmdistill.prepare source-split / annotations --split-classes), "
           "or, to train on them on purpose (transductive), set leakage.allow = True")
    source = _query("clip_data.annotations", ["source"]) if labelled else None
    if source is not None:
        train = _List("labelled source list", "source", source, labelled=True)
        classes = {clip.label for clip in train.clips}
        for other in evaluation:
            shared = sorted(classes & {clip.label for clip in other.clips})
            if shared:
                raise LeakageError(f"{stage}: the {train.role} {train.path} holds classes of the {other.role} "
                                   f"{other.path}: {', '.join(shared)}; the evaluation would ask for labels "
                                   f"this stage trains on. Fix: {fix}")
    target = _query("clip_data.annotations", ["unlabeled"]) if unlabelled else None
    if target is not None:
        train = _List("unlabelled list", "unlabeled", target, labelled=False)
        for other in evaluation:
            shared = _shared_clips(train, other)
            if shared:
                raise LeakageError(f"{stage}: {len(shared)} of the {len(train.clips)} clips of the {train.role} "
                                   f"{train.path} read frames of clips in the {other.role} {other.path} (first: "
                                   f"video '{shared[0]}'); this stage would train on the clips the evaluation "
                                   f"measures. Fix: {fix}")
