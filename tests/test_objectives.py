"""Distillation and masked-autoencoding objectives, trained by the real loop on tiny data."""
import copy

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from context_factories import cpu_context
from mmdistill.data.device_batches import finish_batch
from mmdistill.data.masking import token_indices

from mmdistill.models.decoder import MaskedAutoencoder
from mmdistill.models.heads import StudentWithHeads, cmt_head
from mmdistill.models.vit import video_vit
from mmdistill.train.loop import train
from mmdistill.train.objectives import Distillation, MaskedAutoencoding, feature_loss
from mmdistill.train.targets import normalized_patch_targets, patchify, unpatchify

TINY = dict(num_frames=4, img_size=(32, 32), patch_size=16, tubelet_size=2, embed_dim=32,
            depth=1, num_heads=2)
GRID_TOKENS = 2 * 2 * 2


class FixedClips(Dataset):
    """Deterministic multi-modal clips with a shared tube mask (half the tokens hidden)."""

    def __init__(self, n=8, channels=None):
        self.channels = channels or {"rgb": 3, "flow": 2, "skeleton": 5}
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        item = {m: torch.randn(c, 4, 32, 32, generator=g) for m, c in self.channels.items()}
        spatial = torch.zeros(4, dtype=torch.bool)
        spatial[torch.randperm(4, generator=g)[:2]] = True
        item["mask"] = spatial.repeat(2)
        item["index"] = i
        return item


def test_normalised_target_of_a_known_patch():
    video = torch.zeros(1, 1, 2, 16, 16)
    video[0, 0] = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 16, 16)
    target = normalized_patch_targets(video, tubelet=2, patch=16)
    values = torch.arange(512, dtype=torch.float64)
    expected = (values - values.mean()) / (values.std(unbiased=True) + 1e-6)
    assert target.shape == (1, 1, 512)
    torch.testing.assert_close(target[0, 0].double(), expected, rtol=0, atol=1e-5)


def test_patchify_follows_token_order_and_inverts():
    video = torch.randn(2, 3, 4, 32, 48)
    patches = patchify(video, 2, 16)
    assert patches.shape == (2, 2 * 2 * 3, 2 * 16 * 16, 3)
    # token t*Hp*Wp + h*Wp + w holds the pixels of tubelet (t, h, w)
    t, h, w = 1, 1, 2
    token = t * 2 * 3 + h * 3 + w
    block = video[0, :, 2 * t:2 * t + 2, 16 * h:16 * h + 16, 16 * w:16 * w + 16]
    torch.testing.assert_close(patches[0, token], block.permute(1, 2, 3, 0).reshape(-1, 3))
    assert torch.equal(unpatchify(patches, video.shape, 2, 16), video)


def _distillation(feature="tokens"):
    torch.manual_seed(0)
    teachers = {"rgb": video_vit(in_chans=3, **TINY), "flow": video_vit(in_chans=2, **TINY),
                "skeleton": video_vit(in_chans=5, **{**TINY, "embed_dim": 48, "num_heads": 3})}
    student = copy.deepcopy(teachers["rgb"])
    heads = {m: cmt_head(32, t.embed_dim) for m, t in teachers.items()}
    return Distillation(StudentWithHeads(student, heads, feature=feature), teachers)


def test_distillation_lowers_loss_and_never_touches_teachers(tmp_path):
    objective = _distillation()
    before = {k: v.clone() for k, v in objective.teachers.state_dict().items()}
    loader = DataLoader(FixedClips(), batch_size=4)
    ctx = cpu_context(tmp_path)
    first = objective(finish_batch(next(iter(loader)), "cpu"))["loss"].item()
    train(objective, loader, ctx, epochs=6, lr=0.05, scale_lr=False, warmup_epochs=0, log_every=1)
    last = ctx.logger.series("train/loss")[-1][1]
    assert last < 0.7 * first, (first, last)
    after = objective.teachers.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad for p in objective.teachers.parameters())
    keys = set(objective.trainable_modules().state_dict())
    assert any(k.startswith("student.") for k in keys) and "heads.skeleton.fc2.weight" in keys
    assert not any(k.startswith("teachers.") for k in keys)
    for part in ("train/loss_rgb", "train/loss_flow", "train/loss_skeleton"):
        assert ctx.logger.series(part)


def test_distillation_on_pooled_features_and_other_losses():
    objective = _distillation(feature="pooled")
    batch = finish_batch(next(iter(DataLoader(FixedClips(), batch_size=2))), "cpu")
    out = objective(batch)
    assert set(out) == {"loss", "loss_rgb", "loss_flow", "loss_skeleton"}
    a, b = torch.randn(3, 5), torch.randn(3, 5)
    assert feature_loss("cosine", a, a).abs() < 1e-6
    assert feature_loss("smooth_l1", a, b) > 0


def test_teachers_stay_in_eval_mode():
    objective = _distillation()
    objective.train()
    assert objective.trainable.training and not any(t.training for t in objective.teachers.values())


def test_masked_autoencoding_lowers_reconstruction_loss(tmp_path):
    torch.manual_seed(0)
    encoder = video_vit(in_chans=2, **TINY)
    objective = MaskedAutoencoding(MaskedAutoencoder(encoder, decoder_dim=32, decoder_depth=1),
                                   modality="flow")
    loader = DataLoader(FixedClips(channels={"flow": 2}), batch_size=4)
    ctx = cpu_context(tmp_path)
    first = objective(finish_batch(next(iter(loader)), "cpu"))["loss"].item()
    train(objective, loader, ctx, epochs=8, lr=0.02, scale_lr=False, warmup_epochs=0, log_every=1,
          betas=(0.9, 0.95))
    last = ctx.logger.series("train/loss")[-1][1]
    assert last < 0.8 * first, (first, last)
    keys = set(objective.trainable_modules().state_dict())
    assert {"mask_token", "encoder_to_decoder.weight", "decoder.head.weight"} <= keys
    assert objective.arch()["encoder"]["in_chans"] == 2


def test_student_copies_a_teacher_whose_position_table_was_resampled():
    from mmdistill.stages import _copy_teacher_into

    teacher = video_vit(in_chans=3, **{**TINY, "img_size": (32, 48)})
    teacher.use_sincos_table_of((2, 2, 2))  # as load_pretrained does for a 32x32 checkpoint
    student = video_vit(in_chans=3, **{**TINY, "img_size": (32, 48)})
    _copy_teacher_into(student, {"rgb": teacher}, "rgb")
    assert torch.equal(student.pos_embed, teacher.pos_embed)
    x = torch.randn(1, 3, 4, 32, 48)
    torch.testing.assert_close(student(x)[1], teacher(x)[1])


def test_pooled_head_at_evaluation_is_the_head_of_the_pooled_feature():
    from mmdistill.models.heads import PooledHead

    model = video_vit(in_chans=3, **{**TINY, "use_mean_pooling": True})
    head = cmt_head(32, 16)
    tokens, pooled = model(torch.randn(2, 3, 4, 32, 32))
    view = PooledHead(head, model.fc_norm)(tokens).mean(dim=1)
    torch.testing.assert_close(view, head(pooled))


class HalfBadClips(FixedClips):
    """Clips 4-7 are bad (None, as on_bad_clip='skip' gives): one whole batch of 4 is empty."""

    def __getitem__(self, i):
        return None if 4 <= i < 8 else super().__getitem__(i)


def test_a_batch_with_every_clip_bad_is_skipped_not_trained_on(tmp_path):
    from mmdistill.data.dataset import collate_clips

    objective = _distillation()
    loader = DataLoader(HalfBadClips(n=12), batch_size=4, collate_fn=collate_clips)
    ctx = cpu_context(tmp_path)
    summary = train(objective, loader, ctx, epochs=2, lr=0.01, scale_lr=False, warmup_epochs=0,
                    log_every=1)
    epochs = [m for _, m in ctx.logger.history if "train/epoch_skipped_clips" in m]
    assert [m["train/epoch_skipped_clips"] for m in epochs] == [4, 4]
    assert summary["train/nonfinite_steps"] == 0
    assert all(torch.isfinite(p).all() for p in objective.trainable.parameters())


def test_masked_autoencoder_selects_tokens_as_the_bool_mask_does():
    """The index-based selection (one host sync) reproduces VideoMAE's bool-mask composition:
    encoder on the visible tokens, then [visible + their positions, mask token + the masked
    positions] through the decoder."""
    torch.manual_seed(0)
    model = MaskedAutoencoder(video_vit(in_chans=2, **TINY), decoder_dim=32, decoder_depth=1).eval()
    clips = FixedClips(channels={"flow": 2})
    x = torch.stack([clips[0]["flow"], clips[1]["flow"]])
    mask = torch.stack([clips[0]["mask"], clips[1]["mask"].roll(1)])  # two different masks
    visible_index, masked_index = token_indices(mask)
    with torch.no_grad():
        visible, _ = model.encoder(x, visible_index)
        visible = model.encoder_to_decoder(visible)
        pos = model.decoder.pos_embed.expand(2, -1, -1)
        dim = visible.shape[-1]
        tokens = torch.cat([visible + pos[~mask].reshape(2, -1, dim),
                            model.mask_token + pos[mask].reshape(2, -1, dim)], dim=1)
        expected = model.decoder(tokens, int(mask[0].sum()))
        torch.testing.assert_close(model(x, visible_index, masked_index), expected, rtol=0, atol=0)


def test_a_teacher_on_another_token_grid_is_refused_under_a_shared_mask():
    """The student's visible-token index would pick the wrong tokens of such a teacher."""
    torch.manual_seed(0)
    student = video_vit(in_chans=3, **TINY)
    teachers = {"skeleton": video_vit(in_chans=5, **{**TINY, "patch_size": 8})}  # 4x the tokens
    objective = Distillation(StudentWithHeads(student, {"skeleton": cmt_head(32, 32)}), teachers)
    batch = finish_batch(next(iter(DataLoader(FixedClips(channels={"rgb": 3, "skeleton": 5}), batch_size=2))), "cpu")
    with pytest.raises(ValueError, match="skeleton teacher has 32 tokens a clip, the student 8"):
        objective(batch)
    with pytest.raises(ValueError, match=r"n <= N = 8"):
        student(batch["rgb"], torch.zeros(2, 9, dtype=torch.long))


def test_the_device_stage_turns_the_mask_into_the_indices_the_objectives_take():
    """finish_batch turns the tube mask into the visible-token index (the forward's one host
    sync), and the forward on it gives the losses of selecting every model's tokens by the bool
    mask."""
    objective = _distillation().eval()
    batch = next(iter(DataLoader(FixedClips(), batch_size=2)))
    prepared = finish_batch(batch, "cpu")
    assert prepared["visible_index"].dtype == torch.long
    assert prepared["visible_index"].shape == (2, GRID_TOKENS // 2)
    assert "mask" not in prepared and prepared["masked_index"].shape == (2, GRID_TOKENS // 2)
    assert batch["mask"].dtype == torch.bool  # the caller's batch is left alone
    again = finish_batch(prepared, "cpu")  # a finished batch has nothing left to finish
    assert again.keys() == prepared.keys() and all(again[k] is prepared[k] for k in again)
    with torch.no_grad():
        direct, via_index = _losses_by_bool_mask(objective, batch), objective(prepared)
    for key, value in direct.items():
        torch.testing.assert_close(via_index[key], value, rtol=0, atol=0)


def _losses_by_bool_mask(objective, batch):
    """The distillation losses with every model's tokens selected by the bool mask itself."""
    mask = batch["mask"]

    def encode(model, x):  # the visible blocks cut out by the mask, then embedded, as the model does
        blocks = model.patch_embed.blocks(x).flatten(1, 3).flatten(2)
        blocks = blocks[~mask].reshape(x.shape[0], -1, blocks.shape[-1])
        positions = model.pos_embed.expand(x.shape[0], -1, -1)[~mask].reshape(x.shape[0], -1, model.embed_dim)
        tokens = model.patch_embed.project(blocks) + positions
        for block in model.blocks:
            tokens = block(tokens)
        return model.norm(tokens)

    student_tokens = encode(objective.trainable.student, batch["rgb"])
    result, total = {}, 0.0
    for name, teacher in objective.teachers.items():
        pred = objective.trainable.heads[name](student_tokens)
        part = feature_loss("mse", pred, encode(teacher, batch[name]))
        result[f"loss_{name}"] = part
        total = total + part
    result["loss"] = total
    return result


def test_objectives_refuse_a_batch_that_skipped_the_device_stage():
    """A bool 'mask' left in the batch would otherwise mean an unmasked forward, silently."""
    batch = next(iter(DataLoader(FixedClips(), batch_size=2)))
    for objective in (_distillation(), _mae()):
        with pytest.raises(ValueError, match="still holds the bool tube mask.*DeviceBatches"):
            objective(batch)
    unmasked = finish_batch({k: v for k, v in batch.items() if k != "mask"}, "cpu")
    with pytest.raises(KeyError, match="needs a tube mask.*pretrain.mask_ratio"):
        _mae()(unmasked)
    assert set(_distillation()(unmasked)) == {"loss", "loss_rgb", "loss_flow", "loss_skeleton"}
    other_grid = finish_batch({**batch, "mask": torch.zeros(2, 12, dtype=torch.bool)}, "cpu")
    with pytest.raises(ValueError, match="tube mask covers 12 tokens a clip, the model has 8"):
        _distillation()(other_grid)


def _mae():
    torch.manual_seed(0)
    return MaskedAutoencoding(MaskedAutoencoder(video_vit(in_chans=2, **TINY), decoder_dim=32,
                                                decoder_depth=1), modality="flow")


def test_prepared_batches_compile_into_one_graph_without_host_syncs():
    """What TrainStep passes a compiled forward (a batch finished by the device stage) holds no
    graph break, so train.compile_mode='reduce-overhead' can capture it as CUDA graphs; finishing
    the raw batch inside the compiled function would break it at the mask's host sync."""
    distill, mae = _distillation(), _mae()
    batch = next(iter(DataLoader(FixedClips(), batch_size=2)))
    for objective in (distill, mae):
        explained = torch._dynamo.explain(objective)(finish_batch(batch, "cpu"))
        assert explained.graph_break_count == 0, explained.break_reasons
    assert torch._dynamo.explain(lambda raw: distill(finish_batch(raw, "cpu")))(batch).graph_break_count > 0
    video, mask = batch["flow"], batch["mask"]
    by_bool = normalized_patch_targets(video, tubelet=2, patch=16)[mask].reshape(2, -1, 2 * 16 * 16 * 2)
    with torch.no_grad():
        by_index = mae.trainable(video, *token_indices(mask)).float()
        torch.testing.assert_close(mae(finish_batch(batch, "cpu"))["loss"],
                                   torch.nn.functional.mse_loss(by_index, by_bool), rtol=0, atol=0)
    torch.testing.assert_close(mae.targets(video, token_indices(mask)[1]), by_bool)
