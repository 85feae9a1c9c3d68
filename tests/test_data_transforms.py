"""Temporal and spatial choices, and the alignment of all modalities after crop and flip."""

import numpy as np
import pytest

from data_factories import make_dataset, write_flow_pairs, write_frames, write_skeleton_pickle
from mmdistill.data.annotations import Clip, read_annotations
from mmdistill.data.dataset import ClipDataset
from mmdistill.data.heatmaps import HeatmapRenderer
from mmdistill.data.flow_sources import FlowFrameSource
from mmdistill.data.skeleton_source import SkeletonSource
from mmdistill.data.sources import BadClipError, FrameFolderSource, Keypoints
from mmdistill.data.transforms import (Normalize, SpatialPlan, SpatialTransform, TemporalSampler, apply_to_frames,
                                       apply_to_keypoints, same_aspect)

RNG = np.random.default_rng(0)


def sample(clip, frames, train=False, placement="auto", seed=0):
    return TemporalSampler(num_frames=4, sampling_rate=2, placement=placement)(
        clip, frames, np.random.default_rng(seed), train)


def test_event_clip_starts_at_its_frame():
    start, indices = sample(Clip("v", start=5), 100)
    assert start == 5 and indices.tolist() == [5, 7, 9, 11]


def test_clip_running_past_the_end_is_shifted_back():
    assert sample(Clip("v", start=95), 100)[1].tolist() == [93, 95, 97, 99]


def test_video_shorter_than_clip_repeats_last_frame():
    assert sample(Clip("v"), 5)[1].tolist() == [0, 2, 4, 4]


def test_start_or_end_past_the_video_is_bad_input():
    with pytest.raises(BadClipError, match="starts at frame index 100 but the video has only 100 frames"):
        sample(Clip("v", start=100), 100)
    with pytest.raises(BadClipError, match="ends at frame index 120"):
        sample(Clip("v", start=0, end=120), 100)


def test_window_placement():
    clip = Clip("v", start=10, end=30)
    assert sample(clip, 100)[0] == 16                         # centred when evaluating
    starts = {sample(clip, 100, train=True, seed=seed)[0] for seed in range(200)}
    assert starts == set(range(10, 24))                        # random over the whole window when training
    assert sample(Clip("v", start=10, end=13), 100)[0] == 8    # short window: clip centred on it
    assert sample(Clip("v"), 40)[0] == 16                       # whole video, centred
    assert sample(clip, 100, train=False, placement="random", seed=3)[0] == sample(
        clip, 100, train=True, placement="auto", seed=3)[0]


def test_resize_and_crop_plan():
    transform = SpatialTransform(short_side=224, crop_size=(224, 384))
    assert transform.resized_size((240, 426)) == (224, 398)
    plan = transform.plan((224, 398), RNG, train=False)
    assert (plan.top, plan.left, plan.flip) == (0, 7, False)
    lefts = {transform.plan((224, 398), np.random.default_rng(s), train=True).left for s in range(100)}
    assert lefts == set(range(15))
    with pytest.raises(BadClipError, match=r"smaller than the crop 224x384.*spatial_transform.short_side"):
        SpatialTransform(short_side=None).plan((200, 300), RNG, train=False, video="small")


def test_flow_resize_rescales_values_and_flip_negates_dx():
    flow = np.zeros((1, 2, 10, 20), np.float16)
    flow[:, 0], flow[:, 1] = 1.5, -2.0
    plan = SpatialPlan(resized=(20, 40), top=0, left=0, crop=(20, 40), flip=True)
    out = apply_to_frames(flow, plan, is_flow=True)
    assert out.shape == (2, 1, 20, 40) and out.flags.c_contiguous
    np.testing.assert_allclose(out[:, 0, 5, 5], [-3.0, -4.0])


def test_keypoint_mapping_matches_pixel_resize():
    image = np.zeros((1, 10, 12, 1), np.float32)
    image[0, 3, 4] = 1.0
    plan = SpatialPlan(resized=(30, 36), top=2, left=5, crop=(20, 20), flip=False)
    resized = apply_to_frames(image, plan, is_flow=False)[0, 0]
    rows, cols = np.mgrid[0:20, 0:20]
    centroid = ((resized * cols).sum() / resized.sum(), (resized * rows).sum() / resized.sum())
    keypoints = Keypoints(np.array([[[[4.0, 3.0]]]], np.float32), np.ones((1, 1, 1), np.float32), (10, 12), ())
    moved = apply_to_keypoints(keypoints, plan, reference_size=(99, 99))
    np.testing.assert_allclose(moved.xy[0, 0, 0], centroid, atol=1e-4)


def test_normalize_in_place_and_invert():
    normalize = Normalize((0.5, 0.25), (0.5, 2.0), scale=1 / 255)
    array = np.full((2, 3), 255.0, np.float32)
    out = normalize(array.copy())
    np.testing.assert_allclose(out[:, 0], [1.0, 0.375])
    np.testing.assert_allclose(normalize.invert(out), array, rtol=1e-6)
    with pytest.raises(ValueError, match="channel statistics"):
        Normalize((0, 0, 0), (1, 1, 1))(np.zeros((2, 1), np.float32))


# ---- alignment: one marker, three modalities ----

FRAMES, HEIGHT, WIDTH = 10, 40, 60
WRIST_L, WRIST_R = 9, 10


def marker_at(frame):
    """Where the marker is in a frame (row, column): it moves 1 down and 2 right per frame."""
    return 12 + frame, 15 + 2 * frame


def write_marker_dataset(root, flow_scale=1, skeleton_scale=1):
    """A white dot in black RGB frames, a flow vector (dx=+3, dy=+1 pixels of the RGB) at the same
    place, and a left wrist on it; flow and skeleton may be stored at a lower resolution."""
    frames = np.zeros((FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    flows = np.zeros((FRAMES - 1, 2, HEIGHT // flow_scale, WIDTH // flow_scale), np.float32)
    xy = np.zeros((1, FRAMES, 17, 2), np.float32)
    score = np.zeros((1, FRAMES, 17), np.float32)
    for frame in range(FRAMES):
        row, col = marker_at(frame)
        frames[frame, row, col] = 255
        if frame < FRAMES - 1:
            # At lower resolution a 3x3 patch, so interpolation keeps the value at the marker.
            low_row, low_col, half = row // flow_scale, col // flow_scale, flow_scale // 2
            patch = (slice(None), slice(low_row - half, low_row + half + 1), slice(low_col - half, low_col + half + 1))
            flows[frame][patch] = np.array([3 / flow_scale, 1 / flow_scale])[:, None, None]
        xy[0, frame, WRIST_L] = ((col + 0.5) / skeleton_scale - 0.5, (row + 0.5) / skeleton_scale - 0.5)
        score[0, frame, WRIST_L] = 1.0
    write_frames(root, "v", frames, "frames/{video}/{frame:06d}.png")
    write_flow_pairs(root, "v", flows, dtype=np.float32)
    write_skeleton_pickle(root / "skeletons" / "v.pkl", xy, score,
                          (HEIGHT // skeleton_scale, WIDTH // skeleton_scale))


def marker_dataset(root, flip_prob, short_side=None, crop=(32, 48)):
    sources = {"rgb": FrameFolderSource("frames/{video}/{frame:06d}.png", root),
               "flow": FlowFrameSource(root=root), "skeleton": SkeletonSource(root=root)}
    identity = {name: Normalize((0.0,), (1.0,)) for name in sources}
    return ClipDataset([Clip("v", start=1)], sources, mode="train", normalize=identity,
                       temporal=TemporalSampler(num_frames=4, sampling_rate=2),
                       spatial=SpatialTransform(short_side=short_side, crop_size=crop, flip_prob=flip_prob),
                       heatmaps=HeatmapRenderer(sigma=1.0))


def peak(image):
    return np.unravel_index(np.argmax(image), image.shape)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_marker_lands_on_same_pixel_and_frame_in_all_modalities(tmp_path, flip_prob):
    write_marker_dataset(tmp_path)
    dataset = marker_dataset(tmp_path, flip_prob)
    for seed in range(3):
        dataset.seed = seed
        item = dataset[0]
        rgb, flow, heat = item["rgb"].numpy(), item["flow"].numpy(), item["skeleton"].numpy()
        assert item["start"] == 1
        wrist, other = (WRIST_R, WRIST_L) if flip_prob else (WRIST_L, WRIST_R)
        positions = []
        for t in range(4):
            where = peak(rgb[0, t])
            assert rgb[0, t][where] == 255
            assert peak(np.abs(flow[:, t]).sum(0)) == where
            np.testing.assert_allclose(flow[:, t][(slice(None),) + where], (-3 if flip_prob else 3, 1))
            assert peak(heat[wrist, t]) == where and heat[wrist, t][where] == pytest.approx(1.0)
            assert not heat[other, t].any()
            positions.append(where)
        steps = np.diff(np.array(positions), axis=0)
        assert (steps == [2, -4 if flip_prob else 4]).all()  # frames 1, 3, 5, 7: 2 frames apart


def test_lower_resolution_flow_and_skeleton_are_scaled_into_rgb_pixels(tmp_path):
    write_marker_dataset(tmp_path, flow_scale=2, skeleton_scale=2)
    item = marker_dataset(tmp_path, flip_prob=0.0, crop=(40, 60))[0]
    rgb, flow, heat = item["rgb"].numpy(), item["flow"].numpy(), item["skeleton"].numpy()
    for t in range(4):
        row, col = peak(rgb[0, t])
        assert np.hypot(*(np.subtract(peak(heat[WRIST_L, t]), (row, col)))) <= 0.01
        np.testing.assert_allclose(flow[:, t, row, col], (3, 1), atol=1e-5)
        assert not flow[:, t, row + 4 :].any() and not flow[:, t, :, col + 4 :].any()


def test_upscaled_clip_keeps_modalities_together(tmp_path):
    write_marker_dataset(tmp_path)
    item = marker_dataset(tmp_path, flip_prob=1.0, short_side=80, crop=(72, 112))[0]
    rgb, heat = item["rgb"].numpy(), item["skeleton"].numpy()
    for t in range(4):
        weights = rgb[0, t]
        rows, cols = np.mgrid[0:72, 0:112]
        centroid = np.array([(weights * rows).sum(), (weights * cols).sum()]) / weights.sum()
        assert np.abs(np.subtract(peak(heat[WRIST_R, t]), centroid)).max() <= 0.5


def test_flip_swaps_configured_joint_pairs():
    xy = np.array([[[[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]]], np.float32)   # (1, 1, 3, 2)
    keypoints = Keypoints(xy, np.array([[[0.1, 0.2, 0.3]]], np.float32), None, flip_pairs=((0, 2),))
    plan = SpatialPlan(resized=(4, 10), top=0, left=0, crop=(4, 10), flip=True)
    moved = apply_to_keypoints(keypoints, plan, reference_size=(4, 10))
    np.testing.assert_allclose(moved.xy[0, 0, :, 0], [6.0, 7.0, 8.0])   # x -> 9 - x, joints 0 and 2 swapped
    np.testing.assert_allclose(moved.score[0, 0], [0.3, 0.2, 0.1])


# ---- flow and skeletons of another size: rescaled when the shape matches, refused otherwise ----

@pytest.mark.parametrize("size, other, same", [
    ((224, 398), (112, 199), True),    # half size, exact
    ((224, 398), (112, 200), True),    # half size, width rounded to even
    ((720, 1280), (224, 398), True),   # the video's size vs frames with a short side of 224
    ((24, 32), (48, 64), True),        # larger is fine too
    ((224, 398), (224, 224), False),   # square flow for wide frames
    ((224, 398), (112, 192), False),   # 3.5% narrower: more than rounding
    ((480, 640), (224, 398), False),   # 4:3 skeleton img_shape for 16:9 frames
])
def test_same_aspect_allows_rounding_and_nothing_more(size, other, same):
    assert same_aspect(size, other) is same and same_aspect(other, size) is same


def three_modalities(root, **sizes):
    data = make_dataset(root, videos=("v0",), size=(24, 32), **sizes)
    sources = {"rgb": FrameFolderSource(root=root), "flow": FlowFrameSource(root=root),
               "skeleton": SkeletonSource(root=root)}
    return ClipDataset(read_annotations(data["annotations"]), sources, mode="eval",
                       temporal=TemporalSampler(num_frames=4, sampling_rate=2),
                       spatial=SpatialTransform(short_side=None, crop_size=(24, 32)))


@pytest.mark.parametrize("sizes, named", [
    (dict(flow_size=(24, 24)), r"its flow is 24x24 \(height x width\) but its rgb frames are 24x32.*"
                               r"prepare flow"),
    (dict(skeleton_shape=(36, 64)), r"its skeleton img_shape is 36x64 \(height x width\) but its rgb "
                                    r"frames are 24x32.*img_shape must be the size of the frames"),
])
def test_flow_or_skeleton_of_another_aspect_ratio_is_refused(tmp_path, sizes, named):
    with pytest.raises(BadClipError, match=r"video 'v0': " + named):
        three_modalities(tmp_path, **sizes)[0]


def test_same_shape_at_another_size_within_rounding_is_read(tmp_path):
    item = three_modalities(tmp_path, flow_size=(12, 17), skeleton_shape=(48, 64))[0]
    assert item["flow"].shape == (2, 4, 24, 32) and item["skeleton"].shape == (17, 4, 24, 32)
