"""distill_data.epoch_length='source': MM-CDFSL's distillation epoch has len(source list) items
(datamodule/dataset/ego4d_unlabel_combined_multimodal_dataset.py:240-241), item i reading target
clip `index % len(target)` (:212) of a target list reshuffled at each epoch start
(models/lit_MMDistillTrainer.py:134-150)."""
import json
from collections import Counter

import gin
import pytest

from mmdistill.data.cycled import CycledClips, distill_epoch_length
from mmdistill.data.dataset import build_loader
from mmdistill.data.device_batches import heatmap_drawer


class _Clips:
    """Records the (epoch, index) key each item was drawn with."""

    def __init__(self, n):
        self.n, self.epoch = n, 0

    def __len__(self):
        return self.n

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, key):
        return {"key": key}

    def finish_on_device(self, batch):
        return batch


def test_items_cycle_the_clips_in_a_per_epoch_order():
    n, length = 3, 8
    data = CycledClips(_Clips(n), length, seed=1)
    assert len(data) == length
    orders = []
    for epoch in range(4):
        order = list(data.order(epoch))
        assert sorted(order) == list(range(n))
        clips = [data[(epoch, i)]["key"][1] for i in range(length)]
        assert clips == [order[i % n] for i in range(length)]  # target index = i mod N
        assert set(Counter(clips).values()) <= {length // n, -(-length // n)}
        orders.append(tuple(order))
    assert len(set(orders)) > 1  # reshuffled across epochs
    assert list(CycledClips(_Clips(n), length, seed=1).order(2)) == list(orders[2])  # resumable


def test_a_clip_met_twice_draws_fresh_randomness():
    data = CycledClips(_Clips(3), 7, seed=0)
    keys = [data[(epoch, i)]["key"] for epoch in range(3) for i in range(7)]
    assert len(set(keys)) == len(keys)


def test_the_loader_sees_the_cycled_length_and_the_device_finisher():
    data = CycledClips(_Clips(3), 10, seed=0)
    loader = build_loader(data, batch_size=2, num_workers=0, shuffle=True)
    assert len(loader) == 5
    assert heatmap_drawer(data) is not None


def _source_list(tmp_path):
    rows = [{"video": f"clip{i}", "video_id": "bad" if i < 2 else "ok", "label": "a"}
            for i in range(9)]
    path = tmp_path / "ego4d_train.json"
    path.write_text(json.dumps(rows))
    return path


def test_source_length_counts_the_source_list_after_its_exclude_list(tmp_path):
    path = _source_list(tmp_path)
    gin.clear_config()
    try:
        assert distill_epoch_length() is None
        gin.parse_config([f"source/clip_data.annotations = '{path}'",
                          "source/clip_annotations.exclude = {'video_id': ['bad']}"])
        assert distill_epoch_length("source") == 7
    finally:
        gin.clear_config()


def test_source_length_without_a_source_list_and_bad_values_are_refused():
    gin.clear_config()
    with pytest.raises(ValueError, match="bind source/clip_data.annotations"):
        distill_epoch_length("source")
    with pytest.raises(ValueError, match="distill_data.epoch_length='ego4d'.*'target'.*'source'"):
        distill_epoch_length("ego4d")


def test_the_distillation_loader_cycles_real_clips(tmp_path):
    """stages._train_loader with an epoch length: real clips, masks and the device finisher."""
    import data_factories as df
    from context_factories import cpu_context
    from mmdistill.data.device_batches import finish_batch
    from mmdistill.stages import _train_loader

    target = df.make_dataset(tmp_path / "target", videos=("t0", "t1", "t2"), num_frames=6,
                             size=(32, 32))
    gin.clear_config()
    try:
        gin.parse_config([f"unlabeled/clip_data.annotations = '{target['annotations']}'",
                          "temporal_sampling.num_frames = 4", "temporal_sampling.sampling_rate = 1",
                          "spatial_transform.short_side = None",
                          "spatial_transform.crop_size = (32, 32)",
                          "data_loader.batch_size = 2", "data_loader.num_workers = 0"])
        loader = _train_loader(cpu_context(tmp_path / "run"), ["rgb"], (2, 2, 2), 0.5, {},
                               epoch_length=8)
        assert isinstance(loader.dataset, CycledClips) and len(loader) == 4
        batches = [finish_batch(b, "cpu", heatmap_drawer(loader.dataset)) for b in loader]
    finally:
        gin.clear_config()
    videos = [v for b in batches for v in b["video"]]
    assert sorted(Counter(videos).values()) == [2, 3, 3]
    assert all(b["rgb"].shape == (2, 3, 4, 32, 32) and "visible_index" in b for b in batches)
