"""rgb_frames.decode_on='device': the loader ships JPEG bytes and the spatial plan, the device
stage (here on the CPU) decodes and transforms them into what the loader path gives."""
from pathlib import Path

import gin
import numpy as np
import pytest
import torch
from data_factories import make_dataset, smooth_frames
from PIL import Image

from mmdistill.data.clip_cache import source_settings
from mmdistill.data.dataset import build_clip_dataset, build_loader
from mmdistill.data.device_batches import DeviceBatches, finish_item
from mmdistill.data.jpeg_on_device import decode_clips
from mmdistill.data.sources import BadClipError, FrameFolderSource
from mmdistill.data.transforms import IMAGENET_STD

# Normalised RGB differences back in pixel levels (0..255).
LEVELS = 255.0 * torch.tensor(IMAGENET_STD).reshape(3, 1, 1, 1)


def _dataset(annotations, decode_on, short_side, crop_size, mode="train", extra=()):
    gin.clear_config()
    gin.parse_config(["temporal_sampling.num_frames = 4", f"spatial_transform.short_side = {short_side}",
                      f"spatial_transform.crop_size = {tuple(crop_size)}", f"rgb_frames.decode_on = '{decode_on}'",
                      *extra])
    return build_clip_dataset(annotations, modalities=("rgb",), mode=mode)


def _level_differences(annotations, short_side, crop_size, epochs=(0, 1), extra=()):
    """|device - loader| in pixel levels over every clip of some epochs (finished on the CPU)."""
    loader_path = _dataset(annotations, "loader", short_side, crop_size, extra=extra)
    device_path = _dataset(annotations, "device", short_side, crop_size, extra=extra)
    differences = []
    for epoch in epochs:
        for index in range(len(loader_path)):
            want = finish_item(loader_path[(epoch, index)], loader_path)
            shipped = device_path[(epoch, index)]
            assert "rgb" not in shipped and isinstance(shipped["rgb_jpeg"], bytes)  # nothing decoded
            got = finish_item(shipped, device_path)
            assert got["rgb"].shape == want["rgb"].shape and got["rgb"].dtype == torch.float32
            differences.append((got["rgb"] - want["rgb"]).abs() * LEVELS)
    return torch.stack(differences)


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "data", videos=("v0", "v1"), num_frames=10, size=(30, 40), events_per_video=2)


def test_without_a_resize_the_device_decode_equals_the_loader(data):
    # Random crops and always a flip: decode, crop and flip land the same pixels.
    differences = _level_differences(data["annotations"], 30, (24, 32), extra=["spatial_transform.flip_prob = 1.0"])
    assert differences.max() < 1e-3


def test_chroma_subsampled_jpegs_decode_alike(tmp_path):
    # Most extracted frames are 4:2:0; the chroma upsampling must agree too.
    data = make_dataset(tmp_path / "data", videos=("v0",), num_frames=6, size=(32, 48))
    rng = np.random.default_rng(1)
    for path, frame in zip(sorted((tmp_path / "data/frames/v0").glob("*.jpg")), smooth_frames(rng, 6, (32, 48))):
        Image.fromarray(frame).save(path, quality=90, subsampling=2)
    assert _level_differences(data["annotations"], 32, (32, 40)).max() < 1e-3


# Shrinking (1.5x, 2x: cv2's INTER_AREA, a box filter) is all but exact; growing (1.5x: bilinear)
# differs by one level where cv2's fixed-point weights round otherwise (measured mean ~0.11).
@pytest.mark.parametrize("short_side, mean_levels", [(20, 0.02), (15, 0.02), (45, 0.25)])
def test_with_a_resize_the_device_path_is_within_a_level(data, short_side, mean_levels):
    differences = _level_differences(data["annotations"], short_side, (min(short_side, 30) - 4, 12))
    assert differences.max() <= 1.01
    assert differences.mean() < mean_levels


def test_a_loader_batch_is_decoded_by_the_device_stage(data):
    batches = {}
    for decode_on in ("loader", "device"):
        dataset = _dataset(data["annotations"], decode_on, 20, (16, 24))
        loader = build_loader(dataset, batch_size=2, num_workers=0, shuffle=False, pin_memory=False)
        batches[decode_on] = next(iter(DeviceBatches(loader, "cpu")))
    got, want = batches["device"], batches["loader"]
    assert got["rgb"].shape == want["rgb"].shape == (2, 3, 4, 16, 24)
    assert not [key for key in got if key.startswith("rgb_")]
    assert ((got["rgb"] - want["rgb"]).abs() * LEVELS).max() <= 1.01
    assert got["video"] == want["video"]


def test_a_truncated_jpeg_is_refused_in_the_loader_naming_it(data):
    path = Path(data["annotations"]).parent / "frames/v0/000003.jpg"
    path.write_bytes(path.read_bytes()[:200])
    dataset = _dataset(data["annotations"], "device", 30, (24, 32), mode="eval")
    with pytest.raises(BadClipError, match=r"000003\.jpg is truncated or corrupt"):
        for index in range(len(dataset)):
            dataset[index]


def test_a_frame_that_is_not_a_jpeg_is_refused_naming_it(tmp_path):
    data = make_dataset(tmp_path / "data", videos=("v0",), num_frames=6, frame_template="frames/{video}/{frame:06d}.png")
    dataset = _dataset(data["annotations"], "device", 24, (24, 32), mode="eval",
                       extra=["rgb_frames.template = 'frames/{video}/{frame:06d}.png'"])
    with pytest.raises(BadClipError, match=r"\.png is not a JPEG .*decode_on='loader'"):
        dataset[0]


def test_a_jpeg_that_fails_on_the_device_names_its_video(data):
    whole = (Path(data["annotations"]).parent / "frames/v0/000001.jpg").read_bytes()
    garbled = whole[:40] + bytes(len(whole) - 42) + b"\xff\xd9"  # markers intact, contents zeroed
    clips = [whole + whole, whole + garbled]
    offsets = torch.tensor([[0, len(whole), 2 * len(whole)], [0, len(whole), len(whole) + len(garbled)]])
    plans = torch.tensor([[30, 40, 0, 0, 30, 40, 0]] * 2)
    assert decode_clips(clips[:1], offsets[:1], plans[:1], "cpu").shape == (1, 3, 2, 30, 40)
    with pytest.raises(BadClipError, match="video 'second'"):
        decode_clips(clips, offsets, plans, "cpu", videos=["first", "second"])


def test_unsupported_settings_are_refused(data, tmp_path):
    with pytest.raises(ValueError, match="rgb_frames.decode_on='gpu'"):
        FrameFolderSource(decode_on="gpu")
    gin.clear_config()
    gin.parse_config(["rgb_frames.decode_on = 'device'"])
    with pytest.raises(ValueError, match="decode_on='device'.*clip cache.*cache_dir"):
        build_clip_dataset(data["annotations"], modalities=("rgb",), cache_dir=tmp_path / "cache")
    gin.clear_config()


def test_where_frames_decode_leaves_the_cache_key_alone():
    assert source_settings(FrameFolderSource(decode_on="device")) == source_settings(FrameFolderSource())
