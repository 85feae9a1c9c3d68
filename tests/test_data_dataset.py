"""The dataset contract (docs/INTERFACES.md), its determinism, the skip policy and the loader."""
import gin
import numpy as np
import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from data_factories import make_dataset, random_skeleton, write_json, write_skeleton_pickle, write_video
from mmdistill.data.annotations import AnnotationError, Clip
from mmdistill.data.dataset import ClipDataset, build_clip_dataset, build_loader, collate_clips, set_epoch
from mmdistill.data.device_batches import finish_batch, finish_item, heatmap_drawer
from mmdistill.data.masking import TubeMaskGenerator
from mmdistill.data.skeleton_source import SkeletonSource
from mmdistill.data.sources import BadClipError, FrameFolderSource
from mmdistill.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SpatialTransform, TemporalSampler

SMALL = dict(temporal=TemporalSampler(num_frames=4, sampling_rate=2),
             spatial=SpatialTransform(short_side=None, crop_size=(16, 16)))


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path, videos=("v0", "v1", "v2", "v3"), labels=("walk", "jump"), events_per_video=2,
                        flow_size=(12, 16), skeleton_shape=(48, 64))


def small_dataset(data, **kwargs):
    gin.parse_config(["spatial_transform.short_side = None", "spatial_transform.crop_size = (16, 16)",
                      "temporal_sampling.num_frames = 4"])
    return build_clip_dataset(data["annotations"], **kwargs)


def test_item_contract(data):
    dataset = small_dataset(data, mask=TubeMaskGenerator((2, 2, 2), 0.5), mode="eval")
    assert len(dataset) == 8 and dataset.class_names == ["jump", "walk"] and dataset.num_classes == 2
    item = dataset[3]
    assert item["rgb"].shape == (3, 4, 16, 16) and item["rgb"].dtype == torch.float32
    assert item["flow"].shape == (2, 4, 16, 16) and item["skeleton"].shape == (17, 4, 16, 16)
    assert item["mask"].dtype == torch.bool and item["mask"].shape == (8,) and item["mask"].sum() == 4
    assert (item["video"], item["start"], item["index"]) == ("v1", 1, 3)
    assert dataset.class_names[item["label"]] == dataset.clips[3].label
    assert dataset.labels.tolist() == [dataset.class_names.index(c.label) for c in dataset.clips]


def test_rgb_is_imagenet_normalised_centre_crop(data):
    item = small_dataset(data, modalities=["rgb"], mode="eval")[0]
    frames = data["frames"]["v0"][[0, 2, 4, 6], 4:20, 8:24] / 255.0  # 24x32 -> centre 16x16
    expected = (frames - IMAGENET_MEAN) / IMAGENET_STD
    assert np.abs(item["rgb"].numpy().transpose(1, 2, 3, 0) - expected).mean() < 0.05


def test_same_item_for_same_seed_epoch_index_and_new_draws_per_epoch(data):
    dataset = small_dataset(data, mask=TubeMaskGenerator((2, 2, 2), 0.5))
    first = dataset[(0, 5)]
    again = dataset[(0, 5)]
    assert all(torch.equal(first[key], again[key]) for key in ("rgb", "flow", "skeleton", "mask"))
    later = [dataset[(epoch, 5)] for epoch in range(1, 6)]
    assert any(not torch.equal(first["rgb"], item["rgb"]) for item in later)
    assert any(not torch.equal(first["mask"], item["mask"]) for item in later)
    dataset.set_epoch(3)
    assert torch.equal(dataset[5]["rgb"], later[2]["rgb"])


def test_rgb_only_dataset_gets_the_same_crop_and_mask(data):
    full = small_dataset(data, mask=TubeMaskGenerator((2, 2, 2), 0.5))[(2, 1)]
    rgb_only = small_dataset(data, modalities=["rgb"], mask=TubeMaskGenerator((2, 2, 2), 0.5))[(2, 1)]
    assert torch.equal(full["rgb"], rgb_only["rgb"]) and torch.equal(full["mask"], rgb_only["mask"])


def test_loader_output_does_not_depend_on_workers_and_follows_epochs(data):
    dataset = small_dataset(data, mask=TubeMaskGenerator((2, 2, 2), 0.5))
    runs = {}
    for workers in (0, 2):
        loader = build_loader(dataset, batch_size=3, shuffle=True, num_workers=workers, drop_last=False, seed=7)
        assert isinstance(loader.sampler, DistributedSampler)
        batches = []
        for epoch in (0, 1):
            set_epoch(loader, epoch)
            batches += list(loader)
        runs[workers] = batches
    assert len(runs[0]) == 6
    for serial, parallel in zip(runs[0], runs[2]):
        assert serial["index"].tolist() == parallel["index"].tolist()
        assert torch.equal(serial["rgb"], parallel["rgb"]) and torch.equal(serial["mask"], parallel["mask"])
    assert runs[0][0]["index"].tolist() != runs[0][3]["index"].tolist()  # reshuffled in epoch 1


def test_ranks_split_the_data(data):
    dataset = small_dataset(data)
    seen = [set(int(i) for batch in build_loader(dataset, 2, True, 0, False, seed=1, rank=rank, world_size=2)
                for i in batch["index"]) for rank in (0, 1)]
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(8))


def test_bad_clip_error_names_clip_and_file(data, tmp_path):
    (tmp_path / "flows" / "v2" / "pair_00003.npy").unlink()
    dataset = small_dataset(data)
    with pytest.raises(BadClipError, match=r"clip #4 \(video 'v2'.*missing files \['pair_00003.npy'\]"):
        dataset[4]


def test_skip_policy_drops_and_counts(data, tmp_path):
    (tmp_path / "skeletons" / "v1.pkl").unlink()
    dataset = small_dataset(data, on_bad_clip="skip")
    loader = build_loader(dataset, batch_size=4, shuffle=False, num_workers=0, drop_last=False, seed=0)
    batches = list(loader)
    assert sum(batch["num_skipped"] for batch in batches) == 2 == dataset.num_skipped
    assert sorted(int(i) for batch in batches for i in batch["index"]) == [0, 1, 4, 5, 6, 7]
    assert collate_clips([None, None]) == {"num_skipped": 2}


def test_skip_policy_drops_bad_annotation_entries(tmp_path):
    make_dataset(tmp_path)
    path = write_json(tmp_path / "a.json", [{"video": "v0", "events": [{"frame": 0, "label": "a"}, {"label": "b"}]}])
    with pytest.raises(AnnotationError, match="needs the field 'frame'"):
        build_clip_dataset(path)
    assert len(build_clip_dataset(path, on_bad_clip="skip")) == 1


def test_modalities_must_agree_on_frame_count(tmp_path):
    data = make_dataset(tmp_path, videos=("v0",))
    (tmp_path / "frames" / "v0" / "000012.jpg").unlink()
    with pytest.raises(BadClipError, match=r"disagree on its number of frames \{'rgb': 11, 'flow': 12"):
        small_dataset(data)[0]
    assert small_dataset(data, frame_counts="min")[0]["rgb"].shape[1] == 4


def test_label_rules(tmp_path):
    root = tmp_path
    sources = {"rgb": FrameFolderSource(root=root)}
    with pytest.raises(AnnotationError, match="1 of 2 clips have no label"):
        ClipDataset([Clip("a", label="x"), Clip("b")], sources)
    unlabelled = ClipDataset([Clip("a", label="x"), Clip("b")], sources, labeled=False)
    assert unlabelled.labels.tolist() == [-1, -1] and unlabelled.class_names == []
    fixed = ClipDataset([Clip("a", label="x")], sources, class_names=["y", "x"])
    assert fixed.labels.tolist() == [1]
    with pytest.raises(AnnotationError, match="not among the given class_names"):
        ClipDataset([Clip("a", label="z")], sources, class_names=["x"])


def test_gin_describes_a_dataset(data, tmp_path):
    gin.parse_config(f"""
        clip_data.annotations = '{data["annotations"]}'
        clip_data.mean = {{'skeleton': [0.5]}}
        clip_data.std = {{'skeleton': [0.25]}}
        temporal_sampling.num_frames = 2
        spatial_transform.short_side = 32
        spatial_transform.crop_size = (32, 32)
        skeleton_pickle.num_joints = 17
        skeleton_heatmaps.sigma = 1.5
    """)
    dataset = build_clip_dataset(modalities=['rgb', 'skeleton'], mode='eval')  # the stage's part
    item = dataset[0]
    assert item["rgb"].shape == (3, 2, 32, 32) and item["skeleton"].shape == (17, 2, 32, 32)
    assert item["skeleton"].min() == pytest.approx(-2.0, abs=1e-3)  # (0 - 0.5) / 0.25 away from joints
    assert dataset.heatmaps.sigma == 1.5 and isinstance(dataset.sources["skeleton"], SkeletonSource)


def test_class_folder_videos(tmp_path):
    for label in ("run", "walk"):
        write_video(tmp_path / label / f"{label}1.mp4", np.full((6, 32, 64, 3), 128, np.uint8))
    gin.parse_config(["spatial_transform.short_side = 32", "spatial_transform.crop_size = (32, 32)",
                      "temporal_sampling.num_frames = 4"])
    dataset = build_clip_dataset(tmp_path, modalities=["rgb"], mode="eval")
    item = dataset[1]
    assert item["video"] == "walk/walk1" and dataset.class_names[item["label"]] == "walk"
    assert item["rgb"].shape == (3, 4, 32, 32)


@pytest.mark.parametrize("modalities, channels", [(["flow"], 2), (["skeleton"], 17), (["flow", "skeleton"], 2)])
def test_any_modality_subset(data, modalities, channels):
    # Without RGB the clip is planned on the flow's frames (12x16 here), else the skeleton's img_shape.
    gin.parse_config(["temporal_sampling.num_frames = 4", "spatial_transform.short_side = None",
                      "spatial_transform.crop_size = (8, 8)"])
    item = build_clip_dataset(data["annotations"], modalities=modalities)[0]
    assert set(item) == set(modalities) | {"label", "video", "start", "index"}
    assert item[modalities[0]].shape == (channels, 4, 8, 8)


@pytest.mark.parametrize("stride", [1, 2])
def test_heatmaps_drawn_on_the_device_equal_the_loaders(data, tmp_path, stride):
    """render_on='device': the loader ships keypoints (padded to the batch's person count) and
    the device stage draws and normalises them; the result is the loader-drawn batch, at the
    crop's size or 1/stride of it (flips included: the training crops flip at random)."""
    xy, score = random_skeleton(np.random.default_rng(5), 2, 12, (48, 64))  # v1 has two persons
    write_skeleton_pickle(data["annotations"].parent / "skeletons" / "v1.pkl", xy, score, (48, 64))
    normalised = dict(mean={"skeleton": [0.1]}, std={"skeleton": [0.5]}, mask=TubeMaskGenerator((2, 2, 2), 0.5))
    gin.parse_config([f"skeleton_heatmaps.stride = {stride}"])
    on_loader = small_dataset(data, **normalised)
    gin.parse_config(["skeleton_heatmaps.render_on = 'device'"])
    on_device = small_dataset(data, **normalised)
    assert on_device.heatmaps.render_on == "device"
    reference = next(iter(build_loader(on_loader, batch_size=4, shuffle=False, num_workers=0, drop_last=False)))
    shipped = next(iter(build_loader(on_device, batch_size=4, shuffle=False, num_workers=0, drop_last=False)))
    assert "skeleton" not in shipped and shipped["skeleton_keypoints"].shape == (4, 2, 4, 17, 3)
    assert shipped["skeleton_keypoints"][0, 1, ..., 2].abs().sum() == 0  # v0's padded person
    assert torch.equal(shipped["mask"], reference["mask"])
    finished = finish_batch(shipped, "cpu", heatmap_drawer(on_device))
    reference = finish_batch(reference, "cpu", heatmap_drawer(on_loader))
    assert "skeleton_keypoints" not in finished
    crop = on_loader.spatial.crop_size
    assert reference["skeleton"].shape[-2:] == (crop[0] // stride, crop[1] // stride)
    torch.testing.assert_close(finished["skeleton"], reference["skeleton"], rtol=0, atol=1e-5)
    for key in ("rgb", "flow", "visible_index", "masked_index", "index"):
        assert torch.equal(finished[key], reference[key])
    item = finish_item(on_device[2], on_device)
    torch.testing.assert_close(item["skeleton"], on_loader[2]["skeleton"], rtol=0, atol=1e-5)


def test_few_shot_features_of_a_skeleton_model_from_a_keypoint_loader(data):
    """Feature extraction draws what a render_on='device' loader left as keypoints."""
    from mmdistill.eval.features import extract_features
    from mmdistill.models.vit import video_vit
    torch.manual_seed(0)
    model = video_vit(in_chans=17, num_frames=4, img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2)
    banks = {}
    for where in ("loader", "device"):
        gin.clear_config()
        gin.parse_config([f"skeleton_heatmaps.render_on = '{where}'"])
        dataset = small_dataset(data, modalities=["skeleton"], mode="eval")
        loader = build_loader(dataset, batch_size=4, shuffle=False, num_workers=0, drop_last=False)
        banks[where] = extract_features(model, loader, input_key="skeleton", progress=False)
    torch.testing.assert_close(banks["device"].views["pooled"], banks["loader"].views["pooled"],
                               rtol=0, atol=1e-5)
