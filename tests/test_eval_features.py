import dataclasses

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from mmdistill.eval.features import (MASKED, POOLED, FeatureBank, dataset_fingerprint,
                                     extract_features, feature_cache_key, file_fingerprint,
                                     weights_fingerprint)


class TinyVideoModel(nn.Module):
    """Stand-in with the VideoViT contract: (B, C, T, H, W), visible_index (B, n) -> (tokens, pooled)."""

    def __init__(self, dim=8, frames=4, size=16, tubelet=2, patch=8):
        super().__init__()
        self.proj = nn.Conv3d(3, dim, (tubelet, patch, patch), stride=(tubelet, patch, patch))
        self.fc_norm = nn.LayerNorm(dim)
        self.grid_size = (frames // tubelet, size // patch, size // patch)
        self.forwards = 0  # clips seen, to prove features are computed once

    def forward(self, x, visible_index=None):
        self.forwards += x.shape[0]
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        if visible_index is not None:
            tokens = torch.gather(tokens, 1, visible_index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        return tokens, self.fc_norm(tokens.mean(1))


@dataclasses.dataclass(frozen=True)
class FakeClip:
    video: str
    label: str


class TinyClips(torch.utils.data.Dataset):
    """In-memory labelled clips shaped like ClipDataset items."""

    def __init__(self, per_class=(3, 2, 4), seed=0, label=None):
        g = torch.Generator().manual_seed(seed)
        self.class_names = [f"class_{c}" for c in range(len(per_class))]
        self.labels = [c for c, n in enumerate(per_class) for _ in range(n)]
        if label is not None:
            self.labels[-1] = label
        self.clips = [FakeClip(f"v{i}", str(c)) for i, c in enumerate(self.labels)]
        self.rgb = torch.randn(len(self.labels), 3, 4, 16, 16, generator=g)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"rgb": self.rgb[i], "label": self.labels[i], "index": i, "video": f"v{i}"}


def test_pooled_view_is_the_model_feature_of_each_clip_in_dataset_order():
    torch.manual_seed(0)
    model, data = TinyVideoModel(), TinyClips()
    loader = DataLoader(data, batch_size=4, shuffle=True,
                        generator=torch.Generator().manual_seed(1))
    bank = extract_features(model, loader, progress=False)
    with torch.no_grad():
        expected = model(data.rgb)[1]
    assert bank.indices.tolist() == list(range(9))
    assert bank.labels.tolist() == data.labels
    assert bank.class_names == data.class_names
    assert torch.allclose(bank.views[POOLED], expected, atol=1e-5)
    assert model.forwards == 9 + 9  # one pass per clip (+ the reference pass above)


def test_masked_views_are_fixed_per_clip_and_view_whatever_the_batching():
    torch.manual_seed(0)
    model, data = TinyVideoModel(), TinyClips()
    a = extract_features(model, DataLoader(data, batch_size=2), mask_views=3, mask_ratio=0.5,
                         seed=7, progress=False)
    b = extract_features(model, DataLoader(data, batch_size=9), mask_views=3, mask_ratio=0.5,
                         seed=7, progress=False)
    c = extract_features(model, DataLoader(data, batch_size=9), mask_views=3, mask_ratio=0.5,
                         seed=8, progress=False)
    assert a.views[MASKED].shape == (3, 9, 8)
    assert torch.allclose(a.views[MASKED], b.views[MASKED], atol=1e-5)
    assert not torch.allclose(a.views[MASKED], c.views[MASKED])  # the seed matters
    masked = a.views[MASKED]
    assert not torch.allclose(masked[0], masked[1])  # views differ from each other
    assert not torch.allclose(masked[0], a.views[POOLED])  # and from the unmasked clip


def test_a_masked_view_is_the_model_on_the_tokens_its_tube_mask_leaves_visible():
    from mmdistill.eval.features import tube_mask_fn

    model, data = TinyVideoModel(), TinyClips()
    bank = extract_features(model, DataLoader(data, batch_size=4), mask_views=2, mask_ratio=0.5,
                            seed=3, progress=False)
    mask = tube_mask_fn(model.grid_size, 0.5, 3)(1, torch.arange(9))  # view 1 of every clip
    with torch.no_grad():
        tokens = model.proj(data.rgb).flatten(2).transpose(1, 2)
        expected = model.fc_norm(tokens[~mask].reshape(9, -1, 8).mean(1))
    torch.testing.assert_close(bank.views[MASKED][1], expected, rtol=0, atol=1e-6)


def test_a_batch_whose_clips_were_all_bad_is_counted_and_skipped():
    from mmdistill.data.dataset import collate_clips

    class SomeBad(TinyClips):
        def __getitem__(self, i):
            return None if i < 4 else super().__getitem__(i)

    bank = extract_features(TinyVideoModel(), DataLoader(SomeBad(), batch_size=4,
                                                          collate_fn=collate_clips), progress=False)
    assert bank.num_skipped == 4 and bank.indices.tolist() == [4, 5, 6, 7, 8]


def test_head_views_average_the_head_over_tokens():
    torch.manual_seed(0)
    model, data = TinyVideoModel(), TinyClips()
    head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 5))
    bank = extract_features(model, DataLoader(data, batch_size=4), extra_heads={"flow": head},
                            progress=False)
    with torch.no_grad():
        expected = head(model(data.rgb)[0]).mean(1)
    assert torch.allclose(bank.views["cmt_flow"], expected, atol=1e-5)
    assert bank.head_views == ["cmt_flow"]


def test_models_are_evaluated_in_eval_mode_and_restored():
    model, data = TinyVideoModel(), TinyClips()
    modes = []
    model.register_forward_hook(lambda m, i, o: modes.append(m.training))
    model.train()
    extract_features(model, DataLoader(data, batch_size=4), progress=False)
    assert modes and not any(modes)
    assert model.training


def test_unlabelled_clip_is_refused_with_its_name():
    data = TinyClips(label=-1)
    with pytest.raises(ValueError, match="unlabelled.*v8"):
        extract_features(TinyVideoModel(), DataLoader(data, batch_size=9), progress=False)


def test_autocast_bfloat16_gives_float32_features_close_to_fp32():
    torch.manual_seed(0)
    model, data = TinyVideoModel(), TinyClips()
    full = extract_features(model, DataLoader(data, batch_size=9), progress=False)
    half = extract_features(model, DataLoader(data, batch_size=9), amp_dtype=torch.bfloat16,
                            progress=False)
    assert half.views[POOLED].dtype == torch.float32
    assert torch.allclose(full.views[POOLED], half.views[POOLED], atol=0.1)


def test_cache_round_trip_and_key_refusal(tmp_path):
    model, data = TinyVideoModel(), TinyClips()
    bank = extract_features(model, DataLoader(data, batch_size=4), progress=False)
    bank.key = "abc"
    bank.save(tmp_path / "f.pt")
    loaded = FeatureBank.load(tmp_path / "f.pt", key="abc")
    assert torch.equal(loaded.views[POOLED], bank.views[POOLED])
    assert loaded.class_names == bank.class_names and loaded.config == bank.config
    with pytest.raises(ValueError, match="another checkpoint"):
        FeatureBank.load(tmp_path / "f.pt", key="other")
    torch.save({"something": 1}, tmp_path / "g.pt")
    with pytest.raises(ValueError, match="not a mmdistill feature cache"):
        FeatureBank.load(tmp_path / "g.pt")


def test_cache_key_changes_with_weights_data_and_views(tmp_path):
    ckpt = tmp_path / "student.pt"
    ckpt.write_bytes(b"weights-1")
    data = TinyClips()
    views = {"mask_views": 0}
    base = feature_cache_key(file_fingerprint(ckpt), dataset_fingerprint(data), views)
    assert base == feature_cache_key(file_fingerprint(ckpt), dataset_fingerprint(data), views)
    assert base != feature_cache_key(file_fingerprint(ckpt), dataset_fingerprint(data),
                                     {"mask_views": 2})
    other_data = dataset_fingerprint(TinyClips((3, 3, 3)))
    assert base != feature_cache_key(file_fingerprint(ckpt), other_data, views)
    ckpt.write_bytes(b"weights-22")  # retrained: new size and mtime
    assert base != feature_cache_key(file_fingerprint(ckpt), dataset_fingerprint(data), views)
    a, b = TinyVideoModel(), TinyVideoModel()
    assert weights_fingerprint([a]) != weights_fingerprint([b])
    b.load_state_dict(a.state_dict())
    assert weights_fingerprint([a]) == weights_fingerprint([b])


def test_restrict_classes_keeps_rows_of_those_classes_relabelled():
    model, data = TinyVideoModel(), TinyClips()
    bank = extract_features(model, DataLoader(data, batch_size=4), progress=False)
    sub = bank.restrict_classes(["class_2", "class_0"])
    assert sub.class_names == ["class_2", "class_0"]
    assert sub.labels.tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert torch.equal(sub.views[POOLED], bank.views[POOLED][[0, 1, 2, 5, 6, 7, 8]])
    with pytest.raises(ValueError, match="not in this feature bank"):
        bank.restrict_classes(["nope"])


def test_dataset_fingerprint_changes_with_the_transforms(tmp_path):
    from mmdistill.data.annotations import Clip
    from mmdistill.data.dataset import ClipDataset
    from mmdistill.data.sources import FrameFolderSource
    from mmdistill.data.transforms import SpatialTransform
    from mmdistill.eval.features import dataset_fingerprint

    clips = [Clip("v", label="a")]
    source = FrameFolderSource(root=tmp_path)
    a = ClipDataset(clips, {"rgb": source}, mode="eval", spatial=SpatialTransform(crop_size=(32, 32)))
    b = ClipDataset(clips, {"rgb": source}, mode="eval", spatial=SpatialTransform(crop_size=(32, 48)))
    c = ClipDataset(clips, {"rgb": source}, mode="eval", spatial=SpatialTransform(crop_size=(32, 32)))
    assert dataset_fingerprint(a) != dataset_fingerprint(b)
    assert dataset_fingerprint(a) == dataset_fingerprint(c)
