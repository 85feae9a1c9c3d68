"""Derive recordings (groups) of clips cut from unlabelled recordings, by scene, for review by eye:

  python -m mmdistill.eval.scene_groups --clips ../shared/data/tennis_strokes \\
      --out data/tennis_strokes_groups.json --montages groups_review/

Within each class folder, clips in natural order (`forehand2` before `forehand10`):
1. each clip becomes the square-rooted mean RGB histogram (`--bins`^3 cells) of every `--step`th
   frame shrunk to `--size` (the appearance baseline's features, `mmdistill.eval.appearance`);
2. the prior: consecutive clips usually come from one recording, so the sequence is cut into runs
   where neighbours differ by more than `--cut` (Euclidean distance of the features, 0..sqrt(2));
3. runs are merged by average-linkage clustering while the closest two are within `--merge`
   (a recording may come back later in the folder).
Groups are per class (`<class>/r01`, ...): the sampler only separates support and queries of one
class, which is where a shared recording gives the answer away.

It writes the groups file (with the command that made it under "how") and, with `--montages`, one
PNG per class: a row per group, a thumbnail per clip with its number, to check by eye. Correct the
file by hand where the pictures disagree, and say so in its "how" note; `--draw GROUPS_FILE`
draws the montages of a (corrected) groups file without clustering again.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from mmdistill.data.annotations import read_class_folders

THUMB = (96, 54)


def read_frames(path: Path, step: int) -> list[np.ndarray]:
    """Every `step`th frame of a video as RGB uint8 (H, W, 3)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames, index = [], 0
    while capture.grab():
        if index % step == 0:
            ok, frame = capture.retrieve()
            if ok:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        index += 1
    capture.release()
    if not frames:
        raise ValueError(f"{path}: no frames could be read; is it a video file?")
    return frames


def scene_feature(frames: Sequence[np.ndarray], bins: int = 6,
                  size: Sequence[int] = (48, 27)) -> np.ndarray:
    """Square root of the mean joint RGB histogram of the frames, each shrunk to `size` (W, H)."""
    histogram = np.zeros(bins ** 3)
    for frame in frames:
        small = np.asarray(Image.fromarray(frame).resize(tuple(size), Image.BILINEAR), dtype=np.int64)
        cell = small * bins // 256
        code = (cell[..., 0] * bins + cell[..., 1]) * bins + cell[..., 2]
        histogram += np.bincount(code.reshape(-1), minlength=bins ** 3) / code.size
    return np.sqrt(histogram / len(frames))


def cluster(features: np.ndarray, cut: float, merge: float) -> list[list[int]]:
    """Runs of neighbours closer than `cut`, merged by average linkage while within `merge`."""
    runs = [[0]]
    for i in range(1, len(features)):
        if np.linalg.norm(features[i] - features[i - 1]) > cut:
            runs.append([])
        runs[-1].append(i)
    distance = np.linalg.norm(features[:, None] - features[None], axis=-1)
    while len(runs) > 1:
        best, pair = None, None
        for a in range(len(runs)):
            for b in range(a + 1, len(runs)):
                d = distance[np.ix_(runs[a], runs[b])].mean()
                if best is None or d < best:
                    best, pair = d, (a, b)
        if best > merge:
            break
        a, b = pair
        runs[a] = sorted(runs[a] + runs.pop(b))
    return sorted(runs, key=lambda run: run[0])


def derive_groups(root: Path, step: int, bins: int, size: Sequence[int], cut: float,
                  merge: float) -> tuple[dict[str, list[str]], dict[str, list[list[str]]]]:
    """(group -> videos, class -> groups as video lists) for a folder-per-class root."""
    by_class: dict[str, list[str]] = {}
    for clip in read_class_folders(root):
        by_class.setdefault(clip.label, []).append(clip.video)
    groups, per_class = {}, {}
    for label, videos in by_class.items():
        paths = [next(root.glob(f"{video}.*")) for video in videos]
        features = np.stack([scene_feature(read_frames(p, step), bins, size) for p in paths])
        runs = cluster(features, cut, merge)
        per_class[label] = [[videos[i] for i in run] for run in runs]
        for n, members in enumerate(per_class[label], start=1):
            groups[f"{label}/r{n:02d}"] = members
        print(f"{label}: {len(videos)} clips -> {len(runs)} groups: "
              + "; ".join(",".join(v.rsplit("/", 1)[-1].removeprefix(label) for v in g)
                          for g in per_class[label]), flush=True)
    return groups, per_class


def write_montage(root: Path, label: str, groups: list[list[str]], path: Path) -> None:
    """A row per group, one thumbnail (the middle read frame) per clip, with its name."""
    columns = max(len(g) for g in groups)
    width, height = THUMB
    canvas = Image.new("RGB", (60 + columns * width, len(groups) * (height + 12)), "white")
    draw = ImageDraw.Draw(canvas)
    for row, videos in enumerate(groups):
        top = row * (height + 12)
        draw.text((2, top + height // 2), f"r{row + 1:02d}", fill="black")
        for col, video in enumerate(videos):
            frames = read_frames(next(root.glob(f"{video}.*")), 10)
            thumb = Image.fromarray(frames[len(frames) // 2]).resize(THUMB, Image.BILINEAR)
            canvas.paste(thumb, (60 + col * width, top))
            draw.text((60 + col * width + 2, top + height), video.rsplit("/", 1)[-1], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmdistill.eval.scene_groups",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", required=True, help="folder per class of video files")
    parser.add_argument("--out", default=None, help="groups file to write (JSON)")
    parser.add_argument("--draw", default=None, metavar="GROUPS_FILE",
                        help="only draw the --montages of this groups file (after corrections)")
    parser.add_argument("--montages", default=None, help="folder for one review PNG per class")
    parser.add_argument("--step", type=int, default=10, help="every step-th frame")
    parser.add_argument("--bins", type=int, default=6, help="histogram bins per channel")
    parser.add_argument("--size", type=int, nargs=2, default=(48, 27), metavar=("W", "H"))
    parser.add_argument("--cut", type=float, default=0.6,
                        help="neighbours farther apart than this start a new run")
    parser.add_argument("--merge", type=float, default=0.55,
                        help="runs closer than this (average linkage) are merged")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    root = Path(args.clips)
    if args.draw:
        if not args.montages:
            parser.error("--draw needs --montages (where to write the pictures)")
        per_class: dict[str, list[list[str]]] = {}
        for group, videos in json.loads(Path(args.draw).read_text())["groups"].items():
            per_class.setdefault(group.split("/")[0], []).append(videos)
        for label, class_groups in per_class.items():
            write_montage(root, label, class_groups, Path(args.montages) / f"{label}.png")
        print(f"review pictures: {args.montages}/<class>.png (a row per group)")
        return 0
    if args.out is None:
        parser.error("--out is required (or --draw GROUPS_FILE with --montages)")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f"{out} exists (it may hold corrections by hand); pass --overwrite to replace it",
              file=sys.stderr)
        return 2
    groups, per_class = derive_groups(root, args.step, args.bins, args.size, args.cut, args.merge)
    command = "python -m mmdistill.eval.scene_groups " + " ".join(argv if argv is not None
                                                                  else sys.argv[1:])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"how": f"made by: {command}", "groups": groups}, indent=1) + "\n")
    print(f"wrote {len(groups)} groups to {out}")
    if args.montages:
        for label, class_groups in per_class.items():
            write_montage(root, label, class_groups, Path(args.montages) / f"{label}.png")
        print(f"review pictures: {args.montages}/<class>.png (a row per group)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
