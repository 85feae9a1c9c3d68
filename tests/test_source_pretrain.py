"""Stage-1 pretraining: recon_source + lambda_ce * CE (+ weighted recon_target), the action head,
and starting a 2- or 17-channel encoder from 3-channel weights."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ckpt_factories as cf
from mmdistill.data.masking import TubeMaskGenerator, token_indices
from mmdistill.ckpt.reading import ArchitectureMismatchError
from mmdistill.models.decoder import MaskedAutoencoder
from mmdistill.models.heads import ActionHead
from mmdistill.ckpt.loading import initialise_mae
from mmdistill.models.vit import VideoViT
from mmdistill.train.objectives import MaskedAutoencoding
from mmdistill.train.targets import normalized_patch_targets

TINY = dict(num_frames=4, img_size=(32, 32), patch_size=16, tubelet_size=2, embed_dim=32,
            depth=1, num_heads=2)


def _mae(in_chans=3, classes=2, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    encoder = VideoViT(in_chans=in_chans, **TINY)
    head = ActionHead(32, classes, dropout=dropout) if classes else None
    return MaskedAutoencoder(encoder, decoder_dim=16, decoder_depth=1, action_head=head)


def _batch(n=4, in_chans=3, seed=0, target=True):
    g = torch.Generator().manual_seed(seed)
    masks = torch.stack([torch.from_numpy(TubeMaskGenerator((2, 2, 2), 0.5)(
        np.random.default_rng(seed * 100 + i))) for i in range(n)])
    visible, masked = token_indices(masks)
    batch = {"source_rgb": torch.randn(n, in_chans, 4, 32, 32, generator=g),
             "source_label": torch.arange(n) % 2, "visible_index": visible, "masked_index": masked}
    if target:
        batch["rgb"] = torch.randn(n, in_chans, 4, 32, 32, generator=g)
    return batch


def _hand_loss(model, batch, lambda_ce, weight):
    """The stage-1 loss written out: MSE to normalised masked tubelets, CE of the head on the
    pooled visible tokens, computed apart from the objective's code."""
    vis, msk = batch["visible_index"], batch["masked_index"]

    def recon(video):
        pred = model(video, vis, msk)
        target = normalized_patch_targets(video, 2, 16)
        target = torch.gather(target, 1, msk[:, :, None].expand(-1, -1, target.shape[-1]))
        return ((pred - target) ** 2).mean()

    tokens, _ = model.encoder(batch["source_rgb"], vis)
    head = model.action_head
    logits = head.head(F.layer_norm(tokens.mean(1), (32,), head.fc_norm.weight,
                                    head.fc_norm.bias, eps=1e-6))
    log_p = logits - logits.logsumexp(-1, keepdim=True)
    ce = -log_p[torch.arange(len(logits)), batch["source_label"]].mean()
    return recon(batch["source_rgb"]), ce, recon(batch["rgb"])


@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_the_loss_is_recon_source_plus_lambda_ce_and_the_weighted_target(weight):
    model = _mae().eval()
    objective = MaskedAutoencoding(model, source=True, target=True, lambda_ce=0.05,
                                   target_recon_weight=weight)
    batch = _batch()
    out = objective(batch)
    with torch.no_grad():
        recon_s, ce, recon_t = _hand_loss(model, batch, 0.05, weight)
    torch.testing.assert_close(out["loss_recon_source"], recon_s)
    torch.testing.assert_close(out["loss_ce"], ce)
    torch.testing.assert_close(out["loss_recon_target"], recon_t)
    torch.testing.assert_close(out["loss"].detach(), recon_s + 0.05 * ce + weight * recon_t)
    assert not out["metric_source_acc"].requires_grad and 0 <= float(out["metric_source_acc"]) <= 1


def _grads(objective, batch):
    objective.trainable.zero_grad()
    objective(batch)["loss"].backward()
    return {k: p.grad.clone() for k, p in objective.trainable.named_parameters()
            if p.grad is not None}


def test_the_target_reconstruction_is_logged_but_not_trained_on_at_weight_0():
    model = _mae().eval()
    with_target = MaskedAutoencoding(model, source=True, target=True, lambda_ce=0.05)
    source_only = MaskedAutoencoding(model, source=True, target=False, lambda_ce=0.05)
    batch = _batch()
    out = with_target(batch)
    assert float(out["loss_recon_target"]) > 0
    a = _grads(with_target, batch)
    b = _grads(source_only, {k: v for k, v in batch.items() if k != "rgb"})
    assert a.keys() == b.keys() and any(k.startswith("action_head.") for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    weighted = MaskedAutoencoding(model, source=True, target=True, lambda_ce=0.05,
                                  target_recon_weight=0.5)
    c = _grads(weighted, batch)
    assert not torch.allclose(c["encoder.blocks.0.mlp.fc1.weight"],
                              a["encoder.blocks.0.mlp.fc1.weight"])


def test_without_a_source_the_objective_is_plain_masked_autoencoding():
    model = _mae(classes=0)
    batch = _batch()
    out = MaskedAutoencoding(model)(batch)
    assert set(out) == {"loss"}
    with torch.no_grad():
        vis, msk = batch["visible_index"], batch["masked_index"]
        target = normalized_patch_targets(batch["rgb"], 2, 16)
        target = torch.gather(target, 1, msk[:, :, None].expand(-1, -1, target.shape[-1]))
        torch.testing.assert_close(out["loss"].detach(),
                                   ((model(batch["rgb"], vis, msk) - target) ** 2).mean())
    with pytest.raises(ValueError, match="both False"):
        MaskedAutoencoding(model, source=False, target=False)
    with pytest.raises(ValueError, match="action head"):
        MaskedAutoencoding(model, source=True)


def test_the_action_head_learns_a_separable_toy_task():
    """Two classes that differ only in mean intensity: the head reaches 100% within steps."""
    model = _mae(dropout=0.5)
    objective = MaskedAutoencoding(model, source=True, target=False, lambda_ce=1.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = _batch(n=8, target=False)
    labels = batch["source_label"]
    batch["source_rgb"] = batch["source_rgb"] * 0.3 + (labels.float() * 2 - 1)[:, None, None, None, None]
    first = objective(batch)
    for _ in range(40):
        out = objective(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    model.eval()
    final = objective(batch)
    assert float(final["metric_source_acc"]) == 1.0
    assert float(final["loss_ce"]) < 0.5 * float(first["loss_ce"])


def test_the_action_head_is_saved_and_recorded_but_a_teacher_loads_the_encoder_only(tmp_path):
    from mmdistill.ckpt.loading import build_from_checkpoint, load_pretrained

    model = _mae(classes=3)
    objective = MaskedAutoencoding(model, source=True, lambda_ce=0.05)
    assert objective.arch()["action_head"] == {"in_dim": 32, "num_classes": 3, "dropout": 0.0}
    state = model.state_dict()
    assert {"action_head.fc_norm.weight", "action_head.head.weight"} <= set(state)
    path = tmp_path / "stage1.ckpt"
    torch.save({"format": "mmdistill", "version": 1, "model": state, "arch": objective.arch()}, path)
    teacher = VideoViT(in_chans=3, **TINY)
    report = load_pretrained(teacher, path)
    assert report.prefix == "encoder." and not report.skipped
    assert {"action_head.head.weight", "action_head.fc_norm.bias"} <= set(report.dropped)
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, state["encoder." + key])
    rebuilt, _ = build_from_checkpoint(path)
    assert rebuilt.embed_dim == 32 and rebuilt.in_chans == 3


# --- initial weights from a checkpoint -----------------------------------------------------------

def _official_rgb_pth(tmp_path):
    """A 3-channel pretraining model saved like an official VideoMAE .pth (encoder. + decoder.)."""
    source = _mae(classes=0, seed=7)
    path = cf.write_official_pth(tmp_path / "rgb.pth", source.state_dict())
    return source, path


def test_same_channels_load_everything_strictly(tmp_path):
    source, path = _official_rgb_pth(tmp_path)
    model = _mae(classes=2)
    report = initialise_mae(model, path)
    ours = model.state_dict()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(ours[key], value)
    assert report.decoder_loaded == len([k for k in ours if not k.startswith(("encoder.", "action_head."))])
    assert set(report.not_copied) == {k for k in ours if k.startswith("action_head.")}


@pytest.mark.parametrize("chans", [2, 17])
def test_strict_refuses_another_channel_count_and_names_the_option(tmp_path, chans):
    _, path = _official_rgb_pth(tmp_path)
    with pytest.raises(ArchitectureMismatchError, match="pretrain.init_patch_embed"):
        initialise_mae(_mae(in_chans=chans), path)


@pytest.mark.parametrize("chans", [2, 17])
def test_reinit_keeps_the_fresh_patch_embedding_and_decoder_head_and_lists_them(tmp_path, chans):
    source, path = _official_rgb_pth(tmp_path)
    model = _mae(in_chans=chans, classes=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = initialise_mae(model, path, patch_embed="reinit")
    after, file = model.state_dict(), source.state_dict()
    fresh = {"encoder.patch_embed.proj.weight", "encoder.patch_embed.proj.bias",
             "decoder.head.weight", "decoder.head.bias"}
    for key in fresh:
        assert torch.equal(after[key], before[key]) and key in report.not_copied
    for key in set(file) - fresh:
        torch.testing.assert_close(after[key], file[key])
    assert set(report.not_copied) == fresh | {k for k in after if k.startswith("action_head.")}
    assert "re-initialised" in str(report) and "decoder.head.weight" in str(report)


@pytest.mark.parametrize("chans", [2, 17])
def test_channel_mean_keeps_the_response_to_a_constant_input(tmp_path, chans):
    source, path = _official_rgb_pth(tmp_path)
    model = _mae(in_chans=chans, classes=0)
    report = initialise_mae(model, path, patch_embed="channel_mean")
    old, new = source.encoder.patch_embed.proj, model.encoder.patch_embed.proj
    torch.testing.assert_close(new.weight, old.weight.mean(1, keepdim=True).repeat(1, chans, 1, 1, 1)
                               * 3 / chans)
    torch.testing.assert_close(new.bias, old.bias)
    constant = torch.full((1, 3, 2, 16, 16), 0.7)
    torch.testing.assert_close(new(constant[:, :1].expand(-1, chans, -1, -1, -1)), old(constant),
                               atol=1e-4, rtol=1e-4)
    assert set(report.not_copied) == {"decoder.head.weight", "decoder.head.bias"}
    assert "channel mean" in report.patch_embed


def test_a_checkpoint_without_decoder_leaves_it_at_init_and_says_so(tmp_path):
    encoder = VideoViT(in_chans=3, **TINY)
    path = cf.write_official_pth(tmp_path / "enc.pth",
                                 {f"encoder.{k}": v for k, v in encoder.state_dict().items()})
    model = _mae(classes=0)
    report = initialise_mae(model, path)
    assert report.decoder_loaded == 0
    assert all("no decoder" in why for why in report.not_copied.values())
    assert {"decoder.head.weight", "mask_token", "encoder_to_decoder.weight"} <= set(report.not_copied)


def test_a_decoder_of_another_width_is_refused(tmp_path):
    _, path = _official_rgb_pth(tmp_path)
    torch.manual_seed(0)
    wide = MaskedAutoencoder(VideoViT(in_chans=3, **TINY), decoder_dim=32, decoder_depth=1)
    with pytest.raises(ValueError, match="mae.decoder_dim"):
        initialise_mae(wide, path)
