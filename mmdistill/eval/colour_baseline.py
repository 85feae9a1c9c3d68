"""The appearance baseline straight from a folder of videos, standard and group-disjoint:

  python -m mmdistill.eval.colour_baseline --clips ../shared/data/tennis_strokes \\
      --classes forehand,backhand,b_slice,f_volley,b_volley --numbers 21-40 \\
      --groups_file data/tennis_strokes_groups.json --queries 5

Each clip becomes the square-rooted mean RGB histogram (6^3 bins) of every 10th frame of the
whole video at 48x27 (the recipe of the review in issue 26; `scene_groups.scene_feature`),
classified by the nearest class mean on seeded N-way K-shot episodes (`mmdistill.eval.fewshot`),
once standard and once with support and queries of a class from different groups. No network,
no preparation: it says how far scene colour alone goes on a slice of clips, and how much of
that a shared recording gives. The evaluate stage's own baseline (`mmdistill.eval.appearance`)
works on the evaluation clips the networks see.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mmdistill.data.annotations import read_class_folders
from mmdistill.eval.appearance import CLASSIFIER
from mmdistill.eval.features import POOLED, FeatureBank
from mmdistill.eval.fewshot import evaluate
from mmdistill.data.groups import clip_groups
from mmdistill.eval.scene_groups import read_frames, scene_feature


def _numbers(text: str) -> set[int]:
    low, _, high = text.partition("-")
    return set(range(int(low), int(high or low) + 1))


def clip_number(video: str) -> int:
    digits = "".join(ch for ch in video.rsplit("/", 1)[-1] if ch.isdigit())
    if not digits:
        raise ValueError(f"{video}: --numbers needs clip files numbered like forehand21")
    return int(digits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmdistill.eval.colour_baseline",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", required=True, help="folder per class of video files")
    parser.add_argument("--classes", default=None, help="comma-separated classes (default all)")
    parser.add_argument("--numbers", default=None, help="clip numbers to use, e.g. 21-40")
    parser.add_argument("--groups_file", default=None, help="groups file: also group-disjoint")
    parser.add_argument("--way", type=int, default=5)
    parser.add_argument("--shot", type=int, action="append", help="default: 1 and 5")
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the report here too")
    args = parser.parse_args(argv)
    clips = read_class_folders(args.clips)
    if args.classes:
        wanted = args.classes.split(",")
        clips = [c for c in clips if c.label in wanted]
    if args.numbers:
        keep = _numbers(args.numbers)
        clips = [c for c in clips if clip_number(c.video) in keep]
    names = sorted({c.label for c in clips})
    root = Path(args.clips)
    features = torch.tensor(np.stack([
        scene_feature(read_frames(next(root.glob(f"{c.video}.*")), 10)) for c in clips]),
        dtype=torch.float32)
    labels = torch.tensor([names.index(c.label) for c in clips])
    bank = FeatureBank(labels, names, {POOLED: features}, torch.arange(len(clips)))
    groups = (clip_groups([c.video for c in clips], groups_file=args.groups_file)
              if args.groups_file else None)
    settings = [(args.way, k, args.queries, args.episodes) for k in (args.shot or [1, 5])]
    report = evaluate(bank, settings, CLASSIFIER, seed=args.seed, groups=groups)
    print(f"colour histogram on {args.clips} ({len(clips)} clips"
          + (f", numbers {args.numbers}" if args.numbers else "") + ")")
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
