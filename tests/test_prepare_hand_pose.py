"""`prepare hand-pose`: MM-CDFSL-style (56, 56, 21) heatmaps at its paths, from any hand estimator."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmdistill.prepare.common import OutputExists, PrepareError
from mmdistill.prepare.hand_pose import (HAND21, LAYOUTS, hand_heatmaps,
                                         prepare_hand_pose)
from mmdistill.prepare.skeleton import mediapipe_available

ROOT = Path(__file__).resolve().parents[1]
CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tennis_strokes"
HEIGHT, WIDTH = 24, 40


def write_frames(root: Path, video: str, count: int) -> Path:
    """A frames-step folder (000001.jpg ...) of grey frames; the fake estimator ignores pixels."""
    folder = root / "frames" / video
    folder.mkdir(parents=True)
    for frame in range(1, count + 1):
        cv2.imwrite(str(folder / f"{frame:06d}.jpg"), np.full((HEIGHT, WIDTH, 3), 9 * frame, np.uint8))
    return root


def fake_hands(call: int) -> np.ndarray:
    """Call 1, 3, ...: no hand; call 2, 4, ...: two hands whose joints move with the call."""
    if call % 2:
        return np.zeros((0, 21, 2), np.float32)
    joints = np.arange(21, dtype=np.float32)
    first = np.stack([joints * 1.5, np.full(21, call, np.float32)], axis=-1)
    second = np.stack([np.full(21, WIDTH - 3, np.float32), joints], axis=-1)
    return np.stack([first, second])


class FakeHands:
    def __init__(self):
        self.calls = 0

    def __call__(self, rgb):
        assert rgb.shape == (HEIGHT, WIDTH, 3) and rgb.dtype == np.uint8
        self.calls += 1
        return fake_hands(self.calls)

    def close(self):
        pass


def make_fake(settings):
    return FakeHands()


class WrongShape(FakeHands):
    def __call__(self, rgb):
        return np.zeros((1, 17, 2), np.float32)


def make_wrong(settings):
    return WrongShape()


def gaussian(x, y, mx, my, sigma):
    return np.exp(-((x - mx) ** 2 + (y - my) ** 2) / (2 * sigma ** 2))


def test_heatmap_is_a_peak_one_gaussian_on_the_squashed_frame_and_hands_combine_by_maximum():
    height, width, size, sigma = 240, 426, 56, 10.0
    # joint 3 of hand A where its heatmap position is exactly grid point (20, 7)
    ax, ay = (20 + 0.5) * width / size - 0.5, (7 + 0.5) * height / size - 0.5
    hand_a = np.full((21, 2), np.nan, np.float32)   # NaN joints are left out
    hand_a[3] = (ax, ay)
    hand_b = np.full((21, 2), np.nan, np.float32)
    hand_b[3] = (width - 1, height - 1)              # bottom-right corner pixel
    hand_b[5] = (-10 * width, 0)                      # far outside: its 3-sigma box misses the grid
    maps = hand_heatmaps(np.stack([hand_a, hand_b]), (height, width), size, sigma)
    assert maps.shape == (56, 56, 21) and maps.dtype == np.float32
    assert maps[7, 20, 3] == pytest.approx(1.0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    # the last pixel's centre is half a frame pixel in from the right and bottom edges
    corner = (size - 0.5 - 0.5 * size / width, size - 0.5 - 0.5 * size / height)
    expected = np.maximum(gaussian(x, y, 20, 7, sigma), gaussian(x, y, *corner, sigma))
    np.testing.assert_allclose(maps[..., 3], expected, rtol=1e-5, atol=1e-7)
    untouched = [j for j in range(21) if j != 3]
    assert not maps[..., untouched].any()
    assert not hand_heatmaps(np.zeros((0, 21, 2)), (height, width)).any()


def test_sigma_ten_matches_the_pose_normalisation_of_two_hands():
    """Why sigma 10 (docs/prepare.md): MM-CDFSL normalises pose by mean 0.3, std 0.3
    (configs/data_module/modality/pose.yaml:6-15); two hands drawn at sigma 10 have about that."""
    rng = np.random.default_rng(0)
    stats = []
    for _ in range(40):
        centres = rng.uniform(40, 184, (2, 1, 2))
        hands = centres + rng.normal(0, 10, (2, 21, 2))
        maps = hand_heatmaps(hands, (224, 224), 56, 10.0)
        stats.append((maps.mean(), maps.std()))
    mean, std = np.mean(stats, axis=0)
    assert abs(mean - 0.3) < 0.06 and abs(std - 0.3) < 0.06
    narrow = hand_heatmaps(hands, (224, 224), 56, 2.0)
    assert narrow.mean() < 0.05  # MMPose's usual sigma 2 would not be near 0.3


@pytest.mark.parametrize("layout, first, third", [
    ("wear", "hand-pose/heatmap/P01/vid_1/000001.npy", "hand-pose/heatmap/P01/vid_1/000003.npy"),
    ("ego4d", "hand-pose/heatmap/P01/vid_1/000001.npy", "hand-pose/heatmap/P01/vid_1/000003.npy"),
    ("meccano", "hand-pose/heatmap/P01/vid_1/00001.npy", "hand-pose/heatmap/P01/vid_1/00003.npy"),
    ("epic", "frames/pose/train/P01/vid_1/frame_0000000001.npy",
     "frames/pose/train/P01/vid_1/frame_0000000003.npy"),
])
def test_every_frame_gets_its_heatmap_at_the_layout_path(tmp_path, layout, first, third):
    data = write_frames(tmp_path, "P01/vid_1", 5)
    report = prepare_hand_pose(data, layout=layout, factory=make_fake, progress=False)
    assert report.ok and report.done == ["P01/vid_1"] and report.frames == 5
    written = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.npy"))
    assert written[0] == first and written[2] == third and len(written) == 5
    for frame, rel in enumerate(written, start=1):
        maps = np.load(data / rel)
        assert maps.shape == (56, 56, 21) and maps.dtype == np.float32
        np.testing.assert_array_equal(maps, hand_heatmaps(fake_hands(frame), (HEIGHT, WIDTH)))
        assert maps.any() == (frame % 2 == 0)  # no hand: all zeros, nothing invented


def test_stride_writes_every_sth_frame_while_the_estimator_sees_all(tmp_path):
    data = write_frames(tmp_path, "clip", 6)
    report = prepare_hand_pose(data, stride=2, factory=make_fake, progress=False)
    names = sorted(p.name for p in (data / "hand-pose/heatmap/clip").iterdir())
    assert names == ["000001.npy", "000003.npy", "000005.npy"] and report.frames == 3
    # frame 4 was not written, but the tracker saw it: frame 5 is its 5th call
    np.testing.assert_array_equal(np.load(data / "hand-pose/heatmap/clip/000005.npy"),
                                  hand_heatmaps(fake_hands(5), (HEIGHT, WIDTH)))


def test_rerun_skips_other_settings_refuse_and_a_broken_estimator_fails(tmp_path):
    data = write_frames(tmp_path, "clip", 3)
    prepare_hand_pose(data, factory=make_fake, progress=False)
    assert prepare_hand_pose(data, factory=make_fake, progress=False).skipped == ["clip"]
    with pytest.raises(OutputExists, match="sigma=10.0, now 5.0"):
        prepare_hand_pose(data, factory=make_fake, sigma=5.0, progress=False)
    with pytest.raises(OutputExists, match="layout='wear', now 'meccano'"):
        prepare_hand_pose(data, factory=make_fake, layout="meccano", progress=False)
    broken = prepare_hand_pose(data, factory=make_wrong, overwrite=True, progress=False)
    assert "expected (M, 21, 2)" in broken.failed["clip"]
    assert not (data / "hand-pose/heatmap/clip").exists()  # nothing half-made left behind


def test_foreign_heatmaps_are_never_replaced_without_overwrite(tmp_path):
    data = write_frames(tmp_path, "clip", 2)
    theirs = data / "hand-pose/heatmap/clip/000001.npy"
    theirs.parent.mkdir(parents=True)
    np.save(theirs, np.ones((56, 56, 21), np.float32))
    with pytest.raises(OutputExists, match="not made by this tool"):
        prepare_hand_pose(data, factory=make_fake, progress=False)
    assert np.load(theirs).all()


def test_bad_requests_stop_before_any_work(tmp_path):
    data = write_frames(tmp_path, "clip", 2)
    with pytest.raises(PrepareError, match="--layout 'ego5d'"):
        prepare_hand_pose(data, layout="ego5d", factory=make_fake, progress=False)
    with pytest.raises(PrepareError, match="--sigma"):
        prepare_hand_pose(data, sigma=0, factory=make_fake, progress=False)
    assert not (data / "hand-pose").exists()


def test_layouts_are_the_paths_the_tiny_trees_use():
    """The step writes where the MM-CDFSL-layout reference (tests/mmcdfsl_trees.py) reads pose."""
    trees = pytest.importorskip("mmcdfsl_trees")
    for layout, template in LAYOUTS.items():
        assert trees.pose_path(layout, "V", 7) == template.format(video="V", frame=7)


def test_missing_mediapipe_says_how_to_install_it(tmp_path, monkeypatch):
    import mmdistill.prepare.skeleton as step  # where the optional dependency is looked for
    monkeypatch.setattr(step, "mediapipe_available", lambda: False)
    data = write_frames(tmp_path, "clip", 2)
    with pytest.raises(PrepareError, match=r"pip install --no-deps mediapipe==0\.10\.21"):
        prepare_hand_pose(data, progress=False)


needs_mediapipe = pytest.mark.skipif(not mediapipe_available(),
                                     reason="optional MediaPipe not installed (see docs/prepare.md)")


@needs_mediapipe
def test_mediapipe_hand_landmarks_are_in_coco_wholebody_hand_order():
    from mediapipe.python.solutions.hands import HandLandmark
    # COCO-WholeBody numbers each finger's joints 1..4 from the palm outwards.
    thumb = {"CMC": 1, "MCP": 2, "IP": 3, "TIP": 4}
    finger = {"MCP": 1, "PIP": 2, "DIP": 3, "TIP": 4}
    names = {"THUMB": "thumb", "INDEX": "forefinger", "MIDDLE": "middle_finger",
             "RING": "ring_finger", "PINKY": "pinky_finger"}
    assert len(HandLandmark) == len(HAND21)
    for landmark in HandLandmark:
        parts = landmark.name.split("_")
        if parts == ["WRIST"]:
            name = "wrist"
        else:
            number = (thumb if parts[0] == "THUMB" else finger)[parts[-1]]
            name = f"{names[parts[0]]}{number}"
        assert HAND21[landmark.value] == name, landmark


@needs_mediapipe
@pytest.mark.skipif(not CLIPS.is_dir(), reason=f"real clips not found at {CLIPS}")
def test_mediapipe_hands_in_a_real_tennis_clip_sit_at_the_players_wrists(tmp_path):
    from mmdistill.prepare.frames import prepare_frames
    from mmdistill.prepare.skeleton import COCO17
    from mmdistill.data.skeleton_source import load_plain_pickle

    (tmp_path / "videos/forehand").mkdir(parents=True)
    (tmp_path / "videos/forehand/forehand12.mp4").symlink_to(CLIPS / "forehand/forehand12.mp4")
    data = tmp_path / "data"
    assert prepare_frames(tmp_path / "videos", data, progress=False).ok  # 426 x 240, as recorded
    # MediaPipe runs in a child process: its threads in this one would break later forks
    # (the prepare steps' worker pools in other tests).
    for step in ("hand-pose", "skeleton"):  # the pose model's wrists, for comparison
        done = subprocess.run([sys.executable, "-m", "mmdistill.prepare", step, "--data", str(data),
                               "--workers", "1"], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((data / ".prepare/hand-pose-report.json").read_text())
    skeleton = load_plain_pickle(data / "skeletons/forehand/forehand12.pkl")
    height, width = skeleton["img_shape"]
    wrists = [COCO17.index("left_wrist"), COCO17.index("right_wrist")]
    distances = []
    for frame in range(1, skeleton["total_frames"] + 1):
        maps = np.load(data / f"hand-pose/heatmap/forehand/forehand12/{frame:06d}.npy")
        if not maps.any():
            continue
        assert maps.max() == pytest.approx(1.0, abs=0.05)
        if skeleton["keypoint_score"][0, frame - 1, wrists].min() < 0.5:
            continue
        peak_y, peak_x = np.unravel_index(np.argmax(maps[..., 0]), maps.shape[:2])  # wrist channel
        xy = skeleton["keypoint"][0, frame - 1, wrists]
        on_map = np.stack([(xy[:, 0] + 0.5) * 56 / width - 0.5,
                           (xy[:, 1] + 0.5) * 56 / height - 0.5], axis=-1)
        distances.append(np.linalg.norm(on_map - (peak_x, peak_y), axis=1).min())
    assert report["frames"] == skeleton["total_frames"] and len(distances) >= 3, distances
    # The player's hands are ~10 px here, so detections are few and rough: a median within
    # 5 heatmap pixels (~40 frame pixels) of the pose model's wrist says the coordinates reach
    # the right place on the grid (x/y swapped or unscaled would be far off); the joint order is
    # checked against MediaPipe's own enum above.
    assert np.median(distances) < 5, distances
