"""Data tools: `python -m mmdistill.data check|stats|cache --gin_file FILE [...]`."""
from __future__ import annotations

import argparse
import logging
import sys

EXAMPLES = """examples (the shipped gin files bind the training clips in scope unlabeled and the
evaluation clips in scope fewshot_data):
  python -m mmdistill.data check --gin_file gin/demo/distill.gin --scope unlabeled
  python -m mmdistill.data check --gin_file gin/tennis.gin --scope fewshot_data --visualize 4
  python -m mmdistill.data check --annotations data/fewshot.json --modalities rgb --visualize 4
  python -m mmdistill.data stats --gin_file gin/tennis.gin --scope unlabeled --max_clips 300
  python -m mmdistill.data cache --gin_file gin/tennis.gin --scope unlabeled --cache_dir .cache/clips
"""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gin_file", action="append", default=[], help="gin file describing the dataset (repeatable)")
    parser.add_argument("--gin_param", action="append", default=[], help="extra gin binding (repeatable)")
    parser.add_argument("--scope", default=None,
                        help="gin scope of the dataset: unlabeled or fewshot_data in the shipped files")
    parser.add_argument("--annotations", default=None, help="annotation file or class folder (overrides gin)")
    parser.add_argument("--root", default=None, help="data root (overrides gin)")
    parser.add_argument("--modalities", nargs="+", default=None, help="modalities to read (overrides gin)")
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
    check.add_argument("--max_listed", type=int, default=20, help="classes/problems listed at most")
    check.add_argument("--group_by", choices=("video", "video_folder"), default=None,
                       help="report groups (recordings) per class, a clip's group being its video "
                            "or the video's folder (as fewshot.group_by)")
    check.add_argument("--groups_file", default=None,
                       help="report groups per class from a groups file (as fewshot.groups_file)")
    stats = commands.add_parser("stats", help="per-channel mean/std of flow and skeleton inputs, as gin lines",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(stats)
    stats.add_argument("--max_clips", type=int, default=200)
    stats.add_argument("--num_workers", type=int, default=0)
    cache = commands.add_parser("cache", help="fill the decoded-clip cache (clip_data.cache_dir) ahead of training",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(cache)
    cache.add_argument("--cache_dir", default=None, help="cache folder (overrides clip_data.cache_dir)")
    cache.add_argument("--num_workers", type=int, default=0, help="processes decoding videos in parallel")
    return parser


def run_cache(args) -> int:
    from mmdistill.data.check import _overrides, dataset_in_scope, parse_gin
    from mmdistill.data.clip_cache import fill_cache

    overrides = _overrides(args)
    if args.cache_dir:
        overrides["cache_dir"] = args.cache_dir
    parse_gin(args.gin_file, args.gin_param)
    dataset = dataset_in_scope(args.scope, **overrides)
    if dataset.cache is None:
        raise SystemExit("no cache folder: set clip_data.cache_dir (in the gin file, or "
                         f"--gin_param \"{args.scope + '/' if args.scope else ''}clip_data.cache_dir='PATH'\") "
                         "or pass --cache_dir")
    failed = fill_cache(dataset, args.num_workers, progress=not args.quiet)
    videos = len({clip.video for clip in dataset.clips})
    print(f"clip cache {dataset.cache.folder}: {videos - len(failed)} of {videos} videos cached")
    for video, error in failed[:20]:
        print(f"  failed: {video}: {error}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "check":
        from mmdistill.data.check import run_check
        return run_check(args)
    if args.command == "cache":
        return run_cache(args)
    from mmdistill.data.stats import run_stats
    return run_stats(args)


if __name__ == "__main__":
    sys.exit(main())
