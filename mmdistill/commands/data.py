"""Data tools: `python -m mmdistill.data check|stats|cache --gin_file FILE [...]`.

The command part of the data tools: gin parsing with the data modules' configurables only, the
arguments, and running check (mmdistill/data/check.py), stats (data/stats.py) or cache
(data/clip_cache.py). data/ itself never imports the runner's config parser.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from mmdistill.checks import FlagError, check_flags
from mmdistill.commands.configurables import DATA_MODULES, import_configurables
from mmdistill.commands.flags import add_gin_flags
from mmdistill.commands.session import run_command

EXAMPLES = """examples (the shipped gin files bind the training clips in scope unlabeled and the
evaluation clips in scope fewshot_data):
  python -m mmdistill.data check --gin_file gin/demo/distill.gin --scope unlabeled
  python -m mmdistill.data check --gin_file gin/tennis.gin --scope fewshot_data --visualize 4
  python -m mmdistill.data check --annotations data/fewshot.json --modalities rgb --visualize 4
  python -m mmdistill.data stats --gin_file gin/tennis.gin --scope unlabeled --max_clips 300
  python -m mmdistill.data cache --gin_file gin/tennis.gin --scope unlabeled --cache_dir .cache/clips
"""


def _common(parser: argparse.ArgumentParser) -> None:
    add_gin_flags(parser, file_help="gin file describing the dataset (repeatable)",
                  param_help="extra gin binding (repeatable)")
    parser.add_argument("--scope", default=None,
                        help="gin scope of the dataset: unlabeled or fewshot_data in the shipped files")
    parser.add_argument("--annotations", default=None, help="annotation file or class folder (overrides gin)")
    parser.add_argument("--root", default=None, help="data root (overrides gin)")
    parser.add_argument("--modalities", nargs="+", default=None,
                        help="modalities to read (overrides gin; default: the keys of modality_specs.extra "
                             "when bound, else rgb flow skeleton)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mmdistill.data", description=__doc__, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="scan a dataset and report clips, classes, coverage and problems",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(check)
    check.add_argument("--decode", action="store_true", help="also decode every clip as training would")
    check.add_argument("--visualize", type=int, default=0, metavar="N",
                       help="write a PNG montage of N clips after the training transforms")
    check.add_argument("--out", default="data_check.png", help="montage path (with --visualize)")
    check.add_argument("--max_listed", "--max-listed", type=int, default=20, help="classes/problems listed at most")
    check.add_argument("--group_by", "--group-by", choices=("video", "video_folder"), default=None,
                       help="report groups (recordings) per class, a clip's group being its video "
                            "or the video's folder (as fewshot.group_by)")
    check.add_argument("--groups_file", "--groups-file", default=None,
                       help="report groups per class from a groups file (as fewshot.groups_file)")
    stats = commands.add_parser("stats", help="per-channel mean/std of flow and skeleton inputs, as gin lines",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(stats)
    stats.add_argument("--max_clips", "--max-clips", type=int, default=200)
    stats.add_argument("--num_workers", "--num-workers", type=int, default=0)
    cache = commands.add_parser("cache", help="fill the decoded-clip cache (clip_data.cache_dir) ahead of training",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(cache)
    cache.add_argument("--cache_dir", "--cache-dir", default=None, help="cache folder (overrides clip_data.cache_dir)")
    cache.add_argument("--num_workers", "--num-workers", type=int, default=0, help="processes decoding videos in parallel")
    return parser


def run_cache(args) -> int:
    from mmdistill.data.check import dataset_in_scope
    from mmdistill.data.clip_cache import verify_and_fill

    overrides = _overrides(args)
    if args.cache_dir:
        overrides["cache_dir"] = args.cache_dir
    parse_gin(args.gin_file, args.gin_param)
    dataset = dataset_in_scope(args.scope, **overrides)
    if dataset.cache is None:
        raise SystemExit("no cache folder: set clip_data.cache_dir (in the gin file, or "
                         f"--gin_param \"{args.scope + '/' if args.scope else ''}clip_data.cache_dir='PATH'\") "
                         "or pass --cache_dir")
    failed, repaired = verify_and_fill(dataset, args.num_workers, progress=not args.quiet)
    videos = len({clip.video for clip in dataset.clips})
    print(f"clip cache {dataset.cache.folder}: {videos - len(failed)} of {videos} videos cached"
          + (f"; {len(repaired)} broken entries were filled again" if repaired else ""))
    for video, problem in repaired[:20]:
        print(f"  refilled: {video}: {problem}")
    for video, error in failed[:20]:
        print(f"  failed: {video}: {error}")
    return 1 if failed else 0


def parse_gin(gin_files: Sequence[str] = (), gin_params: Sequence[str] = ()) -> None:
    """Parse the files and bindings as run.py does (shipped files found from any working
    directory), exiting with gin's message on a bad file or binding. Only the data modules are
    imported, so the bindings of other configurables are skipped; their names are printed, as a
    misspelled data configurable would be among them."""
    from mmdistill.config import ConfigError, parse_config

    import_configurables(DATA_MODULES)
    try:
        skipped = parse_config(gin_files, gin_params, finalize=False, skip_unknown=True)
    except ConfigError as err:
        raise SystemExit(str(err)) from None
    if skipped:
        print(f"skipped the bindings of configurables the data check does not use: "
              f"{', '.join(skipped)}", file=sys.stderr)


def run_check(args) -> int:
    from mmdistill.data.check import (annotation_reading_in_scope, dataset_in_scope,
                                      format_annotation_reading, format_report, scan_dataset)
    from mmdistill.data.groups import format_groups
    from mmdistill.data.pictures import write_montage

    overrides = _overrides(args)
    parse_gin(args.gin_file, args.gin_param)
    if "modalities" not in overrides and _declared_modalities():
        overrides["modalities"] = _declared_modalities()
    dataset = dataset_in_scope(args.scope, **overrides)
    reading = annotation_reading_in_scope(args.scope, dataset.on_bad_clip, args.annotations)
    if reading is not None:
        print(format_annotation_reading(reading))
    report = scan_dataset(dataset, decode=args.decode, progress=not args.quiet)
    print(format_report(report, args.max_listed))
    if args.group_by or args.groups_file:
        print(format_groups(dataset.clips, args.group_by, args.groups_file))
    if args.visualize:
        train_set = dataset_in_scope(args.scope, **{**overrides, "mode": "train", "on_bad_clip": "skip"})
        path = write_montage(train_set, args.out, args.visualize, seed=args.seed)
        print(f"montage of {args.visualize} clips after the training transforms: {path}")
    return 0 if report.ok else 1


def _declared_modalities() -> list[str] | None:
    """The modalities a config declares its own specs for (`modality_specs.extra`, e.g. MM-CDFSL's
    rgb, flow and pose): what its runs read, so what the check reads without --modalities."""
    import gin

    try:
        extra = gin.query_parameter("modality_specs.extra")
    except ValueError:
        return None
    return list(extra) if extra else None


def _overrides(args) -> dict:
    overrides = {}
    if args.annotations:
        overrides["annotations"] = args.annotations
    if args.root:
        overrides["root"] = args.root
    if args.modalities:
        overrides["modalities"] = args.modalities
    return overrides


def run_stats(args) -> int:
    from mmdistill.data.check import dataset_in_scope
    from mmdistill.data.stats import channel_stats, format_gin

    modalities = args.modalities or ["flow", "skeleton"]
    overrides = {**_overrides(args), "mode": "eval", "modalities": modalities,
                 "mean": {name: (0.0,) for name in modalities}, "std": {name: (1.0,) for name in modalities}}
    parse_gin(args.gin_file, args.gin_param)
    dataset = dataset_in_scope(args.scope, **overrides)
    stats = channel_stats(dataset, modalities, args.max_clips, args.num_workers, args.seed, progress=not args.quiet)
    print(f"# statistics of {min(args.max_clips, len(dataset))} clips (eval crop); paste into your gin file:")
    print(format_gin(stats))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: _main(argv), "python -m mmdistill.data")


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:  # every number by its flag, before any work
        check_flags(args, {"--num_workers": (0, None), "--max_clips": (1, None), "--visualize": (0, None),
                           "--max_listed": (0, None)})
    except FlagError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "check":
        return run_check(args)
    if args.command == "cache":
        return run_cache(args)
    return run_stats(args)
