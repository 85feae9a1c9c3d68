"""Stage-1 pairing: source clip i with target clip perm_epoch[i mod len(target)], one tube mask
per pair, the epoch as long as the source list; both halves finished by the device stage."""
import pytest
import torch

import data_factories as df
from mmdistill.data.annotations import read_annotations
from mmdistill.data.dataset import ClipDataset, build_loader, collate_clips
from mmdistill.data.device_batches import DeviceBatches, finish_batch, heatmap_drawer
from mmdistill.data.heatmaps import HeatmapRenderer
from mmdistill.data.masking import TubeMaskGenerator
from mmdistill.data.paired import PairedClipDataset, source_seed
from mmdistill.data.skeleton_source import SkeletonSource
from mmdistill.data.sources import FrameFolderSource
from mmdistill.data.transforms import SpatialTransform, TemporalSampler

GRID = (2, 2, 2)


def _clips(root, videos, labels, render_on="loader", skeleton=False, seed=0, labeled=None):
    df.make_dataset(root, videos=videos, labels=labels, num_frames=6, size=(32, 32), seed=seed)
    sources = {"rgb": FrameFolderSource(root=root)}
    if skeleton:
        sources["skeleton"] = SkeletonSource(root=root)
    return ClipDataset(read_annotations(root / "annotations.json"), sources, mode="train",
                       temporal=TemporalSampler(4, 1), spatial=SpatialTransform(None, (32, 32)),
                       heatmaps=HeatmapRenderer(render_on=render_on), seed=seed,
                       labeled=labeled)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    source = _clips(root / "source", [f"s{i}" for i in range(7)], ("a", "b"), seed=source_seed(0))
    target = _clips(root / "target", ["t0", "t1", "t2"], ("x",), labeled=False)
    return PairedClipDataset(source, target, TubeMaskGenerator(GRID, 0.5), seed=0)


def test_the_epoch_is_the_source_list_and_targets_wrap_around(pair):
    assert len(pair) == 7 and pair.num_classes == 2
    for epoch in (0, 1):
        order = pair.pairing(epoch)
        assert sorted(order) == [0, 1, 2]
        for i in range(7):
            item = pair[(epoch, i)]
            assert item["source_video"] == f"s{i}" and item["source_index"] == i
            assert item["source_label"] == pair.source.labels[i] >= 0
            assert item["video"] == f"t{order[i % 3]}" and item["label"] == -1
            # each half is exactly its own dataset's item: its own crop, flip and frames
            assert torch.equal(item["source_rgb"], pair.source[(epoch, i)]["rgb"])
            assert torch.equal(item["rgb"], pair.target[(epoch, int(order[i % 3]))]["rgb"])


def test_pairs_reshuffle_per_epoch_and_repeat_for_the_same_seed_and_epoch(pair):
    orders = [tuple(pair.pairing(epoch)) for epoch in range(8)]
    assert len(set(orders)) > 1  # 3! orders: eight epochs cannot all draw the same one by design
    twin = PairedClipDataset(pair.source, pair.target, TubeMaskGenerator(GRID, 0.5), seed=0)
    for epoch in (0, 5):
        a, b = pair[(epoch, 4)], twin[(epoch, 4)]
        assert a["video"] == b["video"] and torch.equal(a["mask"], b["mask"])
        assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["source_rgb"], b["source_rgb"])
    other = PairedClipDataset(pair.source, pair.target, TubeMaskGenerator(GRID, 0.5), seed=1)
    assert [tuple(other.pairing(e)) for e in range(8)] != orders


def test_one_mask_per_pair_becomes_one_index_pair_for_both_halves(pair):
    items = [pair[(0, i)] for i in range(4)]
    for item in items:
        assert "source_mask" not in item and item["mask"].shape == (8,)
        assert int(item["mask"].sum()) == 4
    masks = torch.stack([item["mask"] for item in items])
    batch = finish_batch(collate_clips(items), "cpu", heatmap_drawer(pair))
    assert "mask" not in batch
    for row in range(4):
        assert torch.equal(batch["visible_index"][row], (~masks[row]).nonzero().flatten())
        assert torch.equal(batch["masked_index"][row], masks[row].nonzero().flatten())
    assert batch["rgb"].shape == batch["source_rgb"].shape == (4, 3, 4, 32, 32)


def test_a_mask_of_its_own_in_either_half_is_refused(pair):
    pair.target.mask_generator = TubeMaskGenerator(GRID, 0.5)
    try:
        with pytest.raises(ValueError, match="target dataset draws its own mask"):
            PairedClipDataset(pair.source, pair.target, TubeMaskGenerator(GRID, 0.5))
    finally:
        pair.target.mask_generator = None


def test_without_a_target_the_item_is_the_source_and_the_mask(pair):
    alone = PairedClipDataset(pair.source, None, TubeMaskGenerator(GRID, 0.5), seed=0)
    item = alone[(0, 2)]
    assert "rgb" not in item and item["source_video"] == "s2"
    assert set(item) == {"mask"} | {f"source_{k}" for k in pair.source[(0, 2)]}


def test_heatmaps_drawn_on_the_device_for_both_halves(tmp_path):
    def both(render_on):
        source = _clips(tmp_path / render_on / "s", ["s0", "s1", "s2"], ("a", "b"),
                        render_on=render_on, skeleton=True, seed=source_seed(0))
        target = _clips(tmp_path / render_on / "t", ["t0", "t1"], ("x",), render_on=render_on,
                        skeleton=True, labeled=False)
        return PairedClipDataset(source, target, TubeMaskGenerator(GRID, 0.5), seed=0)

    on_loader, on_device = both("loader"), both("device")
    raw = on_device[(0, 1)]
    assert "skeleton_keypoints" in raw and "source_skeleton_keypoints" in raw
    loader = build_loader(on_device, batch_size=3, num_workers=0, shuffle=False, drop_last=False)
    (batch,) = list(DeviceBatches(loader, "cpu"))
    expected = collate_clips([on_loader[(0, i)] for i in range(3)])
    assert not any(key.endswith("_keypoints") for key in batch)
    for key in ("skeleton", "source_skeleton"):
        assert batch[key].shape == expected[key].shape == (3, 17, 4, 32, 32)
        torch.testing.assert_close(batch[key], expected[key], atol=1e-5, rtol=0)
    assert not torch.equal(batch["skeleton"][:2], batch["source_skeleton"][:2])
