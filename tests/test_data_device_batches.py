"""The device stage: every loader batch reaches models on the device, heatmaps drawn, the tube
mask as the token indices models take (computed once), and nothing else changed."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mmdistill.data.dataset import collate_clips
from mmdistill.data.device_batches import DeviceBatches, finish_batch, finish_item
from mmdistill.data.masking import TubeMaskGenerator

GRID = (2, 3, 4)  # 24 tokens


class MaskedClips(Dataset):
    """Clips with a tube mask each (half the positions hidden), like a training ClipDataset's."""

    def __init__(self, n=6):
        self.n, self.generator = n, TubeMaskGenerator(GRID, 0.5)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"rgb": torch.full((3, 4, 8, 8), float(i)),
                "mask": torch.from_numpy(self.generator(np.random.default_rng(i))),
                "label": i % 2, "video": f"v{i}", "index": i}


def test_every_batch_comes_finished_with_the_mask_as_token_indices():
    loader = DataLoader(MaskedClips(), batch_size=4, collate_fn=collate_clips)
    batches = DeviceBatches(loader, "cpu")
    assert len(batches) == len(loader) == 2
    for raw, finished in zip(loader, batches):
        assert "mask" not in finished
        visible, masked = finished["visible_index"], finished["masked_index"]
        assert visible.dtype == masked.dtype == torch.long
        assert visible.shape == masked.shape == (raw["rgb"].shape[0], 12)
        for row in range(visible.shape[0]):
            assert torch.equal(visible[row], (~raw["mask"][row]).nonzero().flatten())
            assert torch.equal(masked[row], raw["mask"][row].nonzero().flatten())
        for key in ("rgb", "label", "index"):
            assert torch.equal(finished[key], raw[key])
        assert finished["video"] == raw["video"] and finished["num_skipped"] == 0


def test_keypoints_without_a_dataset_to_draw_them_are_refused():
    batch = {"skeleton_keypoints": torch.zeros(1, 1, 4, 17, 3)}
    with pytest.raises(ValueError, match=r"keypoints \['skeleton_keypoints'\].*heatmap_drawer"):
        finish_batch(batch, "cpu")


def test_a_batch_whose_clips_were_all_bad_passes_through():
    assert finish_batch({"num_skipped": 4}, "cpu") == {"num_skipped": 4}


def test_one_item_is_finished_as_a_batch_of_one():
    item = MaskedClips()[3]
    finished = finish_item(item, MaskedClips())
    assert torch.equal(finished["visible_index"], (~item["mask"]).nonzero().flatten())
    assert torch.equal(finished["rgb"], item["rgb"]) and finished["label"] == 1
    assert "mask" in item  # the caller's item is left alone


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batches_land_on_the_gpu_from_pinned_memory():
    loader = DataLoader(MaskedClips(), batch_size=4, collate_fn=collate_clips, pin_memory=True)
    batch = next(iter(DeviceBatches(loader, "cuda")))
    assert batch["rgb"].is_cuda and batch["visible_index"].is_cuda and batch["masked_index"].is_cuda
    raw = next(iter(loader))
    assert raw["rgb"].is_pinned()
    torch.testing.assert_close(batch["rgb"].cpu(), raw["rgb"], rtol=0, atol=0)


def test_loader_wait_counts_the_time_spent_waiting_for_the_loader():
    import time

    class SlowClips(MaskedClips):
        def __getitem__(self, i):
            time.sleep(0.05)
            return super().__getitem__(i)

    batches = DeviceBatches(DataLoader(SlowClips(n=8), batch_size=4, collate_fn=collate_clips), "cpu")
    assert batches.loader_wait == 0.0
    assert len(list(batches)) == 2
    assert batches.loader_wait >= 8 * 0.05


def test_asking_for_the_batches_starts_the_loader_before_the_first_one_is_taken():
    """The training loop asks for the next epoch's batches during this epoch's last step so the
    workers load them meanwhile: that only helps if asking already starts the loader."""
    started = []

    class Recording(DataLoader):
        def __iter__(self):
            started.append(True)
            return super().__iter__()

    loader = Recording(MaskedClips(), batch_size=2, collate_fn=collate_clips)
    batches = iter(DeviceBatches(loader, "cpu"))
    assert started == [True]  # before any next()
    assert len(list(batches)) == 3 and started == [True]
