"""Every on-disk format reads back what was written; every bad input is refused by name."""
import os
import pickle

import numpy as np
import pytest

from data_factories import (random_skeleton, smooth_frames, write_flow_array, write_flow_jpeg, write_flow_pairs,
                            write_frames, write_skeleton_pickle, write_video)
from mmdistill.data.flow_sources import FlowArraySource, FlowFrameSource, FlowJpegSource
from mmdistill.data.skeleton_source import SkeletonSource, load_plain_pickle
from mmdistill.data.sources import BadClipError, FrameFolderSource, VideoFileSource

RNG = np.random.default_rng(0)


def test_png_frames_round_trip_exactly(tmp_path):
    frames = RNG.integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8)
    write_frames(tmp_path, "clip/a", frames, "img/{video}/f{frame:03d}.png", first_frame=0)
    source = FrameFolderSource("img/{video}/f{frame:03d}.png", root=tmp_path, first_frame=0)
    assert source.num_frames("clip/a") == 5
    np.testing.assert_array_equal(source.read("clip/a", [4, 0, 2]), frames[[4, 0, 2]])


def test_jpeg_frames_round_trip_one_based(tmp_path):
    frames = smooth_frames(RNG, 4, (16, 24))
    paths = write_frames(tmp_path, "v", frames)
    assert paths[0].name == "000001.jpg"
    read = FrameFolderSource(root=tmp_path).read("v", [0, 3])
    assert read.dtype == np.uint8 and read.shape == (2, 16, 24, 3)
    assert np.abs(read.astype(int) - frames[[0, 3]]).mean() < 3


def test_video_file_round_trip(tmp_path):
    frames = np.stack([np.full((32, 64, 3), 20 * i, dtype=np.uint8) for i in range(8)])
    write_video(tmp_path / "walk" / "w1.mp4", frames)
    source = VideoFileSource(root=tmp_path)
    assert source.num_frames("walk/w1") == 8
    read = source.read("walk/w1", [6, 1])
    assert read.shape == (2, 32, 64, 3)
    assert abs(read[0].mean() - 120) < 6 and abs(read[1].mean() - 20) < 6


def test_flow_pairs_round_trip_and_last_frame_reuses_last_pair(tmp_path):
    flows = RNG.normal(size=(3, 2, 5, 6)).astype(np.float32)
    write_flow_pairs(tmp_path, "v", flows, dtype=np.float32)
    source = FlowFrameSource(root=tmp_path)
    assert source.num_frames("v") == 4
    read = source.read("v", [0, 2, 3])
    assert read.shape == (3, 2, 5, 6) and read.dtype == np.float32
    np.testing.assert_array_equal(read, flows[[0, 2, 2]])


@pytest.mark.parametrize("name, compressed", [("v.npy", False), ("v.npz", False), ("v.npz", True)])
def test_flow_array_round_trip(tmp_path, name, compressed):
    flows = RNG.normal(size=(4, 2, 5, 6)).astype(np.float16)
    write_flow_array(tmp_path / "flows" / name, flows, compressed=compressed)
    source = FlowArraySource("flows/{video}" + name[1:], root=tmp_path)
    assert source.num_frames("v") == 5
    np.testing.assert_array_equal(source.read("v", [1, 4]), flows[[1, 3]])
    if not compressed:
        assert isinstance(source._array("v"), np.memmap)


def test_flow_array_with_last_frame_included(tmp_path):
    write_flow_array(tmp_path / "flows" / "v.npy", np.zeros((4, 2, 3, 3), np.float32))
    assert FlowArraySource(root=tmp_path, includes_last_frame=True).num_frames("v") == 4


def test_flow_jpeg_round_trip_within_quantisation(tmp_path):
    flows = RNG.uniform(-15, 15, size=(2, 2, 8, 8)).astype(np.float32)
    flows[:] = flows.mean(axis=(2, 3), keepdims=True)  # flat fields survive JPEG unchanged
    write_flow_jpeg(tmp_path, "v", flows, bound=20)
    read = FlowJpegSource(root=tmp_path, bound=20).read("v", [0, 1])
    assert read.shape == (2, 2, 8, 8) and np.abs(read - flows).max() <= 40 / 255 + 1e-5


def test_skeleton_pickle_round_trip(tmp_path):
    xy, score = random_skeleton(RNG, 2, 6, (40, 50))
    write_skeleton_pickle(tmp_path / "skeletons" / "v.pkl", xy, score, (40, 50))
    source = SkeletonSource(root=tmp_path)
    assert source.num_frames("v") == 6
    read = source.read("v", [5, 0])
    np.testing.assert_array_equal(read.xy, xy[:, [5, 0]])
    np.testing.assert_array_equal(read.score, score[:, [5, 0]])
    assert read.img_shape == (40, 50)


def test_skeleton_single_person_and_plain_arrays(tmp_path):
    xy, score = random_skeleton(RNG, 1, 4, (10, 10))
    write_skeleton_pickle(tmp_path / "a.pkl", xy[0], score[0], (10, 10))
    np.testing.assert_array_equal(SkeletonSource("{video}.pkl", tmp_path).read("a", [1]).xy, xy[:, [1]])
    np.save(tmp_path / "b.npy", np.concatenate([xy[0], score[0, ..., None]], axis=-1))
    read = SkeletonSource("{video}.npy", tmp_path).read("b", [2])
    np.testing.assert_array_equal(read.score, score[:, [2]])
    assert read.img_shape is None
    np.savez(tmp_path / "c.npz", keypoint=xy, keypoint_score=score, img_shape=np.array([10, 10]))
    assert SkeletonSource("{video}.npz", tmp_path).read("c", [0]).img_shape == (10, 10)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch):
    path = tmp_path / "skeletons" / "evil.pkl"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps({"keypoint": _Exploit()}))
    monkeypatch.chdir(tmp_path)  # restored after the test: later tests run from the repository
    with pytest.raises(BadClipError, match=r"refused to load (posix|os)\.system.*only numpy arrays"):
        SkeletonSource(root=tmp_path).read("evil", [0])
    assert not (tmp_path / "PWNED").exists()


def test_restricted_unpickler_accepts_plain_data(tmp_path):
    data = {"a": np.arange(3, dtype=np.float16), "b": [1, (2.5, "x")], "c": {1, 2}, "d": np.float32(1.5)}
    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        loaded = load_plain_pickle(path)
        np.testing.assert_array_equal(loaded["a"], data["a"])
        assert loaded["b"] == data["b"] and loaded["c"] == data["c"] and loaded["d"] == data["d"]


# ---- bad input: each case names the file (or folder) and what was expected ----

def _frames_dir(tmp_path, count=4):
    write_frames(tmp_path, "v", smooth_frames(RNG, count, (8, 8)))
    return FrameFolderSource(root=tmp_path)


def test_missing_frames_folder(tmp_path):
    with pytest.raises(BadClipError, match=r"folder .*frames/nope does not exist.*rgb_frames.template"):
        FrameFolderSource(root=tmp_path).num_frames("nope")


def test_gap_in_frames_is_a_missing_frame(tmp_path):
    source = _frames_dir(tmp_path)
    (tmp_path / "frames" / "v" / "000003.jpg").unlink()
    with pytest.raises(BadClipError, match=r"missing files \['000003.jpg'\]"):
        source.num_frames("v")


def test_frame_deleted_after_counting(tmp_path):
    source = _frames_dir(tmp_path)
    source.num_frames("v")
    (tmp_path / "frames" / "v" / "000002.jpg").unlink()
    with pytest.raises(BadClipError, match=r"missing frame file .*000002.jpg"):
        source.read("v", [1])


def test_corrupt_and_truncated_images(tmp_path):
    source = _frames_dir(tmp_path)
    (tmp_path / "frames" / "v" / "000001.jpg").write_bytes(b"not a jpeg")
    good = (tmp_path / "frames" / "v" / "000002.jpg").read_bytes()
    (tmp_path / "frames" / "v" / "000002.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(BadClipError, match=r"unreadable or corrupt image .*000001.jpg"):
        source.read("v", [0])
    with pytest.raises(BadClipError, match=r"unreadable or corrupt image .*000002.jpg"):
        source.read("v", [1])


def test_frame_index_past_end(tmp_path):
    with pytest.raises(BadClipError, match=r"frame index 4 is past the end \(the video has 4 frames"):
        _frames_dir(tmp_path).read("v", [0, 4])


def test_missing_and_corrupt_video(tmp_path):
    source = VideoFileSource(root=tmp_path)
    with pytest.raises(BadClipError, match=r"missing video file .*gone.mp4"):
        source.num_frames("gone")
    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 50)
    with pytest.raises(BadClipError, match=r"unreadable or corrupt video .*bad.mp4"):
        source.num_frames("bad")


def test_missing_and_misshapen_flow(tmp_path):
    write_flow_pairs(tmp_path, "v", np.zeros((3, 2, 4, 4)))
    source = FlowFrameSource(root=tmp_path)
    with pytest.raises(BadClipError, match=r"flow of video 'w': folder .*flows/w does not exist"):
        source.num_frames("w")
    np.save(tmp_path / "flows" / "v" / "pair_00002.npy", np.zeros((3, 4, 4), np.float32))
    with pytest.raises(BadClipError, match=r"pair_00002.npy has shape \(3, 4, 4\).*expected a float array \(2, H, W\)"):
        source.read("v", [1])
    np.save(tmp_path / "flows" / "v" / "pair_00003.npy", np.full((2, 4, 4), np.nan, np.float32))
    with pytest.raises(BadClipError, match=r"pair_00003.npy contains NaN"):
        source.read("v", [2])
    write_flow_array(tmp_path / "arr" / "v.npy", np.zeros((3, 4, 4), np.float32))
    with pytest.raises(BadClipError, match=r"v.npy has shape \(3, 4, 4\).*\(frame pairs, 2, H, W\)"):
        FlowArraySource("arr/{video}.npy", tmp_path).num_frames("v")


@pytest.mark.parametrize("change, message", [
    ({"keypoint_score": None}, r"lacks keys \['keypoint_score'\]"),
    ({"img_shape": None}, r"lacks keys \['img_shape'\]"),
    ({"keypoint": np.zeros((1, 3, 13, 2), np.float32), "keypoint_score": np.ones((1, 3, 13), np.float32)},
     r"has 13 joints, expected 17"),
    ({"keypoint": np.zeros((1, 3, 17, 3), np.float32)}, r"keypoint has shape \(1, 3, 17, 3\)"),
    ({"keypoint_score": np.ones((1, 2, 17), np.float32)}, r"keypoint_score has shape \(1, 2, 17\)"),
    ({"total_frames": 5}, r"total_frames=5 but keypoint holds 3 frames"),
    ({"keypoint_score": np.full((1, 3, 17), 2.0, np.float32)}, r"within \[0, 1\]"),
    ({"keypoint": np.full((1, 3, 17, 2), np.nan, np.float32)}, r"NaN/inf coordinates on joints with score > 0"),
])
def test_bad_skeletons(tmp_path, change, message):
    data = {"keypoint": np.zeros((1, 3, 17, 2), np.float32), "keypoint_score": np.ones((1, 3, 17), np.float32),
            "img_shape": (8, 8), "total_frames": None}
    data.update(change)
    write_skeleton_pickle(tmp_path / "skeletons" / "v.pkl", **data)
    with pytest.raises(BadClipError, match=message) as info:
        SkeletonSource(root=tmp_path).read("v", [0])
    assert "v.pkl" in str(info.value)


def test_missing_and_corrupt_skeleton(tmp_path):
    source = SkeletonSource(root=tmp_path)
    with pytest.raises(BadClipError, match=r"missing skeleton file .*skeletons/v.pkl"):
        source.num_frames("v")
    (tmp_path / "skeletons").mkdir()
    (tmp_path / "skeletons" / "v.pkl").write_bytes(b"\x80\x04junk")
    with pytest.raises(BadClipError, match=r"unreadable or corrupt pickle"):
        source.num_frames("v")


def test_absent_joints_with_nan_are_neutralised(tmp_path):
    xy = np.full((1, 2, 17, 2), np.nan, np.float32)
    write_skeleton_pickle(tmp_path / "skeletons" / "v.pkl", xy, np.zeros((1, 2, 17), np.float32), (8, 8))
    read = SkeletonSource(root=tmp_path).read("v", [0, 1])
    assert np.isfinite(read.xy).all() and not read.score.any()


def test_bad_templates_fail_at_configuration():
    with pytest.raises(ValueError, match=r"must use exactly the fields \['frame', 'video'\]"):
        FrameFolderSource("frames/{video}/{index:06d}.jpg")
    with pytest.raises(ValueError, match="frame number must be in the file name"):
        FrameFolderSource("frames/{video}/{frame}/img.jpg")


def test_zero_based_files_with_one_based_template(tmp_path):
    write_frames(tmp_path, "v", smooth_frames(RNG, 3, (8, 8)), first_frame=0)
    with pytest.raises(BadClipError, match=r"file numbered 0, below rgb_frames.first_frame=1"):
        FrameFolderSource(root=tmp_path).num_frames("v")
    assert FrameFolderSource(root=tmp_path, first_frame=0).num_frames("v") == 3
