"""`prepare flow`: sign convention on a known shift, and flow that explains real tennis motion."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmdistill.prepare.common import OutputExists, PrepareError
from mmdistill.prepare.flow import make_flow_fn, prepare_flow, to_stored
from mmdistill.prepare.frames import prepare_frames

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tennis_strokes"
needs_clips = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"real clips not found at {CLIPS}")


def textured_image(height=96, width=128, seed=0) -> np.ndarray:
    noise = np.random.default_rng(seed).uniform(0, 255, (height, width)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.0).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", ["dis", "farneback", pytest.param("tvl1", marks=pytest.mark.skipif(
    not hasattr(cv2, "optflow"), reason="TV-L1 needs opencv-contrib-python-headless"))])
def test_flow_of_a_known_shift_has_the_documented_signs(method):
    first = textured_image()
    # Content moves 3 px right and 2 px up from the first frame to the second.
    second = cv2.warpAffine(first, np.float32([[1, 0, 3], [0, 1, -2]]), first.shape[::-1],
                            borderMode=cv2.BORDER_REFLECT)
    stored = to_stored(make_flow_fn(method)(first, second), bound=20)
    assert stored.shape == (2, 96, 128) and stored.dtype == np.float16 and stored.flags.c_contiguous
    centre = stored[:, 20:-20, 20:-20].astype(np.float32)
    assert np.median(centre[0]) == pytest.approx(3, abs=0.3)   # dx, + right
    assert np.median(centre[1]) == pytest.approx(-2, abs=0.3)  # dy, + down


def test_stored_flow_is_clipped_to_the_bound():
    wild = np.array([[[-50.0, 7.5]]], dtype=np.float32)
    np.testing.assert_array_equal(to_stored(wild, bound=20).reshape(2), [-20, 7.5])


def test_tvl1_without_the_contrib_build_says_what_to_install():
    if hasattr(cv2, "optflow"):
        pytest.skip("this OpenCV has the contrib modules; TV-L1 is available")
    with pytest.raises(PrepareError, match="opencv-contrib-python-headless"):
        make_flow_fn("tvl1")


@pytest.fixture(scope="module")
def real_data(tmp_path_factory) -> Path:
    """Frames (short side 96) of a broadcast serve and a practice-court forehand."""
    root = tmp_path_factory.mktemp("flow")
    for name in ("serve/serve1", "forehand/forehand12"):
        (root / "videos" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "videos" / f"{name}.mp4").symlink_to(CLIPS / f"{name}.mp4")
    assert prepare_frames(root / "videos", root / "data", short_side=96, progress=False).ok
    return root / "data"


def gray(data: Path, video: str, frame: int) -> np.ndarray:
    return cv2.imread(str(data / "frames" / video / f"{frame:06d}.jpg"), cv2.IMREAD_GRAYSCALE)


@needs_clips
def test_real_flow_explains_the_motion_between_frames(real_data):
    report = prepare_flow(real_data, bound=20, progress=False)
    assert report.ok and report.frames == 59 + 60 and report.frames_per_second > 0
    for video, frames in (("serve/serve1", 60), ("forehand/forehand12", 61)):
        files = sorted((real_data / "flows" / video).glob("pair_*.npy"))
        assert [f.name for f in files[:2]] == ["pair_00001.npy", "pair_00002.npy"]
        assert len(files) == frames - 1
        ratios, wrong_sign, p95 = [], [], []
        for k in range(10, frames - 1, 10):
            flow = np.load(files[k - 1])
            assert flow.shape == (2, 96, 170) and flow.dtype == np.float16
            assert np.abs(flow).max() <= 20
            before, after = gray(real_data, video, k).astype(np.float32), gray(real_data, video, k + 1)
            # pair_k maps frame k to k+1: frame k+1 sampled at x + flow(x) should give back frame k.
            ys, xs = np.mgrid[0:96, 0:170].astype(np.float32)
            flow = flow.astype(np.float32)
            moving = np.abs(after - before) > 12  # where the picture changed: player, ball, camera
            if moving.sum() < 50:
                continue
            change = np.abs(after - before)[moving].mean()
            for sign, out in ((1, ratios), (-1, wrong_sign)):
                warped = cv2.remap(after, xs + sign * flow[0], ys + sign * flow[1], cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
                out.append(np.abs(warped - before)[moving].mean() / change)
            p95.append(np.percentile(np.hypot(flow[0], flow[1])[moving], 95))
        assert len(ratios) >= 3, f"{video}: too few frames with motion to judge"
        # Measured (DIS medium): median 0.54 (broadcast serve) and 0.35 (practice forehand);
        # zero flow gives 1, the flow with its signs flipped 0.8-1.3.
        assert np.median(ratios) < 0.7, f"{video}: flow explains too little of the change {ratios}"
        assert all(r < w for r, w in zip(ratios, wrong_sign)), (ratios, wrong_sign)
        # Measured: median 1.0 px (small broadcast player) and 2.3 px at this 96-pixel size.
        assert np.median(p95) > 0.5, f"{video}: flow too small where the picture changes {p95}"


@needs_clips
def test_per_video_array_equals_the_pair_files_and_settings_are_guarded(real_data):
    prepare_flow(real_data, progress=False)  # pair files (done above or now)
    pairs = np.stack([np.load(f) for f in sorted((real_data / "flows/serve/serve1").glob("*.npy"))])
    assert prepare_flow(real_data, progress=False).skipped == ["forehand/forehand12", "serve/serve1"]
    with pytest.raises(OutputExists, match="per_video_array=False, now True"):
        prepare_flow(real_data, per_video_array=True, progress=False)
    report = prepare_flow(real_data, per_video_array=True, overwrite=True, progress=False)
    assert len(report.done) == 2
    array = np.load(real_data / "flows/serve/serve1.npy", mmap_mode="r")
    assert array.shape == (59, 2, 96, 170) and array.dtype == np.float16
    np.testing.assert_array_equal(array, pairs)
    assert not (real_data / "flows/serve/serve1").exists()  # the old layout was replaced


@needs_clips
def test_flow_follows_its_frames(tmp_path):
    (tmp_path / "videos/serve").mkdir(parents=True)
    (tmp_path / "videos/serve/serve1.mp4").symlink_to(CLIPS / "serve/serve1.mp4")
    data = tmp_path / "data"
    prepare_frames(tmp_path / "videos", data, short_side=32, progress=False)
    prepare_flow(data, method="farneback", progress=False)
    prepare_frames(tmp_path / "videos", data, short_side=40, overwrite=True, progress=False)
    with pytest.raises(OutputExists, match="source_size"):  # flow of the old frames is stale
        prepare_flow(data, method="farneback", progress=False)

    marker = data / ".prepare/frames/serve/serve1.json"
    marker.write_text(json.dumps(dict(json.loads(marker.read_text()), status="started")))
    with pytest.raises(PrepareError, match="rerun the frames step"):
        prepare_flow(data, method="farneback", overwrite=True, progress=False)
