"""`python -m mmdistill.demo ROOT [--seed ...]`: write (or reuse) the demo dataset."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from mmdistill.demo.actions import ACTIONS
from mmdistill.demo.cache import ensure_demo_dataset
from mmdistill.demo.looks import LOOKS
from mmdistill.demo.worlds import WORLDS
from mmdistill.demo.writer import check_params, default_params, demo_data_params

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
    'world': f'which demo world ({", ".join(WORLDS)})',
    'source_classes': 'cross_domain: actions of the labelled source domain (source.json)',
    'target_classes': 'cross_domain: target actions in fewshot.json',
    'target_val_classes': 'cross_domain: target actions in fewshot_val.json',
    'source_clips_per_class': 'cross_domain: labelled source videos per class',
    'source_look': f'cross_domain: look of the source domain ({", ".join(LOOKS)})',
    'target_look': f'cross_domain: look of the target domain ({", ".join(LOOKS)})',
    'spurious_cue': 'cross_domain: probability that a source backdrop takes its class hue',
    'target_recordings': 'cross_domain: recordings each labelled target split is cut from '
                         '(shared backdrop and performer; 0: a scene per clip)',
}


def main(argv=None, prog='python -m mmdistill.demo'):
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Write (or reuse) the synthetic multi-modal demo dataset. '
                    f'Example: {prog} .cache/demo_data --seed 0')
    parser.add_argument('root', help='dataset folder (created; reused when it matches)')
    defaults = json.loads(json.dumps(default_params()))
    for name, default in defaults.items():
        if name == 'size':
            extra = dict(nargs=2, metavar=('H', 'W'), type=int)
        elif isinstance(default, list):
            extra = dict(nargs='*')
        else:
            extra = dict(type=type(default))
        shown = ' '.join(default) if isinstance(default, list) and name != 'size' else default
        # Unset options stay None and are not passed: each world checks only its own.
        parser.add_argument('--' + name.replace('_', '-'), default=None,
                            help=f'{_HELP[name]} (default: {shown})', **extra)
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    root = args.pop('root')
    try:  # every parameter by its flag, before anything is written
        check_params(demo_data_params(**args))
    except ValueError as err:
        print(f'error: {_as_flags(str(err))}', file=sys.stderr)
        return 2
    began = time.perf_counter()
    path = ensure_demo_dataset(root, **args)
    print(f'Demo dataset ready in {path} ({time.perf_counter() - began:.1f} s).')


def _as_flags(message):
    """A parameter check's message with `demo_data.clips_per_class` written as this command's
    flag, `--clips-per-class` (`demo_data: name (...)` too)."""
    message = re.sub(r'demo_data\.(\w+)', lambda m: '--' + m.group(1).replace('_', '-'), message)
    return re.sub(r'demo_data: (\w+)', lambda m: '--' + m.group(1).replace('_', '-'), message)
