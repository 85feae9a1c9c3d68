"""`python -m mmdistill.demo ROOT [--seed ...]`: write (or reuse) the demo dataset."""

from __future__ import annotations

import argparse
import time

from mmdistill.demo.actions import ACTIONS
from mmdistill.demo.cache import ensure_demo_dataset
from mmdistill.demo.writer import demo_data_params

_HELP = {
    'seed': 'all randomness comes from it',
    'num_classes': f'actions in fewshot.json (at most {len(ACTIONS)} with val classes)',
    'val_classes': 'further actions in fewshot_val.json (class-disjoint); 0 = none',
    'clips_per_class': 'labelled videos per class',
    'unlabeled_clips': 'videos in unlabeled.json',
    'num_frames': 'frames per video',
    'size': 'frame height and width',
    'jpeg_quality': 'JPEG quality of the frames',
    'max_distractors': 'most drifting shapes behind the figure',
}


def main(argv=None, prog='python -m mmdistill.demo'):
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Write (or reuse) the synthetic multi-modal demo dataset. '
                    f'Example: {prog} .cache/demo_data --seed 0')
    parser.add_argument('root', help='dataset folder (created; reused when it matches)')
    for name, default in demo_data_params().items():
        extra = dict(nargs=2, metavar=('H', 'W')) if name == 'size' else {}
        parser.add_argument('--' + name.replace('_', '-'), type=int, default=default,
                            help=f'{_HELP[name]} (default: {default})', **extra)
    args = vars(parser.parse_args(argv))
    root = args.pop('root')
    began = time.perf_counter()
    path = ensure_demo_dataset(root, **args)
    print(f'Demo dataset ready in {path} ({time.perf_counter() - began:.1f} s).')
