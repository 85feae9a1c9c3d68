"""`python -m mmdistill.prepare <step> ...`: turn raw videos into the data the readers take."""
from __future__ import annotations

import argparse
import sys

from . import annotations, flow, frames, hand_pose, skeleton, source_split
from mmdistill.checks import FlagError, check_flags

from .common import PrepareError, Report

STEPS = {
    "frames": (frames, "decode videos into JPEG frame folders"),
    "flow": (flow, "dense optical flow between consecutive frames (OpenCV)"),
    "skeleton": (skeleton, "2-D human keypoints per frame (optional MediaPipe)"),
    "hand-pose": (hand_pose, "21-joint hand heatmaps per frame, MM-CDFSL's format (optional MediaPipe)"),
    "annotations": (annotations, "unlabeled and labelled clip lists from class folders"),
    "source-split": (source_split, "labelled-source, target, validation and test lists by class and clip"),
}

ORDER = """steps, in order:
  frames       videos -> DATA/frames/<video>/000001.jpg ...
  flow         frames -> DATA/flows/<video>/pair_00001.npy ... (or DATA/flows/<video>.npy)
  skeleton     frames -> DATA/skeletons/<video>.pkl
  hand-pose    frames -> DATA/hand-pose/heatmap/<video>/000001.npy ... (MM-CDFSL's pose input)
  annotations  videos -> unlabeled.json and labelled list(s)
  source-split videos -> source.json, unlabeled.json, val.json, test.json (labelled-source runs)
Each step skips finished videos on rerun, refuses to replace other output without --overwrite,
and ends with a report (done, skipped, failed with reasons). `<step> --help` has an example."""


# Numbers every step checks by their flags before any work (exit 2).
FLAG_RANGES = {"--workers": (1, None), "--short-side": (1, None), "--jpeg-quality": (1, 100),
               "--bound": (1e-6, None), "--min-detection-confidence": (0.0, 1.0),
               "--min-tracking-confidence": (0.0, 1.0), "--sigma": (1e-6, None), "--size": (1, None),
               "--stride": (1, None), "--max-num-hands": (1, None)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mmdistill.prepare", description=__doc__,
                                     epilog=ORDER, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True, metavar="step")
    for name, (module, summary) in STEPS.items():
        sub = steps.add_parser(name, help=summary, description=module.__doc__, epilog=module.EXAMPLE,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 all done, 1 some videos failed, 2 bad request (nothing was touched)."""
    args = build_parser().parse_args(argv)
    try:
        check_flags(args, FLAG_RANGES)
        report: Report = args.main(args)
    except (PrepareError, FlagError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    from mmdistill.commands.session import run_command  # SIGTERM and Ctrl-C: interrupted, exit 130

    sys.exit(run_command(main, "python -m mmdistill.prepare"))
