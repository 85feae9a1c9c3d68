"""The checkpoint loader: parity with real implementations, every container, every refusal."""
import copy

import gin
import pytest
import torch
import torch.nn.functional as F

import ckpt_factories as cf
from mmdistill.data.masking import token_indices
from mmdistill.ckpt.reading import (ArchitectureMismatchError, CheckpointError,
                                         UntrustedCheckpointError, read_checkpoint)
from mmdistill.ckpt.loading import (build_from_checkpoint, initialise_from_checkpoint,
                                      load_pretrained)
from mmdistill.models.pos_embed import resample_pos_embed, sinusoid_table
from mmdistill.models.vit import VideoViT


def tokens(model, x, mask=None):
    """Our model's tokens for a bool tube mask, given as the index it takes."""
    with torch.no_grad():
        return model(x, None if mask is None else token_indices(mask)[0])[0]


def half_mask(batch=2, n=12):
    mask = torch.zeros(batch, n, dtype=torch.bool)
    mask[:, ::2] = True
    return mask


# ----------------------------------------------------------------------------- parity

@pytest.mark.parametrize("use_mean_pooling", [False, True])
def test_hugging_face_directory_gives_the_same_tokens(tmp_path, use_mean_pooling):
    hf = cf.hf_model(use_mean_pooling=use_mean_pooling)
    cf.write_hf_dir(tmp_path / "hf", hf)
    model = VideoViT(**cf.TINY, use_mean_pooling=use_mean_pooling)
    report = load_pretrained(model, tmp_path / "hf")
    x, mask = cf.clip(model), half_mask()
    torch.testing.assert_close(tokens(model.eval(), x), cf.hf_tokens(hf, x), rtol=0, atol=1e-5)
    torch.testing.assert_close(tokens(model, x, mask), cf.hf_tokens(hf, x, mask), rtol=0, atol=1e-5)
    assert report.format == "hf" and not report.missing and not report.unexpected
    if use_mean_pooling:  # HF's VideoMAEModel has no pooling norm at all: reported, kept at init
        assert report.kept_init == ["fc_norm.weight", "fc_norm.bias"]


def test_official_pretraining_pth_gives_the_same_tokens(tmp_path):
    hf = cf.hf_model(seed=3)
    state = cf.hf_to_official(hf.state_dict(), prefix="encoder.") | cf.decoder_state()
    path = cf.write_official_pth(tmp_path / "checkpoint-799.pth", state,
                                 args={"model": "pretrain_videomae_base_patch16_224",
                                       "num_frames": 4, "input_size": (32, 48), "mask_ratio": 0.9})
    model = VideoViT(**cf.TINY)
    report = load_pretrained(model, path)  # no prefix: the encoder is picked automatically
    x = cf.clip(model)
    torch.testing.assert_close(tokens(model.eval(), x), cf.hf_tokens(hf, x), rtol=0, atol=1e-5)
    assert report.format == "official" and report.prefix == "encoder."
    assert "decoder.head.weight" in report.dropped and "mask_token" in report.dropped
    assert "encoder_to_decoder.weight" in report.dropped


def test_build_from_checkpoint_infers_the_architecture(tmp_path):
    hf = cf.hf_model(in_chans=2)
    cf.write_hf_dir(tmp_path / "hf", hf)
    model, report = build_from_checkpoint(tmp_path / "hf")
    assert (model.in_chans, model.embed_dim, len(model.blocks), model.grid_size) == (2, 64, 2, (2, 2, 3))
    x = cf.clip(model)
    torch.testing.assert_close(tokens(model.eval(), x), cf.hf_tokens(hf, x), rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- containers

@pytest.fixture(scope="module")
def distillation():
    return cf.distillation_state(torch.float16)


@pytest.mark.parametrize("prefix, in_chans", [("student_rgb.", 3), ("teacher_rgb.", 3),
                                              ("teacher_flow.", 2), ("teacher_skeleton", 17)])
def test_deepspeed_directory_with_several_fp16_models(tmp_path, distillation, prefix, in_chans):
    state, models = distillation
    ds = cf.write_deepspeed_dir(tmp_path / "epoch=49-loss=0.6095", state)
    model = VideoViT(**cf.TINY, in_chans=in_chans)
    report = load_pretrained(model, ds, prefix=prefix)
    source = copy.deepcopy(models[next(p for p in models if p.startswith(prefix.rstrip(".") + "."))])
    source.load_state_dict({k: v.half().float() for k, v in source.state_dict().items()})  # fp16 file
    x = cf.clip(model)
    torch.testing.assert_close(tokens(model.eval(), x), tokens(source, x), rtol=0, atol=1e-5)
    assert report.format == "deepspeed" and report.cast == {"float16 -> float32": report.loaded}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    if prefix.startswith("teacher"):
        assert any(k.endswith("decoder.head.weight") for k in report.dropped)
    ckpt = read_checkpoint(ds)
    assert ckpt.metadata["epoch"] == 49 and ckpt.metadata["ds_version"] == "0.12.6"
    assert ckpt.metadata["name_fields"] == {"epoch": "49", "loss": "0.6095"}


def test_deepspeed_refusals_name_the_prefixes(tmp_path, distillation):
    state, _ = distillation
    ds = cf.write_deepspeed_dir(tmp_path / "ds", state)
    model = VideoViT(**cf.TINY)
    with pytest.raises(CheckpointError, match="several models: 'student_rgb.', 'teacher_flow.encoder.'"):
        load_pretrained(model, ds)
    with pytest.raises(CheckpointError, match=r"prefix 'teacher_flw.' matches no key.*"
                                              r"did you mean 'teacher_flow.'"):
        load_pretrained(model, ds, prefix="teacher_flw.")
    with pytest.raises(CheckpointError, match="prefix 'cmt.' holds no video ViT"):
        load_pretrained(model, ds, prefix="cmt.")
    with pytest.raises(ArchitectureMismatchError, match="checkpoint has in_chans=2, config asks for 17"):
        load_pretrained(VideoViT(**cf.TINY, in_chans=17), ds, prefix="teacher_flow.")


def test_older_lightning_wrapper_prefixes_are_stripped(tmp_path, distillation):
    state, models = distillation
    wrapped = {f"_forward_module.{k}": v for k, v in state.items()}
    ds = cf.write_deepspeed_dir(tmp_path / "ds", wrapped)
    model = VideoViT(**cf.TINY)
    for prefix in ("student_rgb.", "_forward_module.student_rgb."):
        load_pretrained(model, ds, prefix=prefix)
    assert read_checkpoint(ds).metadata["stripped_prefixes"] == ["_forward_module."]


def test_deepspeed_tag_directory_and_file_are_accepted(tmp_path, distillation):
    state, _ = distillation
    ds = cf.write_deepspeed_dir(tmp_path / "ds", state)
    for path in (ds / "checkpoint", ds / "checkpoint" / "mp_rank_00_model_states.pt"):
        assert read_checkpoint(path).format == "deepspeed"


def test_deepspeed_parts_and_broken_directories_are_refused(tmp_path, distillation):
    state, _ = distillation
    ds = cf.write_deepspeed_dir(tmp_path / "ds", state)
    with pytest.raises(CheckpointError, match=f"part of a DeepSpeed checkpoint.*pass the directory {ds}"):
        read_checkpoint(ds / "latest")
    with pytest.raises(CheckpointError, match=f"pass the directory {ds}"):
        read_checkpoint(ds / "checkpoint" / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    (ds / "latest").write_text("global_step9")
    with pytest.raises(CheckpointError, match="names the tag 'global_step9'.*missing"):
        read_checkpoint(ds)
    zero3 = cf.write_deepspeed_dir(tmp_path / "zero3", state, zero3_partitioned=True)
    with pytest.raises(CheckpointError, match="ZeRO-3.*zero_to_fp32.py"):
        read_checkpoint(zero3)


def test_a_deepspeed_directory_without_ds_version_is_read_by_its_module_entry(tmp_path,
                                                                              distillation):
    """Older or trimmed model-states files carry `module` but neither `ds_version` nor
    `buffer_names`; the directory layout says DeepSpeed, and the `module` entry is there."""
    state, _ = distillation
    ds = cf.write_deepspeed_dir(tmp_path / "ds", state)
    states = ds / "checkpoint" / "mp_rank_00_model_states.pt"
    torch.save({"module": state, "global_steps": 7}, states)
    ckpt = read_checkpoint(ds)
    assert ckpt.format == "deepspeed" and set(ckpt.state_dict) == set(state)
    assert ckpt.metadata["global_steps"] == 7
    torch.save({"state_dict": state, "global_steps": 7}, states)  # weights, but no `module`
    with pytest.raises(CheckpointError, match="no `module` entry"):
        read_checkpoint(ds)


def test_a_folder_of_checkpoints_is_not_a_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    cf.write_lightning_ckpt(folder / "last.ckpt", {})
    with pytest.raises(CheckpointError, match="pass one of them: last.ckpt"):
        read_checkpoint(folder)


def test_lightning_ckpt_with_ddp_and_compile_prefixes(tmp_path):
    source = cf.tiny_vit(5)
    state = {f"module.student._orig_mod.{k}": v for k, v in source.state_dict().items()}
    path = cf.write_lightning_ckpt(tmp_path / "epoch=09-train_loss=0.1234.ckpt", state)
    model = VideoViT(**cf.TINY)
    load_pretrained(model, path, prefix="module.student._orig_mod.")  # the prefix as saved works too
    report = load_pretrained(model, path, prefix="student")
    x = cf.clip(model)
    torch.testing.assert_close(tokens(model.eval(), x), tokens(source, x))
    ckpt = read_checkpoint(path)
    assert report.format == "lightning" and ckpt.metadata["global_step"] == 1000
    assert ckpt.metadata["stripped_prefixes"] == ["module.", "._orig_mod."]


def test_our_own_checkpoints_distillation_and_pretraining(tmp_path):
    student = cf.tiny_vit(6)
    distill = cf.write_mmdistill_ckpt(tmp_path / "last.ckpt", {"student.": student},
                                      extra={"heads.flow.fc1.weight": torch.zeros(4, 64)})
    model = VideoViT(**cf.TINY)
    assert load_pretrained(model, distill).prefix == "student."
    torch.testing.assert_close(tokens(model.eval(), cf.clip(model)), tokens(student, cf.clip(model)))
    encoder = cf.tiny_vit(7)
    pretrain = cf.write_mmdistill_ckpt(tmp_path / "pretrain.ckpt", {"encoder.": encoder},
                                       extra=cf.decoder_state())
    report = load_pretrained(model, pretrain)
    assert report.prefix == "encoder." and any(k.startswith("decoder.") for k in report.dropped)


# ----------------------------------------------------------------------------- position tables

def test_learned_224_table_is_resampled_into_a_224x384_model(tmp_path):
    source = cf.tiny_vit(8, num_frames=16, img_size=224, depth=1, pos_embed="learned")
    args = {"model": "vit_custom", "num_frames": 16, "input_size": 224}
    with_args = cf.write_official_pth(tmp_path / "a.pth", source.state_dict(), args)
    without = cf.write_official_pth(tmp_path / "b.pth", source.state_dict())  # grid guessed
    table = source.pos_embed.detach().reshape(8, 14, 14, 64).permute(0, 3, 1, 2)
    expected = F.interpolate(table, size=(14, 24), mode="bicubic", align_corners=False)
    expected = expected.permute(0, 2, 3, 1).reshape(1, 2688, 64)
    for path in (with_args, without):
        model = VideoViT(num_frames=16, img_size=(224, 384), embed_dim=64, depth=1, num_heads=2,
                         pos_embed="learned")
        report = load_pretrained(model, path)
        assert report.resampled == ["pos_embed: (8, 14, 14) -> (8, 14, 24)"]
        torch.testing.assert_close(model.pos_embed.detach(), expected, rtol=0, atol=0)
        assert torch.isfinite(tokens(model.eval(), cf.clip(model, batch=1))).all()


def test_frame_count_change_resamples_along_time(tmp_path):
    source = cf.tiny_vit(9, num_frames=16, img_size=32, pos_embed="learned")
    path = cf.write_mmdistill_ckpt(tmp_path / "a.ckpt", {"student.": source})
    model = VideoViT(num_frames=8, img_size=32, embed_dim=64, depth=2, num_heads=2, pos_embed="learned")
    report = load_pretrained(model, path)
    assert report.resampled == ["pos_embed: (8, 2, 2) -> (4, 2, 2)"]
    per_time = source.pos_embed.detach().reshape(8, 4 * 64).T[None]  # (1, H*W*D, T)
    expected = F.interpolate(per_time, size=4, mode="linear", align_corners=False)
    torch.testing.assert_close(model.pos_embed.detach(), expected[0].T.reshape(1, 16, 64))


def test_fixed_sinusoid_table_of_another_size_is_resampled_not_regenerated(tmp_path):
    hf = cf.hf_model(image_size=(32, 32))
    cf.write_hf_dir(tmp_path / "hf", hf)
    model = VideoViT(**cf.TINY)  # 32x48: grid (2, 2, 3) vs the checkpoint's (2, 2, 2)
    report = load_pretrained(model, tmp_path / "hf")
    assert report.resampled == ["fixed sinusoid table: (2, 2, 2) -> (2, 2, 3)"]
    torch.testing.assert_close(model.pos_embed,
                               resample_pos_embed(sinusoid_table(8, 64), (2, 2, 2), (2, 2, 3)))
    assert model.arch["sincos_grid"] == (2, 2, 2)


# ----------------------------------------------------------------------------- refusals

def test_missing_keys_are_an_error_unless_relaxed(tmp_path, capsys):
    state = cf.tiny_vit().state_dict()
    del state["blocks.1.mlp.fc2.bias"]
    path = cf.write_official_pth(tmp_path / "a.pth", state)
    model = VideoViT(**cf.TINY)
    with pytest.raises(CheckpointError, match="(?s)missing: blocks.1.mlp.fc2.bias.*pretrained.strict = False"):
        load_pretrained(model, path)
    report = load_pretrained(model, path, strict=False)
    assert report.missing == ["blocks.1.mlp.fc2.bias"]
    assert "missing (left at init): blocks.1.mlp.fc2.bias" in capsys.readouterr().out


def test_unexpected_encoder_keys_are_an_error(tmp_path):
    state = cf.tiny_vit().state_dict() | {"blocks.0.attn.rel_pos_bias": torch.zeros(3)}
    path = cf.write_official_pth(tmp_path / "a.pth", state)
    with pytest.raises(CheckpointError, match="unexpected: blocks.0.attn.rel_pos_bias"):
        load_pretrained(VideoViT(**cf.TINY), path)


@pytest.mark.parametrize("overrides, message", [
    ({"depth": 3}, "checkpoint has depth=2, config asks for 3"),
    ({"use_mean_pooling": True}, "checkpoint has use_mean_pooling=False"),
    ({"pos_embed": "learned"}, "checkpoint has pos_embed='sincos', config asks for 'learned'"),
    ({"init_values": 0.1}, "checkpoint has no layer scale"),
])
def test_architecture_mismatches_are_named(tmp_path, overrides, message):
    path = cf.write_official_pth(tmp_path / "a.pth", cf.tiny_vit().state_dict())
    with pytest.raises(ArchitectureMismatchError, match=message):
        load_pretrained(VideoViT(**(cf.TINY | overrides)), path)


def test_untrusted_pickles_are_refused_without_running_code(tmp_path):
    marker = tmp_path / "ran"
    path = cf.write_untrusted_pth(tmp_path / "a.pth", cf.tiny_vit().state_dict(), marker)
    with pytest.raises(UntrustedCheckpointError, match="mark_executed.*trust_checkpoint=True"):
        load_pretrained(VideoViT(**cf.TINY), path)
    assert not marker.exists()
    load_pretrained(VideoViT(**cf.TINY), path, trust_checkpoint=True)
    assert marker.exists()  # what trusting means: code from the file ran


def test_official_args_namespace_is_allowed_without_trust(tmp_path):
    path = cf.write_official_pth(tmp_path / "a.pth", cf.tiny_vit().state_dict(),
                                 args={"num_frames": 4, "input_size": (32, 48)})
    assert read_checkpoint(path).metadata["args"]["num_frames"] == 4


def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist. Give a DeepSpeed checkpoint directory"):
        read_checkpoint(tmp_path / "nope.ckpt")


def test_gin_entry_loads_by_scope(tmp_path):
    source = cf.tiny_vit(2, in_chans=2)
    path = cf.write_official_pth(tmp_path / "flow.pth", source.state_dict())
    gin.parse_config("teacher_flow/pretrained.strict = False")
    model = VideoViT(**cf.TINY, in_chans=2)
    with gin.config_scope("teacher_flow"):  # the path comes from distill.teacher_checkpoints
        assert initialise_from_checkpoint(model, path=path).loaded == len(source.state_dict())
    assert gin.query_parameter("teacher_flow/pretrained.strict") is False
    assert initialise_from_checkpoint(VideoViT(**cf.TINY)) is None  # no path: nothing to do
