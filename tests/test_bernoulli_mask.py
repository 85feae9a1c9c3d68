"""The tennis fork's distillation mask as an option (distill.mask_type = 'bernoulli'): each token
hidden with probability mask_ratio, one mask per clip shared by every model
(datamodule/dataset/tennis_unlabel_combined_multimodal_dataset.py:179-184, :247-250 at a9d8a78).

Visible counts then differ between the clips of a batch. The fork pads the shorter rows with zero
tokens that its blocks attend to and its mean includes (models/modeling_pretrain.py:204-212, and
the classifier's mean, models/videomae_classifier.py:218-219). Here the padding is marked invalid:
no token attends to it and the mean leaves it out, so every clip's features equal the ones it
gets alone in a batch of one. That is what these tests check.
"""
import copy

import numpy as np
import pytest
import torch

from mmdistill.data.device_batches import finish_batch
from mmdistill.data.masking import (BernoulliMaskGenerator, batch_token_indices, mask_generator,
                                    token_indices)
from mmdistill.models.decoder import MaskedAutoencoder
from mmdistill.models.heads import StudentWithHeads, cmt_head
from mmdistill.models.vit import video_vit
from mmdistill.stages import build_distillation
from mmdistill.train.objectives import Distillation, MaskedAutoencoding

TINY = dict(num_frames=4, img_size=(32, 48), patch_size=16, tubelet_size=2, embed_dim=32,
            depth=2, num_heads=2)  # 12 tokens a clip


def test_each_token_is_hidden_independently_with_the_ratio():
    generator = BernoulliMaskGenerator((8, 14, 24), 0.75)
    masks = np.stack([generator(np.random.default_rng(seed)) for seed in range(20)])
    assert masks.shape == (20, 2688) and masks.dtype == bool
    assert abs(masks.mean() - 0.75) < 0.01
    assert len({int(m.sum()) for m in masks}) > 1  # counts vary from clip to clip
    slices = masks[0].reshape(8, 336)
    assert (slices != slices[0]).any()  # not a tube: each time slice draws its own
    again = generator(np.random.default_rng(3))
    assert (again == masks[3]).all()


def test_a_clip_always_keeps_a_visible_token():
    generator = BernoulliMaskGenerator((1, 1, 2), 0.999)
    assert all((~generator(np.random.default_rng(seed))).sum() >= 1 for seed in range(50))


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.1])
def test_bad_ratio_is_refused_with_the_fix(ratio):
    with pytest.raises(ValueError, match=r"within \(0, 1\).*0\.75"):
        BernoulliMaskGenerator((2, 2, 2), ratio)


def test_unknown_mask_type_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="'tube'.*'bernoulli'"):
        mask_generator("random", (2, 2, 2), 0.75)


@pytest.mark.parametrize("bindings, match", [
    (dict(mask_type="random"), "choose 'tube'"),
    (dict(mask_type="bernoulli", mask_ratio=0.0), "mask_ratio > 0"),
    (dict(mask_type="bernoulli", mask_ratio=1.0), r"within \(0, 1\)"),
])
def test_distillation_refuses_bad_mask_settings_before_reading_teachers(bindings, match):
    with pytest.raises(ValueError, match=match):
        build_distillation(teacher_checkpoints=["/no/such/teacher"] * 3, **bindings)


def test_batch_indices_equal_counts_are_token_indices():
    mask = torch.tensor([[True, False, True, False], [False, True, True, False]])
    out = batch_token_indices(mask)
    visible, masked = token_indices(mask)
    assert set(out) == {"visible_index", "masked_index"}
    assert torch.equal(out["visible_index"], visible) and torch.equal(out["masked_index"], masked)


def test_batch_indices_ragged_rows_are_padded_and_marked():
    mask = torch.tensor([[True, False, True, False, False], [True, True, False, True, True]])
    out = batch_token_indices(mask)
    assert set(out) == {"visible_index", "visible_valid"}
    assert out["visible_index"].shape == (2, 3)
    assert out["visible_index"][0].tolist() == [1, 3, 4]
    assert out["visible_index"][1, 0].item() == 2
    assert out["visible_valid"].tolist() == [[True, True, True], [True, False, False]]
    assert mask[1, out["visible_index"][1, 1:]].all()  # the padding points at hidden tokens


def _clips(batch=3, chans=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, chans, 4, 32, 48, generator=g)


def _ragged_mask(batch=3):
    mask = torch.stack([torch.from_numpy(BernoulliMaskGenerator((2, 2, 3), 0.6)(
        np.random.default_rng(seed))) for seed in range(batch)])
    counts = (~mask).sum(1)
    assert len(set(counts.tolist())) > 1, "the seeds must give ragged counts"
    return mask


def test_each_clip_of_a_ragged_batch_gets_what_it_gets_alone():
    torch.manual_seed(0)
    model = video_vit(in_chans=3, **TINY).eval()
    x, mask = _clips(), _ragged_mask()
    out = batch_token_indices(mask)
    index, valid = out["visible_index"], out["visible_valid"]
    with torch.no_grad():
        tokens, pooled = model(x, index, valid)
        for i in range(x.shape[0]):
            alone_index = (~mask[i]).nonzero().squeeze(1)[None]
            alone_tokens, alone_pooled = model(x[i:i + 1], alone_index)
            torch.testing.assert_close(tokens[i][valid[i]], alone_tokens[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(pooled[i], alone_pooled[0], atol=1e-5, rtol=1e-5)
        # the padding, if it took part as tokens (the fork's zero padding does), changes them
        _, padded_pooled = model(x, index)
    short = int(valid.sum(1).argmin())
    assert not torch.allclose(padded_pooled[short], pooled[short], atol=1e-4)


def test_unfused_attention_masks_the_padding_the_same_way():
    torch.manual_seed(0)
    model = video_vit(in_chans=3, **TINY).eval()
    x, mask = _clips(), _ragged_mask()
    out = batch_token_indices(mask)
    with torch.no_grad():
        fused = model(x, out["visible_index"], out["visible_valid"])[1]
        for block in model.blocks:
            block.attn.fused_attn = False
        plain = model(x, out["visible_index"], out["visible_valid"])[1]
    torch.testing.assert_close(plain, fused, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("feature", ["pooled", "tokens"])
def test_distillation_loss_on_a_ragged_batch_is_the_per_clip_loss(feature):
    torch.manual_seed(0)
    teachers = {"rgb": video_vit(in_chans=3, **TINY), "flow": video_vit(in_chans=2, **TINY)}
    student = copy.deepcopy(teachers["rgb"])
    heads = {m: cmt_head(32, 32) for m in teachers}
    objective = Distillation(StudentWithHeads(student, heads, feature=feature), teachers).eval()
    x_rgb, x_flow, mask = _clips(), _clips(chans=2, seed=1), _ragged_mask()
    batch = finish_batch({"rgb": x_rgb, "flow": x_flow, "mask": mask}, "cpu")
    assert "visible_valid" in batch
    with torch.no_grad():
        loss = objective(batch)
        expected = {}
        for m, teacher in objective.teachers.items():
            preds, targets = [], []
            for i in range(3):
                index = (~mask[i]).nonzero().squeeze(1)[None]
                source = {"rgb": x_rgb, "flow": x_flow}[m][i:i + 1]
                t_tokens, t_pooled = teacher(source, index)
                s_tokens, s_pooled = student(x_rgb[i:i + 1], index)
                if feature == "pooled":
                    preds.append(heads[m](s_pooled)), targets.append(t_pooled)
                else:
                    preds.append(heads[m](s_tokens)[0]), targets.append(t_tokens[0])
            pred, target = torch.cat(preds), torch.cat(targets)
            expected[m] = ((pred - target) ** 2).mean()
    for m in teachers:
        torch.testing.assert_close(loss[f"loss_{m}"], expected[m], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(loss["loss"], sum(expected.values()), atol=1e-6, rtol=1e-5)


def test_masked_autoencoding_refuses_a_ragged_mask():
    encoder = video_vit(in_chans=3, **TINY)
    objective = MaskedAutoencoding(MaskedAutoencoder(encoder))
    batch = finish_batch({"rgb": _clips(), "mask": _ragged_mask()}, "cpu")
    with pytest.raises(ValueError, match="tube mask"):
        objective(batch)
