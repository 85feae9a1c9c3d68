"""The cross-domain demo world: determinism and readable files per domain, class-disjoint splits
read back from the written files, the class-tied source tint, and the single world unchanged."""
import colorsys
import json

import gin
import numpy as np
import pytest

from data_factories import content_digest, whole_clip_bindings
from mmdistill.demo.cli import main as demo_main
from mmdistill.demo.clip import render_clip
from mmdistill.demo.writer import demo_data_params, generate_demo_dataset

DOMAIN_FILES = ('source.json', 'unlabeled.json', 'fewshot.json', 'fewshot_val.json')
SMALL = dict(world='cross_domain', source_classes=['wave', 'squat'],
             target_classes=['clap', 'kick'], target_val_classes=['bow'],
             source_clips_per_class=2, clips_per_class=2, unlabeled_clips=3, num_frames=4,
             size=(32, 32))


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp('world') / 'data', progress=False,
                                 **SMALL)


def _entries(root, name):
    return json.loads((root / name).read_text())


def _labels(root, name):
    return {e['events'][0]['label'] for e in _entries(root, name)}


def _domain_digest(root, name):
    """The annotation file and every frame, flow and skeleton file of its videos."""
    paths = [root / name]
    for entry in _entries(root, name):
        video = entry['video']
        paths += list((root / 'frames' / video).iterdir()) + list((root / 'flows' / video).iterdir())
        paths.append(root / 'skeletons' / f'{video}.pkl')
    return content_digest(root, paths)


def test_each_domain_is_deterministic_and_seed_dependent(world, tmp_path):
    again = generate_demo_dataset(tmp_path / 'again', progress=False, **SMALL)
    other = generate_demo_dataset(tmp_path / 'other', progress=False, **dict(SMALL, seed=1))
    for name in DOMAIN_FILES:
        assert _domain_digest(world, name) == _domain_digest(again, name), name
        assert _domain_digest(world, name) != _domain_digest(other, name), name


def test_every_file_of_every_domain_reads_with_the_project_readers(world):
    from mmdistill.data.annotations import read_annotations
    from mmdistill.data.dataset import build_clip_dataset

    height, width = SMALL['size']
    frames = SMALL['num_frames']
    gin.parse_config(whole_clip_bindings(SMALL['size'], frames))
    expected = {'source.json': 2 * 2, 'unlabeled.json': 3, 'fewshot.json': 2 * 2,
                'fewshot_val.json': 1 * 2}
    for name, count in expected.items():
        labelled = name != 'unlabeled.json'
        clips = read_annotations(world / name, require_labels=labelled)
        assert len(clips) == count, name
        dataset = build_clip_dataset(world / name, mode='eval', labeled=labelled)
        assert len(dataset) == count
        for i in range(len(dataset)):
            item = dataset[i]
            assert item['rgb'].shape == (3, frames, height, width), name
            assert item['flow'].shape == (2, frames, height, width), name
            assert item['skeleton'].shape == (17, frames, height, width), name
            assert all(bool(item[m].isfinite().all()) for m in ('rgb', 'flow', 'skeleton'))
        if labelled:
            assert dataset.class_names == sorted(_labels(world, name))


def test_source_target_and_validation_classes_are_disjoint_in_the_written_files(world):
    source, target = _labels(world, 'source.json'), _labels(world, 'fewshot.json')
    val, pool = _labels(world, 'fewshot_val.json'), _labels(world, 'unlabeled.json')
    assert source == set(SMALL['source_classes']) and target == set(SMALL['target_classes'])
    assert val == set(SMALL['target_val_classes'])
    assert not source & target and not source & val and not target & val
    assert pool <= target | val and not pool & source  # the pool is target-domain only
    manifest = json.loads((world / 'manifest.json').read_text())
    assert manifest['classes']['source'] == SMALL['source_classes']
    assert manifest['classes']['fewshot'] == SMALL['target_classes']
    assert manifest['classes']['fewshot_val'] == SMALL['target_val_classes']
    domains = manifest['domains']
    assert domains['source.json']['domain'] == 'source'
    assert {domains[n]['domain'] for n in DOMAIN_FILES[1:]} == {'target'}
    assert domains['source.json']['look'] != domains['fewshot.json']['look']
    assert manifest['params'] == demo_data_params(**SMALL)
    # Video ids of different splits never collide.
    videos = [e['video'] for name in DOMAIN_FILES for e in _entries(world, name)]
    assert len(videos) == len(set(videos))


def _corner_hue(clip):
    r, g, b = clip.frames[:, :3, :3].reshape(-1, 3).mean(0) / 255
    return colorsys.rgb_to_hsv(r, g, b)[0]


def test_the_source_backdrop_takes_the_class_hue_only_as_often_as_the_cue_says():
    hue = 0.6
    tied = [_corner_hue(render_clip('wave', np.random.default_rng(i), 4, (32, 32),
                                    look='studio', cue=(hue, 1.0))) for i in range(6)]
    untied = [_corner_hue(render_clip('wave', np.random.default_rng(i), 4, (32, 32),
                                      look='studio', cue=(hue, 0.0))) for i in range(6)]
    assert np.allclose(tied, hue, atol=0.03)
    assert np.mean(np.abs(np.asarray(untied) - hue) > 0.05) > 0.5


def test_looks_change_appearance_but_not_motion_or_pose():
    """Same action and stream, two looks: frames differ, keypoints follow the same motion."""
    studio = render_clip('squat', np.random.default_rng(3), 6, (48, 48), look='studio')
    street = render_clip('squat', np.random.default_rng(3), 6, (48, 48), look='street')
    assert np.abs(studio.frames.astype(float) - street.frames).mean() > 40
    relative = lambda c: c.keypoints - c.keypoints[:, 11:13].mean(1, keepdims=True)
    assert np.allclose(relative(studio) / np.ptp(studio.keypoints[..., 1]),
                       relative(street) / np.ptp(street.keypoints[..., 1]), atol=1e-4)


# A small single-world dataset written by generator version 1 before the cross-domain world
# existed: its decoded contents must not change (the demo's default data stays the same).
DEFAULT_SMALL = dict(num_classes=3, val_classes=1, clips_per_class=2, unlabeled_clips=3,
                     num_frames=5, size=(32, 40))
DEFAULT_SMALL_DIGEST = '3ef5dbf5651847cf02c51e35320e231a25c979a1c803c61dea9efb8d99168aed'


def test_the_single_world_is_unchanged(tmp_path):
    root = generate_demo_dataset(tmp_path / 'single', progress=False, **DEFAULT_SMALL)
    files = [p for p in root.rglob('*') if p.is_file()]
    assert content_digest(root, files) == DEFAULT_SMALL_DIGEST
    assert not (root / 'source.json').exists()
    # Its manifest keeps the historical parameter set, so existing caches are reused.
    params = json.loads((root / 'manifest.json').read_text())['params']
    assert sorted(params) == ['clips_per_class', 'jpeg_quality', 'max_distractors', 'num_classes',
                              'num_frames', 'seed', 'size', 'unlabeled_clips', 'val_classes']


@pytest.mark.parametrize('bad, message', [
    (dict(SMALL, target_classes=['clap', 'wave']), 'source_classes and demo_data.target_classes'),
    (dict(SMALL, target_val_classes=['clap']), 'target_classes and demo_data.target_val'),
    (dict(SMALL, source_classes=['wave', 'fly']), "unknown actions \\['fly'\\]"),
    (dict(SMALL, target_look='moon'), 'target_look'),
    (dict(SMALL, spurious_cue=1.5), 'spurious_cue'),
    (dict(SMALL, num_classes=3), "only apply to world='single'"),
    (dict(source_look='street'), "only apply to world='cross_domain'"),
    (dict(SMALL, world='multi'), 'world must be one of'),
])
def test_bad_world_parameters_are_named(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        generate_demo_dataset(tmp_path / 'd', progress=False, **bad)
    assert not (tmp_path / 'd').exists()


def test_command_line_writes_the_cross_domain_world(tmp_path, capsys):
    root = tmp_path / 'cli'
    demo_main([str(root), '--world', 'cross_domain', '--source-classes', 'wave',
               '--target-classes', 'clap', 'kick', '--target-val-classes',
               '--source-clips-per-class', '1', '--clips-per-class', '1', '--unlabeled-clips',
               '2', '--num-frames', '2', '--size', '16', '16'])
    assert 'Demo dataset ready' in capsys.readouterr().out
    assert _labels(root, 'source.json') == {'wave'}
    assert _labels(root, 'fewshot.json') == {'clap', 'kick'}
    assert not (root / 'fewshot_val.json').exists()  # no validation classes asked for


def test_gin_selects_the_cross_domain_world():
    gin.parse_config("demo_data.world = 'cross_domain'\ndemo_data.source_clips_per_class = 7")
    params = demo_data_params()
    assert params['world'] == 'cross_domain' and params['source_clips_per_class'] == 7
    assert 'num_classes' not in params


def test_target_clips_are_cut_from_recordings_that_share_backdrop_and_performer(tmp_path):
    """recordings.json gives every labelled target clip one recording holding every action of its
    file; clips of one recording look alike (same backdrop and clothes), clips of two do not; the
    source and unlabelled clips do not depend on the recordings at all."""
    from PIL import Image
    params = dict(SMALL, clips_per_class=6, target_recordings=3, size=(48, 48), num_frames=6)
    root = generate_demo_dataset(tmp_path / 'rec', progress=False, **params)
    groups = json.loads((root / 'recordings.json').read_text())['groups']
    assert sorted(groups) == ['fewshot/r00', 'fewshot/r01', 'fewshot/r02',
                              'fewshot_val/r00', 'fewshot_val/r01', 'fewshot_val/r02']
    labels = {e['video']: e['events'][0]['label'] for name in ('fewshot.json', 'fewshot_val.json')
              for e in _entries(root, name)}
    assert sorted(v for videos in groups.values() for v in videos) == sorted(labels)
    for name, videos in groups.items():
        per_action = [labels[v] for v in videos]
        actions = SMALL['target_classes'] if name.startswith('fewshot/') else SMALL['target_val_classes']
        assert sorted(set(per_action)) == sorted(actions)
        assert all(per_action.count(a) == 2 for a in actions)  # 6 clips per action / 3 recordings

    def still(video):  # the median frame: the backdrop where the figure moves
        frames = [np.asarray(Image.open(path), np.float32)
                  for path in sorted((root / 'frames' / video).iterdir())]
        return np.median(np.stack(frames), axis=0)

    def distance(a, b):
        return float(np.abs(still(a) - still(b)).mean())

    within = [distance(v[0], v[1]) for v in groups.values()]
    between = [distance(groups['fewshot/r00'][0], groups[f'fewshot/r0{r}'][0]) for r in (1, 2)]
    assert max(within) < min(between)
    plain = generate_demo_dataset(tmp_path / 'plain', progress=False,
                                  **dict(params, target_recordings=0))
    assert not (plain / 'recordings.json').exists()
    for name in ('source.json', 'unlabeled.json'):
        assert _domain_digest(root, name) == _domain_digest(plain, name)
    assert _domain_digest(root, 'fewshot.json') != _domain_digest(plain, 'fewshot.json')
