"""Writing the demo dataset in the project's on-disk layout (gin: `demo_data`).

Under a root (data/layout.py has the templates):

    frames/{video}/{frame:06d}.jpg      RGB frames, files numbered from 1
    flows/{video}/pair_{frame:05d}.npy  float16 [2, H, W] flow from frame k to k+1 (dx, dy pixels)
    skeletons/{video}.pkl               MMAction2-style dict, COCO-17 keypoints in pixels
    unlabeled.json, fewshot.json (, fewshot_val.json)   tennis-style events (0-based frame index)
    manifest.json                       generator version + parameters (for cache reuse)

Which videos exist, and in which split, is decided by `plan_videos` alone; each clip has its
own random stream (clip.clip_rng), so adding a split later leaves the existing clips unchanged.
"""

from __future__ import annotations

import inspect
import json
import pickle
import time
from pathlib import Path

import gin
import numpy as np
from PIL import Image

from mmdistill.data.layout import (FLOW_TEMPLATE, FLOWS_DIR, FRAME_TEMPLATE, FRAMES_DIR,
                                   SKELETON_TEMPLATE, SKELETONS_DIR)
from mmdistill.demo.actions import ACTIONS
from mmdistill.demo.atomic import exclusive, publish, remove_leftovers
from mmdistill.demo.clip import clip_rng, render_clip
from mmdistill.progress import progress as progress_bar

GENERATOR = 'mmdistill.demo'
# Bump whenever the rendered content changes, so cached demo data is regenerated.
GENERATOR_VERSION = 1

UNLABELED_FILE = 'unlabeled.json'
FEWSHOT_FILE = 'fewshot.json'
FEWSHOT_VAL_FILE = 'fewshot_val.json'
MANIFEST_FILE = 'manifest.json'
FPS = 25
# Everything the generator writes at the top level of its root; only these are ever deleted.
OWNED_ENTRIES = frozenset({FRAMES_DIR, FLOWS_DIR, SKELETONS_DIR, UNLABELED_FILE, FEWSHOT_FILE,
                           FEWSHOT_VAL_FILE, MANIFEST_FILE})
# split name -> (annotation file, code in each clip's random stream, video id prefix)
SPLITS = {'unlabeled': (UNLABELED_FILE, 0, 'u'), 'fewshot': (FEWSHOT_FILE, 1, 'e'),
          'fewshot_val': (FEWSHOT_VAL_FILE, 2, 'v')}


def write_clip(root, video, clip, jpeg_quality):
    num_frames, height, width = clip.frames.shape[:3]
    frame_path = root / FRAME_TEMPLATE.format(video=video, frame=1)
    frame_path.parent.mkdir(parents=True, exist_ok=True)
    for k in range(num_frames):
        Image.fromarray(clip.frames[k]).save(root / FRAME_TEMPLATE.format(video=video, frame=k + 1),
                                             quality=jpeg_quality)
    flow_path = root / FLOW_TEMPLATE.format(video=video, frame=1)
    flow_path.parent.mkdir(parents=True, exist_ok=True)
    for k in range(num_frames - 1):
        np.save(root / FLOW_TEMPLATE.format(video=video, frame=k + 1), clip.flow[k].astype(np.float16))
    skeleton_path = root / SKELETON_TEMPLATE.format(video=video)
    skeleton_path.parent.mkdir(parents=True, exist_ok=True)
    skeleton = {'keypoint': clip.keypoints[None], 'keypoint_score': clip.scores[None],
                'img_shape': (int(height), int(width)), 'original_shape': (int(height), int(width)),
                'total_frames': int(num_frames), 'frame_dir': str(video)}
    with open(skeleton_path, 'wb') as f:
        pickle.dump(skeleton, f, protocol=4)


def _annotation(video, action, num_frames, size):
    # One event per video, starting the clip at the video's first frame. Event frames are 0-based
    # indices as in the F3Set tennis files (which contain frame 0), the annotation reader's
    # default; index i is stored in the file numbered i + 1 by FRAME_TEMPLATE.
    return {'video': video, 'fps': FPS, 'height': int(size[0]), 'width': int(size[1]),
            'num_frames': int(num_frames), 'events': [{'frame': 0, 'label': action}]}


def split_classes(params):
    """The actions of each split: `num_classes` few-shot classes, then `val_classes` others."""
    names = list(ACTIONS)
    fewshot = names[:params['num_classes']]
    val = names[params['num_classes']:params['num_classes'] + params['val_classes']]
    return {'unlabeled': fewshot + val, 'fewshot': fewshot, 'fewshot_val': val}


def plan_videos(params):
    """(split, video id, action, clip index) of every video, in writing order."""
    classes = split_classes(params)
    counts = {'unlabeled': params['unlabeled_clips'],
              'fewshot': params['clips_per_class'] * len(classes['fewshot']),
              'fewshot_val': params['clips_per_class'] * len(classes['fewshot_val'])}
    return [(split, f'{SPLITS[split][2]}{i:05d}', classes[split][i % len(classes[split])], i)
            for split in SPLITS for i in range(counts[split])]


def write_dataset(folder, params, progress=True, shown_as=None):
    """Write every video, the annotation files and, last, the manifest into `folder`."""
    folder = Path(folder)
    size = tuple(params['size'])
    began = time.perf_counter()
    annotations = {split: [] for split in SPLITS}
    jobs = plan_videos(params)
    for split, video, action, index in progress_bar(jobs, desc=f'demo data -> {shown_as or folder}',
                                                    disable=not progress):
        clip = render_clip(action, clip_rng(params['seed'], SPLITS[split][1], index),
                           params['num_frames'], size, params['max_distractors'])
        write_clip(folder, video, clip, params['jpeg_quality'])
        annotations[split].append(_annotation(video, action, params['num_frames'], size))
    for split, (file_name, _, _) in SPLITS.items():
        if split != 'fewshot_val' or params['val_classes']:
            _write_json(folder / file_name, annotations[split])
    classes = split_classes(params)
    _write_json(folder / MANIFEST_FILE, {
        'generator': GENERATOR, 'version': GENERATOR_VERSION, 'complete': True, 'params': params,
        'seconds': round(time.perf_counter() - began, 2),
        'classes': {'fewshot': classes['fewshot'], 'fewshot_val': classes['fewshot_val']},
        'counts': {k: len(v) for k, v in annotations.items()},
        'layout': {'frames': FRAME_TEMPLATE, 'flow': FLOW_TEMPLATE, 'skeleton': SKELETON_TEMPLATE,
                   'event_frame': '0-based index; index i is file number i + 1'}})


@gin.configurable('demo_data', denylist=['root'])
def generate_demo_dataset(root, seed=0, num_classes=8, val_classes=0, clips_per_class=20,
                          unlabeled_clips=160, num_frames=16, size=(64, 64), jpeg_quality=90,
                          max_distractors=3, progress=True):
    """Write the demo dataset into `root` (missing or empty) and return its path.

    `num_classes` actions go to fewshot.json and the next `val_classes` to fewshot_val.json
    (class-disjoint); unlabeled.json holds `unlabeled_clips` videos cycling over all of them.
    The data appears at `root` complete or not at all (atomic.publish).
    """
    root = Path(root)
    params = normalise_params(dict(seed=seed, num_classes=num_classes, val_classes=val_classes,
                                   clips_per_class=clips_per_class,
                                   unlabeled_clips=unlabeled_clips, num_frames=num_frames,
                                   size=size, jpeg_quality=jpeg_quality,
                                   max_distractors=max_distractors))
    check_params(params)
    _refuse_non_empty(root)
    with exclusive(root):
        remove_leftovers(root, OWNED_ENTRIES)
        _refuse_non_empty(root)
        publish(root, lambda folder: write_dataset(folder, params, progress, root), OWNED_ENTRIES)
    return root


def demo_data_params(**overrides):
    """The parameters generate_demo_dataset would use: its defaults, then gin bindings of
    `demo_data`, then `overrides`. ensure_demo_dataset compares these with the cache."""
    signature = inspect.signature(generate_demo_dataset)
    params = {name: p.default for name, p in signature.parameters.items()
              if name not in ('root', 'progress')}
    params.update({k: v for k, v in gin.get_bindings('demo_data').items() if k in params})
    unknown = set(overrides) - set(params)
    if unknown:
        raise TypeError(f'Unknown demo data parameters {sorted(unknown)}; known: {sorted(params)}.')
    params.update(overrides)
    return normalise_params(params)


def normalise_params(params):
    """JSON round trip, so parameters compare equal to those read back from a manifest."""
    params = dict(params)
    params['size'] = [int(v) for v in params['size']]
    return json.loads(json.dumps(params, sort_keys=True))


def check_params(params):
    total = params['num_classes'] + params['val_classes']
    if params['num_classes'] < 1 or params['val_classes'] < 0 or total > len(ACTIONS):
        raise ValueError(f'demo_data: num_classes ({params["num_classes"]}) + val_classes '
                         f'({params["val_classes"]}) must be between 1 and {len(ACTIONS)}, the '
                         f'number of actions the generator can draw ({", ".join(ACTIONS)}).')
    if params['num_frames'] < 2:
        raise ValueError(f'demo_data.num_frames must be at least 2 (flow needs frame pairs), '
                         f'got {params["num_frames"]}.')
    if len(params['size']) != 2 or min(params['size']) < 16:
        raise ValueError(f'demo_data.size must be (height, width) with both >= 16, '
                         f'got {params["size"]}.')
    if params['clips_per_class'] < 1 or params['unlabeled_clips'] < 0:
        raise ValueError('demo_data.clips_per_class must be >= 1 and unlabeled_clips >= 0.')


def _refuse_non_empty(root):
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f'{root} is not empty; the demo generator only writes into a missing '
                              f'or empty folder. Pick another folder, or use ensure_demo_dataset() '
                              f'which reuses or refreshes its own cache.')


def _write_json(path, value):
    path.write_text(json.dumps(value, indent=1) + '\n')
