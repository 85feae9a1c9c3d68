"""The demo data generator: real on-disk formats, consistent modalities, determinism, caching."""
import json
import os
import pickle

import cv2
import gin
import numpy as np
import pytest
from PIL import Image

from data_factories import content_digest, whole_clip_bindings
from mmdistill.demo.actions import ACTIONS
from mmdistill.demo.cache import ensure_demo_dataset
from mmdistill.demo.clip import render_clip
from mmdistill.demo.figure import COCO17_JOINTS
from mmdistill.demo.writer import demo_data_params, generate_demo_dataset
from mmdistill.demo.appearance import Layers
from mmdistill.demo.cli import main as demo_main
from mmdistill.demo.raster import render

TINY = dict(num_classes=2, val_classes=1, clips_per_class=2, unlabeled_clips=3, num_frames=6,
            size=(40, 56), max_distractors=2)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp('demo') / 'data', progress=False, **TINY)


def _videos(root, name):
    return json.loads((root / name).read_text())


def test_writes_every_format_with_the_documented_shapes(tiny):
    height, width = TINY['size']
    frames = TINY['num_frames']
    splits = {name: _videos(tiny, name) for name in ('unlabeled.json', 'fewshot.json',
                                                     'fewshot_val.json')}
    assert [len(v) for v in splits.values()] == [3, 2 * 2, 1 * 2]
    for entries in splits.values():
        for entry in entries:
            assert entry['height'] == height and entry['width'] == width
            assert entry['num_frames'] == frames and entry['fps'] == 25
            assert entry['events'] == [{'frame': 0, 'label': entry['events'][0]['label']}]
            video = entry['video']
            jpegs = sorted((tiny / 'frames' / video).iterdir())
            assert [p.name for p in jpegs] == [f'{k:06d}.jpg' for k in range(1, frames + 1)]
            with Image.open(jpegs[0]) as image:
                assert image.format == 'JPEG' and image.size == (width, height)
                assert image.mode == 'RGB'
            flows = sorted((tiny / 'flows' / video).iterdir())
            assert [p.name for p in flows] == [f'pair_{k:05d}.npy' for k in range(1, frames)]
            flow = np.load(flows[0])
            assert flow.dtype == np.float16 and flow.shape == (2, height, width)
            with open(tiny / 'skeletons' / f'{video}.pkl', 'rb') as f:
                skeleton = pickle.load(f)
            assert skeleton['keypoint'].dtype == np.float32
            assert skeleton['keypoint'].shape == (1, frames, 17, 2)
            assert skeleton['keypoint_score'].dtype == np.float32
            assert skeleton['keypoint_score'].shape == (1, frames, 17)
            assert skeleton['img_shape'] == (height, width) and skeleton['total_frames'] == frames
    fewshot = {e['events'][0]['label'] for e in splits['fewshot.json']}
    val = {e['events'][0]['label'] for e in splits['fewshot_val.json']}
    assert fewshot == set(list(ACTIONS)[:2]) and val == {list(ACTIONS)[2]}
    manifest = json.loads((tiny / 'manifest.json').read_text())
    assert manifest['complete'] and manifest['params'] == demo_data_params(**TINY)


def test_skeleton_pickles_hold_plain_data_only(tiny):
    class PlainOnly(pickle.Unpickler):
        def find_class(self, module, name):
            if module.split('.')[0] in ('numpy', 'builtins', '_codecs'):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f'{module}.{name}')

    for path in (tiny / 'skeletons').iterdir():
        with open(path, 'rb') as f:
            data = PlainOnly(f).load()
        assert type(data) is dict and set(data) >= {'keypoint', 'keypoint_score', 'img_shape',
                                                    'total_frames'}


def test_flow_moves_joints_to_their_next_keypoints(tiny):
    """Sampled at a moving elbow, wrist, knee or ankle, the stored flow is the keypoint's motion."""
    errors, motions = [], []
    ends = [COCO17_JOINTS.index(j) for j in ('l_elbow', 'r_elbow', 'l_wrist', 'r_wrist',
                                             'l_knee', 'r_knee', 'l_ankle', 'r_ankle')]
    for entry in _videos(tiny, 'fewshot.json') + _videos(tiny, 'unlabeled.json'):
        video = entry['video']
        with open(tiny / 'skeletons' / f'{video}.pkl', 'rb') as f:
            keypoints = pickle.load(f)['keypoint'][0]
        for k in range(entry['num_frames'] - 1):
            flow = np.load(tiny / 'flows' / video / f'pair_{k + 1:05d}.npy').astype(np.float32)
            for j in ends:
                x, y = np.rint(keypoints[k, j]).astype(int)
                motion = keypoints[k + 1, j] - keypoints[k, j]
                if 0 <= x < flow.shape[2] and 0 <= y < flow.shape[1] and np.hypot(*motion) > 1:
                    errors.append(np.hypot(*(flow[:, y, x] - motion)))
                    motions.append(np.hypot(*motion))
    assert len(errors) > 20
    # Occluded joints disagree; most do not, to well under the motion itself.
    assert np.median(errors) < 0.35 * np.median(motions)
    assert np.median(errors) < 1.0


def test_flow_warps_each_frame_onto_the_next(tiny):
    """Decoded frame k+1 sampled at p + flow(p) reproduces frame k where things move; far
    better than no flow, and a flow of the wrong sign is far worse."""
    errors = {'flow': [], 'no flow': [], 'negated flow': []}
    entries = sum((_videos(tiny, n) for n in ('unlabeled.json', 'fewshot.json',
                                              'fewshot_val.json')), [])
    for entry in entries:
        video = entry['video']
        frames = [np.asarray(Image.open(tiny / 'frames' / video / f'{k:06d}.jpg'), np.float32)
                  for k in range(1, entry['num_frames'] + 1)]
        ys, xs = np.mgrid[0:entry['height'], 0:entry['width']].astype(np.float32)
        for k in range(entry['num_frames'] - 1):
            flow = np.load(tiny / 'flows' / video / f'pair_{k + 1:05d}.npy').astype(np.float32)
            moving = cv2.erode((np.hypot(flow[0], flow[1]) > 0.5).astype(np.uint8),
                               np.ones((3, 3), np.uint8)).astype(bool)
            for name, (dx, dy) in (('flow', flow), ('no flow', 0 * flow),
                                   ('negated flow', -flow)):
                warped = cv2.remap(frames[k + 1], xs + dx, ys + dy, cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
                errors[name].append(np.abs(warped - frames[k])[moving])
    mean = {name: np.concatenate(e).mean() for name, e in errors.items()}
    assert np.concatenate(errors['flow']).size > 1000
    assert mean['flow'] < 0.6 * mean['no flow']
    assert mean['flow'] < 0.4 * mean['negated flow']


def test_flow_of_a_rotating_bar_and_a_drifting_disc_is_exact():
    """The rasteriser's flow is the rigid motion of each drawn point, off-axis points included."""
    pivot, length, step = np.array([30.0, 48.0]), 40.0, np.deg2rad(12)
    angles = np.arange(3) * step
    tip = pivot + length * np.stack([np.cos(angles), np.sin(angles)], -1)
    disc = np.array([[70.0, 20.0], [72.5, 18.0], [75.0, 16.0]])
    layers = Layers(
        start=np.stack([np.tile(pivot, (3, 1)), disc], 1), end=np.stack([tip, disc], 1),
        radius=np.array([7.0, 5.0]), colour=np.full((3, 2, 3), 200.0),
        depth=np.zeros((3, 2)))
    frames, flow = render(layers, np.zeros((96, 96, 3)))
    ys, xs = np.mgrid[0:96, 0:96].astype(np.float64)
    rotation = np.array([[np.cos(step), -np.sin(step)], [np.sin(step), np.cos(step)]])
    for k in range(2):
        bar = np.hypot(*np.broadcast_arrays(xs - 70 - 2.5 * k, ys - 20 + 2 * k)) > 6  # not disc
        owned = (np.abs(flow[k]).sum(0) > 0)
        relative = np.stack([xs - pivot[0], ys - pivot[1]], -1)
        expected = relative @ rotation.T - relative
        on_bar = owned & bar
        assert on_bar.sum() > 300 and (frames[k, on_bar] >= 100).all()
        assert np.abs(flow[k].transpose(1, 2, 0)[on_bar] - expected[on_bar]).max() < 1e-3
        on_disc = owned & ~bar
        assert on_disc.sum() > 50
        assert np.allclose(flow[k][:, on_disc].T, [2.5, -2.0], atol=1e-4)


def test_background_is_still_and_has_zero_flow():
    """Pixels far from every joint in every frame show only the static background."""
    clip = render_clip('squat', np.random.default_rng(3), num_frames=5, size=(48, 48),
                       max_distractors=0)
    ys, xs = np.mgrid[0:48, 0:48]
    figure_height = np.ptp(clip.keypoints[..., 1])
    distance = np.hypot(xs[None, None] - clip.keypoints[..., 0, None, None],
                        ys[None, None] - clip.keypoints[..., 1, None, None]).min(axis=(0, 1))
    far = distance > 0.4 * figure_height
    assert 0.2 < far.mean() < 0.95
    assert (clip.flow[:, :, far] == 0).all()
    assert (clip.frames[:, far] == clip.frames[:1, far]).all()
    assert (clip.flow != 0).any(axis=(0, 1)).mean() > 0.02  # and the figure itself moves


def test_keypoint_scores_mark_joints_outside_the_frame():
    clip = render_clip('jump', np.random.default_rng(0), num_frames=8, size=(32, 32))
    x, y = clip.keypoints[..., 0], clip.keypoints[..., 1]
    inside = (x >= 0) & (x <= 31) & (y >= 0) & (y <= 31)
    assert np.array_equal(clip.scores, inside.astype(np.float32))


def test_pose_tells_classes_apart_and_appearance_does_not():
    """Leave-one-out nearest centroid: keypoint trajectories identify the action, mean colour
    and the background do not (appearance is sampled independently of the class)."""
    pose, colour, labels = [], [], []
    for label, action in enumerate(ACTIONS):
        for i in range(4):
            clip = render_clip(action, np.random.default_rng([7, label, i]), num_frames=12)
            xy = clip.keypoints - clip.keypoints[:, 11:13].mean(axis=(0, 1))
            xy /= np.ptp(clip.keypoints[..., 1])
            pose.append(np.concatenate([np.sort(np.abs(xy[..., 0]), 1).ravel(),
                                        np.abs(np.diff(xy, axis=0)).mean(0).ravel()]))
            colour.append(clip.frames.reshape(-1, 3).mean(0))
            labels.append(label)

    def loo_accuracy(features):
        features, labels_ = np.asarray(features, np.float64), np.asarray(labels)
        features = (features - features.mean(0)) / (features.std(0) + 1e-9)
        hits = 0
        for i in range(len(features)):
            keep = np.arange(len(features)) != i
            centroids = np.stack([features[keep & (labels_ == c)].mean(0)
                                  for c in range(len(ACTIONS))])
            hits += np.argmin(((centroids - features[i]) ** 2).sum(1)) == labels_[i]
        return hits / len(features)

    assert loo_accuracy(pose) > 0.8
    assert loo_accuracy(colour) < 0.3


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    params = dict(num_classes=1, clips_per_class=1, unlabeled_clips=1, num_frames=4, size=(32, 32))
    first = generate_demo_dataset(tmp_path / 'a', seed=5, progress=False, **params)
    again = generate_demo_dataset(tmp_path / 'b', seed=5, progress=False, **params)
    other = generate_demo_dataset(tmp_path / 'c', seed=6, progress=False, **params)
    assert content_digest(first) == content_digest(again)
    assert content_digest(first) != content_digest(other)


def test_ensure_reuses_then_regenerates_its_own_folder(tmp_path):
    params = dict(num_classes=1, clips_per_class=1, unlabeled_clips=1, num_frames=3, size=(24, 24))
    root = ensure_demo_dataset(tmp_path / 'cache', progress=False, **params)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob('*')}
    assert ensure_demo_dataset(root, progress=False, **params) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob('*')} == stamps

    ensure_demo_dataset(root, progress=False, **dict(params, num_frames=4))
    assert len(list((root / 'frames' / 'u00000').iterdir())) == 4
    assert json.loads((root / 'manifest.json').read_text())['params']['num_frames'] == 4


def test_ensure_finishes_an_interrupted_generation(tmp_path):
    params = dict(num_classes=1, clips_per_class=1, unlabeled_clips=1, num_frames=3, size=(24, 24))
    root = generate_demo_dataset(tmp_path / 'cache', progress=False, **params)
    manifest = json.loads((root / 'manifest.json').read_text())
    (root / 'manifest.json').write_text(json.dumps(dict(manifest, complete=False)))
    (root / 'fewshot.json').unlink()
    ensure_demo_dataset(root, progress=False, **params)
    assert (root / 'fewshot.json').is_file()
    assert json.loads((root / 'manifest.json').read_text())['complete']


def test_ensure_refuses_folders_it_did_not_write(tmp_path):
    user = tmp_path / 'user'
    user.mkdir()
    (user / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='user.*no manifest.json'):
        ensure_demo_dataset(user, progress=False)
    assert os.listdir(user) == ['notes.txt']

    (user / 'manifest.json').write_text(json.dumps({'generator': 'something else'}))
    with pytest.raises(FileExistsError, match='not written by'):
        ensure_demo_dataset(user, progress=False)
    assert sorted(os.listdir(user)) == ['manifest.json', 'notes.txt']


def test_ensure_keeps_foreign_files_found_in_its_own_folder(tmp_path):
    params = dict(num_classes=1, clips_per_class=1, unlabeled_clips=1, num_frames=3, size=(24, 24))
    root = generate_demo_dataset(tmp_path / 'cache', progress=False, **params)
    (root / 'results.csv').write_text('precious')
    with pytest.raises(FileExistsError, match='results.csv'):
        ensure_demo_dataset(root, progress=False, **dict(params, seed=1))
    assert (root / 'results.csv').read_text() == 'precious'
    assert (root / 'frames' / 'u00000' / '000001.jpg').is_file()


def test_generate_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / 'x.txt').write_text('keep')
    with pytest.raises(FileExistsError, match='not empty'):
        generate_demo_dataset(tmp_path, progress=False)
    assert os.listdir(tmp_path) == ['x.txt']


def test_gin_bindings_reach_the_cache_parameters():
    gin.parse_config('demo_data.num_classes = 3\ndemo_data.size = (32, 48)')
    params = demo_data_params(seed=4)
    assert params['num_classes'] == 3 and params['size'] == [32, 48] and params['seed'] == 4
    with pytest.raises(TypeError, match='num_clases'):
        demo_data_params(num_clases=3)


@pytest.mark.parametrize('bad, message', [
    (dict(num_classes=len(ACTIONS), val_classes=1), 'num_classes'),
    (dict(num_frames=1), 'num_frames'),
    (dict(size=(8, 64)), 'size'),
])
def test_bad_parameters_are_named(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        generate_demo_dataset(tmp_path / 'd', progress=False, **bad)
    assert not (tmp_path / 'd').exists()


def test_command_line_writes_and_reuses(tmp_path, capsys):
    args = [str(tmp_path / 'cli'), '--num-classes', '1', '--clips-per-class', '1',
            '--unlabeled-clips', '0', '--num-frames', '3', '--size', '24', '32']
    demo_main(args)
    demo_main(args)
    out = capsys.readouterr().out
    assert out.count('Writing the synthetic demo dataset') == 1
    assert out.count('Demo dataset ready') == 2
    with Image.open(tmp_path / 'cli' / 'frames' / 'e00000' / '000003.jpg') as image:
        assert image.size == (32, 24)


def test_the_project_reader_loads_a_demo_clip_in_all_modalities(tiny):
    """The demo data goes through the real dataset unchanged: same pixels, flow and joints."""
    from mmdistill.data.dataset import build_clip_dataset

    height, width = TINY['size']
    frames = TINY['num_frames']
    gin.parse_config(whole_clip_bindings(TINY['size'], frames))
    dataset = build_clip_dataset(tiny / 'fewshot.json', mode='eval',
                                 mean={'rgb': (0, 0, 0)}, std={'rgb': (1, 1, 1)})
    assert dataset.class_names == sorted(list(ACTIONS)[:2])
    item = dataset[1]
    video = item['video']
    label = next(e['events'][0]['label'] for e in _videos(tiny, 'fewshot.json')
                 if e['video'] == video)
    assert dataset.class_names[item['label']] == label and item['start'] == 0
    assert item['rgb'].shape == (3, frames, height, width)
    assert item['flow'].shape == (2, frames, height, width)
    assert item['skeleton'].shape == (17, frames, height, width)

    jpeg = np.asarray(Image.open(tiny / 'frames' / video / '000002.jpg'), np.float32) / 255
    assert np.allclose(item['rgb'][:, 1].numpy().transpose(1, 2, 0), jpeg, atol=1e-5)
    flow = np.load(tiny / 'flows' / video / 'pair_00002.npy').astype(np.float32)
    assert np.allclose(item['flow'][:, 1].numpy(), flow, atol=1e-3)
    with open(tiny / 'skeletons' / f'{video}.pkl', 'rb') as f:
        keypoints = pickle.load(f)['keypoint'][0]
    nose = COCO17_JOINTS.index('nose')
    heatmap = item['skeleton'][nose, 0].numpy()
    peak_y, peak_x = np.unravel_index(heatmap.argmax(), heatmap.shape)
    assert np.hypot(peak_x - keypoints[0, nose, 0], peak_y - keypoints[0, nose, 1]) < 1.0


def test_cache_root_is_a_gin_parameter(tmp_path):
    gin.parse_config(f"demo_data_cache.root = '{tmp_path / 'from_gin'}'")
    path = ensure_demo_dataset(progress=False, num_classes=1, clips_per_class=1,
                               unlabeled_clips=0, num_frames=2, size=(16, 16))
    assert path == tmp_path / 'from_gin' and (path / 'fewshot.json').is_file()


def test_caches_written_under_the_old_module_name_are_reused(tmp_path):
    params = dict(num_classes=1, clips_per_class=1, unlabeled_clips=0, num_frames=2, size=(16, 16))
    root = generate_demo_dataset(tmp_path / 'cache', progress=False, **params)
    manifest = json.loads((root / 'manifest.json').read_text())
    (root / 'manifest.json').write_text(json.dumps(dict(manifest,
                                                        generator='mmdistill.data.synthetic')))
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob('*')}
    assert ensure_demo_dataset(root, progress=False, **params) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob('*')} == stamps
