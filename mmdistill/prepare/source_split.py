"""`source-split` step: the lists of a labelled-source few-shot experiment on one class folder.

Stage 1 of the method needs a labelled SOURCE whose classes are not the few-shot test classes;
with one real data set the only such source is some of its own classes. This step deals the
classes (named, not drawn: which strokes make a useful source is a decision worth writing down)
and splits each test class by clip number, so that the labels of the evaluation clips can never
reach a training list. Writes, as flat JSON (``{"video", "label"}``, read by every reader):

- ``source.json``: every clip of the ``--source-classes``, labelled (stage-1 cross-entropy);
- ``unlabeled.json``: clips ``--target-clips`` of the other classes, no labels (stage-1 target,
  distillation);
- ``val.json``: the same clips with their labels, for choosing settings only;
- ``test.json``: the other clips of the test classes, labelled, for the final evaluation only;
- ``split.json``: the classes and clip range, to see afterwards what went where;
- with ``--test-slices 21-30,31-40``: ``test_21-30.json``, ``test_31-40.json``, the test.json
  clips numbered in each range, so a claim can be checked on disjoint parts of the test clips
  (each range inside the test clips, none overlapping another; split.json is left as it was).

Contiguous clip ranges keep clips cut from one source video on one side of the line.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from .annotations import class_of, clip_number, parse_range
from .common import PrepareError, find_videos, write_changed_files

EXAMPLE = """example:
  python -m mmdistill.prepare source-split --videos ../shared/data/tennis_strokes \\
      --out .cache/tennis_strokes/source_split --source-classes serve,smash --target-clips 1-20
  -> source.json (serve, smash: all clips), unlabeled.json + val.json (clips 1-20 of the other
     five classes), test.json (clips 21-40 of the other five), split.json
  add --test-slices 21-30,31-40 -> also test_21-30.json and test_31-40.json (parts of test.json)"""

FILES = ("source.json", "unlabeled.json", "val.json", "test.json", "split.json")


@dataclass
class SplitReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)   # file -> clips
    source_classes: list[str] = field(default_factory=list)
    test_classes: list[str] = field(default_factory=list)
    ok: bool = True

    def summary(self) -> str:
        lines = [f"source-split: {len(self.written)} file(s) written, {len(self.unchanged)} "
                 f"unchanged (already identical)"]
        lines += [f"  wrote {path}" for path in self.written]
        lines.append(f"  source classes ({len(self.source_classes)}): {', '.join(self.source_classes)}")
        lines.append(f"  test classes ({len(self.test_classes)}): {', '.join(self.test_classes)}")
        lines += [f"  {name}: {count} clips" for name, count in self.counts.items()]
        return "\n".join(lines)


def split_lists(videos: list[str], source_classes: list[str],
                target_clips: tuple[int, int]) -> dict[str, list[dict]]:
    """Video ids -> the four lists (see the module docstring); pure, for tests."""
    twice = sorted({name for name in source_classes if source_classes.count(name) > 1})
    if twice:
        raise PrepareError(f"--source-classes names {', '.join(repr(n) for n in twice)} twice; "
                           f"name each class once")
    by_class: dict[str, list[str]] = {}
    for video in videos:
        by_class.setdefault(class_of(video, Path(video)), []).append(video)
    unknown = sorted(set(source_classes) - set(by_class))
    if unknown:
        raise PrepareError(f"--source-classes names {unknown}, not class folders of --videos "
                           f"(classes: {', '.join(sorted(by_class))})")
    test_classes = sorted(set(by_class) - set(source_classes))
    if not test_classes:
        raise PrepareError("--source-classes takes every class; leave some as test classes")
    first, last = target_clips
    lists: dict[str, list[dict]] = {"source": [], "unlabeled": [], "val": [], "test": []}
    for label in sorted(source_classes):
        lists["source"] += [{"video": v, "label": label} for v in by_class[label]]
    for label in test_classes:
        for video in by_class[label]:
            if first <= clip_number(video) <= last:
                lists["unlabeled"].append({"video": video})
                lists["val"].append({"video": video, "label": label})
            else:
                lists["test"].append({"video": video, "label": label})
    empty = [name for name, entries in lists.items() if not entries]
    if empty:
        raise PrepareError(f"--target-clips {first}-{last} leaves {', '.join(empty)} empty; "
                           f"choose a range that keeps clips on both sides")
    _check_every_test_class_on_both_sides(lists, test_classes, by_class, first, last)
    return lists


def _check_every_test_class_on_both_sides(lists: dict[str, list[dict]], test_classes: list[str],
                                          by_class: dict[str, list[str]], first: int, last: int) -> None:
    """A test class with no clip in the target range would be missing from unlabeled.json and
    val.json (or, with every clip in it, from test.json) without a word."""
    in_range = {e["label"] for e in lists["val"]}
    tested = {e["label"] for e in lists["test"]}
    for label in test_classes:
        numbers = sorted(clip_number(v) for v in by_class[label])
        if label not in in_range:
            raise PrepareError(f"test class '{label}' has no clip numbered {first}-{last} (--target-clips; "
                               f"its clips are numbered {numbers[0]}-{numbers[-1]}), so it would be "
                               f"missing from unlabeled.json and val.json; choose a range every test "
                               f"class has clips in, or make '{label}' a source class")
        if label not in tested:
            raise PrepareError(f"test class '{label}' has every clip in --target-clips {first}-{last}, "
                               f"so it would be missing from test.json; choose a range that leaves "
                               f"clips of every test class outside it")


def slice_lists(test: list[dict], slices: list[tuple[int, int]],
                target_clips: tuple[int, int]) -> dict[str, list[dict]]:
    """test.json's entries -> {'test_FIRST-LAST': the entries numbered in that range}; pure.

    Refuses a range that overlaps --target-clips or another range, or that leaves a test class
    without a clip (its slice would be evaluated over fewer classes without a word)."""
    first, last = target_clips
    taken: list[tuple[int, int]] = []
    for low, high in slices:
        if low <= last and first <= high:
            raise PrepareError(f"--test-slices {low}-{high} overlaps --target-clips {first}-{last} "
                               f"(training clips); give ranges of test clips only")
        for other in taken:
            if low <= other[1] and other[0] <= high:
                raise PrepareError(f"--test-slices {low}-{high} overlaps {other[0]}-{other[1]}; "
                                   f"give disjoint ranges, e.g. 21-30,31-40")
        taken.append((low, high))
    classes = sorted({e["label"] for e in test})
    out: dict[str, list[dict]] = {}
    for low, high in slices:
        entries = [e for e in test if low <= clip_number(e["video"]) <= high]
        missing = [c for c in classes if c not in {e["label"] for e in entries}]
        if missing:
            raise PrepareError(f"--test-slices {low}-{high} has no test clip of "
                               f"{', '.join(missing)}; give ranges every test class has clips in")
        out[f"test_{low}-{high}"] = entries
    return out


def prepare_source_split(videos_root: Path, out_dir: Path, *, source_classes: list[str],
                         target_clips: tuple[int, int], overwrite: bool = False,
                         test_slices: list[tuple[int, int]] = ()) -> SplitReport:
    videos = list(find_videos(Path(videos_root)))
    lists = split_lists(videos, source_classes, target_clips)
    slices = slice_lists(lists["test"], list(test_slices), target_clips)
    test_classes = sorted({e["label"] for e in lists["test"]})
    record = {"source_classes": sorted(source_classes), "test_classes": test_classes,
              "target_clips": list(target_clips),
              "files": {f"{name}.json": len(entries) for name, entries in lists.items()}}
    out_dir = Path(out_dir)
    contents = {out_dir / f"{name}.json": json.dumps(entries, indent=1) + "\n"
                for name, entries in {**lists, **slices}.items()}
    contents[out_dir / "split.json"] = json.dumps(record, indent=1) + "\n"
    written, unchanged = write_changed_files("source-split", contents, overwrite)
    counts = {**record["files"], **{f"{name}.json": len(e) for name, e in slices.items()}}
    return SplitReport(written=written, unchanged=unchanged,
                       source_classes=sorted(source_classes), test_classes=test_classes,
                       counts=counts)


def _range_argument(text: str) -> tuple[int, int]:
    try:
        return parse_range(text)
    except PrepareError as error:
        raise argparse.ArgumentTypeError(str(error).replace("--unlabeled-clips", "--target-clips")) \
            from error


def _slices_argument(text: str) -> list[tuple[int, int]]:
    parts = [part for part in text.split(",") if part.strip()]
    try:
        if not parts:
            raise PrepareError("")
        return [parse_range(part) for part in parts]
    except PrepareError as error:
        raise argparse.ArgumentTypeError(f"--test-slices {text!r}: expected FIRST-LAST ranges "
                                         f"separated by commas, e.g. 21-30,31-40") from error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", type=Path, required=True,
                        help="folder with one sub-folder of videos per class")
    parser.add_argument("--out", type=Path, required=True, help="folder for the list files")
    parser.add_argument("--source-classes", required=True, metavar="CLASS,...",
                        help="classes labelled as the source (all their clips); the others are "
                             "the few-shot test classes")
    parser.add_argument("--target-clips", type=_range_argument, required=True, metavar="FIRST-LAST",
                        help="clip numbers of the test classes that form the unlabelled target "
                             "(and, labelled, the validation list); the rest are test clips")
    parser.add_argument("--test-slices", type=_slices_argument, default=[],
                        metavar="FIRST-LAST,...",
                        help="also write test_FIRST-LAST.json for each range: the test clips "
                             "numbered in it (disjoint ranges outside --target-clips)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing list files that differ from the new ones")


def main(args: argparse.Namespace) -> SplitReport:
    classes = [c.strip() for c in args.source_classes.split(",") if c.strip()]
    if not classes:
        raise PrepareError("--source-classes is empty; e.g. serve,smash")
    return prepare_source_split(args.videos, args.out, source_classes=classes,
                                target_clips=args.target_clips, overwrite=args.overwrite,
                                test_slices=args.test_slices)
