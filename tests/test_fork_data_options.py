"""The tennis fork's data options that stand on their own (issue 22 items 2 and 5): its unlabelled
reader's one-clip-per-video rule, its normalisation values as gin macros, and the reference
tensors of tests/fork_tree.py on a tiny tree in the fork's layout.

The references compute the fork's rules from its code (file:line in fork_tree.py); these tests
check our options against them, and check the references against the rules they cite.
"""
from pathlib import Path

import gin
import numpy as np
import pytest
import torch

import fork_tree as fork
from mmdistill.data.annotations import AnnotationError, Clip, read_annotations
from mmdistill.data.dataset import build_clip_dataset

REPO = Path(__file__).resolve().parents[1]
NORM_GIN = REPO / "gin" / "base" / "tennis_fork_norm.gin"
NUM_FRAMES = 16  # the fork's clip length: the 10-frame video's clip runs 11 frames past its end


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return fork.write_fork_tree(tmp_path_factory.mktemp("fork_tree"))


# ---- the references follow the rules they cite ----

def test_frame_numbers_start_at_one_and_repeat_it_for_a_clip_at_frame_zero():
    assert fork.fork_frame_numbers(0, 4) == [1, 1, 2, 3]
    assert fork.fork_frame_numbers(5, 3) == [5, 6, 7]


def test_reference_past_the_end_repeats_rgb_zeroes_flow_clamps_skeleton(tree):
    video = "match2_300_310"  # frames 000000..000009, pairs 1..9; the clip reads n = 5..20
    start = dict(fork.fork_unlabelled_clips(tree.events_json))[video]
    inputs = fork.fork_teacher_inputs("distill", tree.root, video, start, NUM_FRAMES)
    last = 9 - start  # position of file 000009
    rgb, flow, skeleton = inputs["rgb"], inputs["flow"], inputs["skeleton"]
    assert all(torch.equal(rgb[:, t], rgb[:, last]) for t in range(last + 1, NUM_FRAMES))
    assert not torch.equal(rgb[:, last], rgb[:, last - 1])
    mean, std = fork.FLOW_BEFORE_2026_01_09
    expected = (-torch.tensor(mean) / torch.tensor(std)).view(2, 1, 1)
    for t in range(NUM_FRAMES):
        assert torch.allclose(flow[:, t], expected.expand(2, 224, 384)) == (start + t > 9)
    # rows n - 1 clamp to the last row 9 from n = 10 on: positions from last + 1 repeat
    assert all(torch.equal(skeleton[:, t], skeleton[:, last + 1]) for t in range(last + 2, NUM_FRAMES))
    assert not torch.equal(skeleton[:, last], skeleton[:, last + 1])


def test_reference_flips_rgb_only_and_crops_at_column_seven(tree):
    video, start = "match1_100_124", 9
    plain = fork.fork_teacher_inputs("pretrain", tree.root, video, start, 2, flip=False)
    flipped = fork.fork_teacher_inputs("pretrain", tree.root, video, start, 2, flip=True)
    assert torch.equal(flipped["rgb"], plain["rgb"].flip(-1))
    assert torch.equal(flipped["flow"], plain["flow"]) and torch.equal(flipped["skeleton"], plain["skeleton"])
    raw = np.load(tree.root / "tennis_flows" / video / f"pair_{start:05d}.npy")
    mean, std = fork.FLOW_FROM_2026_01_09
    assert torch.allclose(plain["flow"][0, 0] * std[0] + mean[0], torch.from_numpy(raw[0, :, 7:391]), atol=1e-5)


def test_reference_heatmap_draws_person_zero_above_the_threshold_only(tree):
    import pickle
    with open(tree.root / "skeletons" / "f3set-tennis" / "match1_100_124.pkl", "rb") as handle:
        data = pickle.load(handle)
    points = fork.fork_keypoints_row(data, 5)  # row 4
    assert np.allclose(points[:, 0], data["keypoint"][0, 4, :, 0] / 1280)
    grid = fork.fork_heatmap_grid(points)
    assert not grid[1].any() and not grid[2].any()  # scores 0.1 and 0.05
    drawn = points[:, 2] > 0.1
    for k in np.flatnonzero(drawn):
        u, v, s = points[k]
        r, c = int(np.clip(round(v * 56), 0, 55)), int(np.clip(round(u * 98), 0, 97))
        if 0 <= v * 56 <= 55 and 0 <= u * 98 <= 97:
            assert grid[k].max() == pytest.approx(grid[k, r, c], rel=1e-6)
            assert grid[k].max() <= s + 1e-6


# ---- unlabelled reader: one clip per video at its first event ----

def test_first_event_only_gives_the_forks_unlabelled_clips(tree):
    clips = read_annotations(tree.events_json, label_key=None, events_per_video="first")
    assert [(clip.video, clip.start) for clip in clips] == fork.fork_unlabelled_clips(tree.events_json)
    every = read_annotations(tree.events_json, label_key=None)
    assert len(every) == sum(len(video.events) for video in tree.videos.values()) > len(clips)


def test_first_event_is_the_files_first_not_the_earliest(tmp_path):
    path = tmp_path / "e.json"
    path.write_text('[{"video": "a", "events": [{"frame": 30, "label": "x"}, {"frame": 2, "label": "y"}]}]')
    assert read_annotations(path, events_per_video="first") == [Clip("a", 30, None, "x")]


def test_first_event_only_through_a_gin_scope(tree):
    gin.parse_config("unlabeled/clip_annotations.events_per_video = 'first'")
    with gin.config_scope("unlabeled"):
        scoped = read_annotations(tree.events_json, label_key=None)
    assert len(scoped) == len(tree.videos)
    assert len(read_annotations(tree.events_json, label_key=None)) > len(tree.videos)


def test_events_per_video_refuses_bad_values_with_the_fix(tree, tmp_path):
    with pytest.raises(ValueError, match="'all' .*'first'.*got 'one'"):
        read_annotations(tree.events_json, events_per_video="one")
    flat = tmp_path / "flat.json"
    flat.write_text('[{"video": "a", "start": 3}]')
    with pytest.raises(AnnotationError, match="flat.json.*events_per_video = 'first'.*unset it") as info:
        read_annotations(flat, events_per_video="first")
    assert "unlabeled/clip_annotations.events_per_video" in str(info.value)


# ---- normalisation values as gin macros ----

@gin.configurable("fork_norm_probe")
def _probe(value=None):
    return value


def test_norm_macros_parse_and_hold_the_forks_values():
    gin.parse_config_file(str(NORM_GIN))

    def query(macro):  # resolved as a binding would be (query_parameter leaves nested macros)
        gin.parse_config(f"fork_norm_probe.value = {macro}")
        return _probe()
    assert query("%FORK_DISTILL_MEAN") == {"rgb": fork.IMAGENET_RGB[0], "flow": fork.FLOW_BEFORE_2026_01_09[0],
                                           "skeleton": fork.SKELETON[0]}
    assert query("%FORK_DISTILL_STD")["skeleton"] == fork.SKELETON[1]
    assert (query("%FORK_FLOW_FROM_2026_01_09_MEAN"), query("%FORK_FLOW_FROM_2026_01_09_STD")) \
        == fork.FLOW_FROM_2026_01_09
    assert query("%FORK_EVAL_MEAN") == {"rgb": fork.TENNIS_RGB[0]}
    assert query("%FORK_EVAL_STD") == {"rgb": fork.TENNIS_RGB[1]}
    assert len(query("%FORK_SKELETON_MEAN")) == len(query("%FORK_SKELETON_STD")) == 17


@pytest.mark.parametrize("stage, macro", [("distill", "DISTILL"), ("eval", "EVAL")])
def test_norm_macros_give_the_forks_rgb_tensor_for_a_clip_inside_the_video(tree, stage, macro):
    """Away from frame 0 and the video's end the fork reads RGB file f + i, which our reader does
    with first_frame = 0; the crop of a 224 x 398 frame to 384 is at column 7 in both."""
    gin.parse_config_file(str(NORM_GIN))
    gin.parse_config([f"clip_data.mean = %FORK_{macro}_MEAN", f"clip_data.std = %FORK_{macro}_STD",
                      "rgb_frames.template = 'vid_frames_224/{video}/{frame:06d}.jpg'", "rgb_frames.first_frame = 0",
                      f"temporal_sampling.num_frames = {NUM_FRAMES}", "temporal_sampling.sampling_rate = 1",
                      "spatial_transform.crop_size = (224, 384)"])
    clips = [Clip("match1_100_124", start=5)]
    dataset = build_clip_dataset(clips, root=tree.root, modalities=("rgb",), mode="eval")
    ours = dataset[0]["rgb"]
    reference = fork.fork_teacher_inputs(stage, tree.root, "match1_100_124", 5, NUM_FRAMES)["rgb"]
    assert ours.shape == reference.shape == (3, NUM_FRAMES, 224, 384)
    assert torch.allclose(ours, reference, atol=1e-5)
