"""`prepare skeleton`: pickles the project's skeleton reader takes; nobody found means score 0."""
from pathlib import Path

import numpy as np
import pytest

from mmdistill.prepare.common import OutputExists, PrepareError
from mmdistill.prepare.frames import prepare_frames
from mmdistill.prepare.skeleton import COCO17, mediapipe_available, prepare_skeletons

sources = pytest.importorskip("mmdistill.data.skeleton_source", reason="the project's skeleton reader")

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tennis_strokes"
pytestmark = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"real clips not found at {CLIPS}")


class EveryOtherFrame:
    """A stand-in estimator: a person on even frames; on odd frames nobody, with junk coordinates
    that must not reach the file."""
    num_people = 1

    def __init__(self):
        self.calls = 0

    def __call__(self, rgb):
        height, width = rgb.shape[:2]
        self.calls += 1
        if self.calls % 2 == 0:
            return np.full((1, 17, 2), 123.0, np.float32), np.zeros((1, 17), np.float32)
        xs = np.linspace(0, width - 1, 17, dtype=np.float32)
        keypoints = np.stack([xs, np.full(17, height / 2, np.float32)], axis=-1)[None]
        return keypoints, np.full((1, 17), 0.9, np.float32)

    def close(self):
        pass


def every_other_frame(settings):
    return EveryOtherFrame()


def two_people_claimed(settings):
    estimator = EveryOtherFrame()
    estimator.num_people = 2  # but it returns one: a broken estimator
    return estimator


def make_frames(root: Path, names, short_side) -> Path:
    for name in names:
        (root / "videos" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "videos" / f"{name}.mp4").symlink_to(CLIPS / f"{name}.mp4")
    assert prepare_frames(root / "videos", root / "data", short_side=short_side, progress=False).ok
    return root / "data"


def test_pickles_load_through_the_reader_and_absent_people_score_zero(tmp_path):
    data = make_frames(tmp_path, ["serve/serve1"], short_side=48)
    report = prepare_skeletons(data, factory=every_other_frame, progress=False)
    assert report.ok and report.done == ["serve/serve1"] and report.frames == 60
    raw = sources.load_plain_pickle(data / "skeletons/serve/serve1.pkl")  # restricted unpickler
    assert raw["total_frames"] == 60 and raw["img_shape"] == (48, 85)
    assert raw["keypoint"].dtype == raw["keypoint_score"].dtype == np.float32
    keypoints = sources.SkeletonSource(root=data).read("serve/serve1", list(range(60)))
    assert keypoints.xy.shape == (1, 60, 17, 2) and keypoints.score.shape == (1, 60, 17)
    assert keypoints.img_shape == (48, 85)
    np.testing.assert_array_equal(keypoints.score[0, 1::2], 0)   # nobody there ...
    np.testing.assert_array_equal(keypoints.xy[0, 1::2], 0)      # ... and no invented joints
    np.testing.assert_allclose(keypoints.score[0, 0::2], 0.9)
    np.testing.assert_allclose(keypoints.xy[0, 0, :, 0], np.linspace(0, 84, 17), rtol=1e-6)


def test_rerun_skips_changed_settings_refuse_and_a_broken_estimator_fails(tmp_path):
    data = make_frames(tmp_path, ["serve/serve1"], short_side=32)
    prepare_skeletons(data, factory=every_other_frame, progress=False)
    assert prepare_skeletons(data, factory=every_other_frame,
                             progress=False).skipped == ["serve/serve1"]
    with pytest.raises(OutputExists, match="min_detection_confidence=0.5, now 0.8"):
        prepare_skeletons(data, factory=every_other_frame, min_detection_confidence=0.8,
                          progress=False)
    broken = prepare_skeletons(data, factory=two_people_claimed, overwrite=True, progress=False)
    assert "expected (2, 17, 2)" in broken.failed["serve/serve1"]
    assert not (data / "skeletons/serve/serve1.pkl").exists()  # no half-made file left behind


@pytest.mark.skipif(mediapipe_available(), reason="MediaPipe is installed")
def test_missing_mediapipe_says_how_to_install_it(tmp_path):
    data = make_frames(tmp_path, ["serve/serve1"], short_side=32)
    with pytest.raises(PrepareError, match=r"pip install --no-deps mediapipe==0\.10\.21"):
        prepare_skeletons(data, progress=False)


@pytest.mark.skipif(not mediapipe_available(),
                    reason="optional MediaPipe not installed (see docs/prepare.md)")
def test_mediapipe_finds_an_upright_player_in_real_clips(tmp_path):
    data = make_frames(tmp_path, ["serve/serve1", "forehand/forehand12"], short_side=224)
    report = prepare_skeletons(data, workers=2, progress=False)  # one clip per process
    assert report.ok, report.failed
    joint = {name: i for i, name in enumerate(COCO17)}
    reader = sources.SkeletonSource(root=data)
    for video in report.done:
        keypoints = reader.read(video, list(range(reader.num_frames(video))))
        height, width = keypoints.img_shape
        seen = keypoints.score[0].max(axis=1) > 0
        assert seen.mean() > 0.8, f"{video}: a person in only {seen.mean():.0%} of frames"
        xy, score = keypoints.xy[0][seen], keypoints.score[0][seen]
        sure = score > 0.5
        assert ((xy[..., 0] >= -1) & (xy[..., 0] <= width) & (xy[..., 1] >= -1)
                & (xy[..., 1] <= height))[sure].all()
        # COCO order check on an upright player: head above shoulders above hips above ankles.
        y = xy[..., 1]
        for upper, lower in (("nose", "left_shoulder"), ("right_shoulder", "right_hip"),
                             ("left_hip", "left_ankle")):
            assert (y[:, joint[upper]] < y[:, joint[lower]]).mean() > 0.9, (video, upper, lower)
