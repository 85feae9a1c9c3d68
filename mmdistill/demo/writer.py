"""Writing the demo dataset in the project's on-disk layout (gin: `demo_data`).

Under a root (data/layout.py has the templates):

    frames/{video}/{frame:06d}.jpg      RGB frames, files numbered from 1
    flows/{video}/pair_{frame:05d}.npy  float16 [2, H, W] flow from frame k to k+1 (dx, dy pixels)
    skeletons/{video}.pkl               MMAction2-style dict, COCO-17 keypoints in pixels
    unlabeled.json, fewshot.json (, fewshot_val.json)   tennis-style events (0-based frame index)
    source.json                         cross_domain world only: the labelled source domain
    recordings.json                     cross_domain world only: the recording of each labelled
                                        target clip, a groups file (mmdistill.data.groups)
    manifest.json                       generator version + parameters (for cache reuse)

Which videos exist, and in which split and look, is decided by `plan_videos` (from the
world's splits, worlds.py) alone; each clip has its
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
from mmdistill.demo.clip import clip_rng, recording_rng, render_clip
from mmdistill.demo.worlds import (SOURCE_CLASSES, SOURCE_FILE, TARGET_CLASSES,
                                   TARGET_VAL_CLASSES, check_cross_domain, splits, world_of,
                                   world_params)
from mmdistill.progress import progress as progress_bar

GENERATOR = 'mmdistill.demo'
# Bump whenever the rendered content changes, so cached demo data is regenerated.
GENERATOR_VERSION = 2

UNLABELED_FILE = 'unlabeled.json'
FEWSHOT_FILE = 'fewshot.json'
FEWSHOT_VAL_FILE = 'fewshot_val.json'
RECORDINGS_FILE = 'recordings.json'
MANIFEST_FILE = 'manifest.json'
FPS = 25
# Everything the generator writes at the top level of its root; only these are ever deleted.
OWNED_ENTRIES = frozenset({FRAMES_DIR, FLOWS_DIR, SKELETONS_DIR, UNLABELED_FILE, FEWSHOT_FILE,
                           FEWSHOT_VAL_FILE, SOURCE_FILE, RECORDINGS_FILE, MANIFEST_FILE})


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
    """The actions of each split of the world `params` describe."""
    return {split.name: list(split.classes) for split in splits(params)}


def plan_videos(params):
    """(split, video id, action, clip index) of every video, in writing order."""
    return [(split, f'{split.prefix}{i:05d}', split.classes[i % len(split.classes)], i)
            for split in splits(params) for i in range(split.count)]


def write_dataset(folder, params, progress=True, shown_as=None):
    """Write every video, the annotation files and, last, the manifest into `folder`."""
    folder = Path(folder)
    size = tuple(params['size'])
    began = time.perf_counter()
    annotations = {split.name: [] for split in splits(params)}
    recordings = {}  # group name -> videos, as a groups file spells them
    jobs = plan_videos(params)
    for split, video, action, index in progress_bar(jobs, desc=f'demo data -> {shown_as or folder}',
                                                    disable=not progress):
        rng = clip_rng(params['seed'], split.code, index)
        if split.look is None:
            clip = render_clip(action, rng, params['num_frames'], size, params['max_distractors'])
        else:
            # The source look ties a backdrop hue to each class (evenly spaced hues).
            cue = ((split.classes.index(action) / len(split.classes), split.cue) if split.cue
                   else None)
            recording = split.recording(index)
            shared = (None if recording is None
                      else recording_rng(params['seed'], split.code, recording))
            clip = render_clip(action, rng, params['num_frames'], size, look=split.look, cue=cue,
                               recording=shared)
            if recording is not None:
                recordings.setdefault(f'{split.name}/r{recording:02d}', []).append(video)
        write_clip(folder, video, clip, params['jpeg_quality'])
        annotations[split.name].append(_annotation(video, action, params['num_frames'], size))
    for split in splits(params):
        if split.classes or split.name != 'fewshot_val':
            _write_json(folder / split.file, annotations[split.name])
    if recordings:
        _write_json(folder / RECORDINGS_FILE, {
            'how': 'written by the demo generator (mmdistill/demo/worlds.py, Split.recording): '
                   'the clips of a recording share its backdrop and performer and hold every '
                   'action of their split',
            'groups': recordings})
    classes = split_classes(params)
    manifest = {
        'generator': GENERATOR, 'version': GENERATOR_VERSION, 'complete': True, 'params': params,
        'seconds': round(time.perf_counter() - began, 2),
        'classes': {'fewshot': classes['fewshot'], 'fewshot_val': classes['fewshot_val']},
        'counts': {k: len(v) for k, v in annotations.items()},
        'recordings': {split.name: split.recordings for split in splits(params) if split.recordings},
        'layout': {'frames': FRAME_TEMPLATE, 'flow': FLOW_TEMPLATE, 'skeleton': SKELETON_TEMPLATE,
                   'event_frame': '0-based index; index i is file number i + 1'}}
    if world_of(params) == 'cross_domain':
        manifest['classes'] = classes
        manifest['domains'] = {split.file: {'domain': 'source' if split.name == 'source'
                                            else 'target', 'look': split.look,
                                            'labelled': split.name != 'unlabeled',
                                            'classes': list(split.classes)}
                               for split in splits(params)}
    _write_json(folder / MANIFEST_FILE, manifest)


@gin.configurable('demo_data', denylist=['root'])
def generate_demo_dataset(root, seed=0, num_classes=8, val_classes=0, clips_per_class=20,
                          unlabeled_clips=160, num_frames=16, size=(64, 64), jpeg_quality=90,
                          max_distractors=3, world='single', source_classes=SOURCE_CLASSES,
                          target_classes=TARGET_CLASSES, target_val_classes=TARGET_VAL_CLASSES,
                          source_clips_per_class=30, source_look='studio', target_look='street',
                          spurious_cue=0.8, target_recordings=4, progress=True):
    """Write the demo dataset into `root` (missing or empty) and return its path.

    world 'single': `num_classes` actions go to fewshot.json and the next `val_classes` to
    fewshot_val.json (class-disjoint); unlabeled.json holds `unlabeled_clips` videos cycling over
    all of them. world 'cross_domain': source.json holds `source_clips_per_class` labelled clips
    per source action in `source_look`, whose backdrop takes its class's hue with probability
    `spurious_cue`; unlabeled.json, fewshot.json (`clips_per_class` per target action) and
    fewshot_val.json (per validation action) are the target domain, in `target_look`; each of
    the last two is cut from `target_recordings` recordings (shared backdrop and performer,
    every action in each; recordings.json), 0 for a scene per clip.
    The data appears at `root` complete or not at all (atomic.publish).
    """
    root = Path(root)
    params = normalise_params(dict(
        seed=seed, num_classes=num_classes, val_classes=val_classes,
        clips_per_class=clips_per_class, unlabeled_clips=unlabeled_clips, num_frames=num_frames,
        size=size, jpeg_quality=jpeg_quality, max_distractors=max_distractors, world=world,
        source_classes=source_classes, target_classes=target_classes,
        target_val_classes=target_val_classes, source_clips_per_class=source_clips_per_class,
        source_look=source_look, target_look=target_look, spurious_cue=spurious_cue,
        target_recordings=target_recordings))
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
    params = default_params()
    params.update({k: v for k, v in gin.get_bindings('demo_data').items() if k in params})
    unknown = set(overrides) - set(params)
    if unknown:
        raise TypeError(f'Unknown demo data parameters {sorted(unknown)}; known: {sorted(params)}.')
    params.update(overrides)
    return normalise_params(params)


def normalise_params(params):
    """JSON round trip, so parameters compare equal to those read back from a manifest; only the
    parameters of the chosen world are kept (worlds.world_params)."""
    params = dict(params)
    if 'size' in params:
        params['size'] = [int(v) for v in params['size']]
    as_json = lambda value: json.loads(json.dumps(value, sort_keys=True))
    return world_params(as_json(params), as_json(default_params()))


def default_params():
    signature = inspect.signature(generate_demo_dataset)
    return {name: p.default for name, p in signature.parameters.items()
            if name not in ('root', 'progress')}


def check_params(params):
    _check_shared(params)
    if world_of(params) == 'cross_domain':
        check_cross_domain(params)
        return
    total = params['num_classes'] + params['val_classes']
    if params['num_classes'] < 1 or params['val_classes'] < 0 or total > len(ACTIONS):
        raise ValueError(f'demo_data: num_classes ({params["num_classes"]}) + val_classes '
                         f'({params["val_classes"]}) must be between 1 and {len(ACTIONS)}, the '
                         f'number of actions the generator can draw ({", ".join(ACTIONS)}).')


def _check_shared(params):
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
