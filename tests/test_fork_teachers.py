"""Teachers of the tennis fork (Ricky513125/Tennis at a9d8a78) load strictly from their DeepSpeed
directory and compute what the fork's encoder computes.

The fork's pretraining model is `VideoMAE_ViT_B_1600` (models/modeling_pretrain.py:592-609):
1024 wide, 12 blocks, 12 heads, q/v biases, LayerNorm eps 1e-6, decoder 512 wide, 4 blocks, 6
heads. Its attention keeps VideoMAE's head_dim = dim // heads (models/modeling_finetune.py:80-95),
so the inner width is 12 x 85 = 1020 (512 / 6 -> 510 in the decoder). The forward tests use a
64-wide, 12-head encoder (head_dim 5, inner 60) with the same property; the exact 1024 shapes are
checked on meta tensors. The reference forward below is written from the fork's files (cited
per line), not imported from them.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmdistill.ckpt.command import describe
from mmdistill.data.masking import token_indices
from mmdistill.ckpt.reading import (ArchitectureMismatchError, Checkpoint, CheckpointError,
                                         read_checkpoint)
from mmdistill.models.decoder import MaskedAutoencoder
from mmdistill.ckpt.loading import build_from_checkpoint, initialise_mae, load_pretrained
from mmdistill.ckpt.selection import (arch_mismatches, decoder_arch, heads_for_width,
                                        select_model)
from mmdistill.models.vit import VideoViT

# Lightning's DeepSpeed wrapper + the LightningModule's `self.model` (models/lit_VideoMAETrainer.py:28);
# the fork's own reader strips exactly this (models/videomae_classifier.py:338-341).
PREFIX = "_forward_module.model."
EPS = 1e-6  # norm_layer=partial(nn.LayerNorm, eps=1e-6), models/modeling_pretrain.py:607

# tiny stand-in: same head rule, 64 wide / 12 heads -> inner 60; decoder 32 / 6 -> 30
TINY = dict(in_chans=2, frames=4, size=(32, 48), patch=16, tubelet=2, dim=64, depth=2, heads=12,
            dec_dim=32, dec_depth=1, dec_heads=6)


def _block_shapes(prefix: str, dim: int, heads: int, mlp_ratio: float = 4.0) -> dict:
    """One fork Block (models/modeling_finetune.py:147-176, Attention :86-95, Mlp :52-54) with
    qkv_bias=True and init_values=0 (no gamma_1/gamma_2, :168-176)."""
    inner = heads * (dim // heads)  # :80-83
    hidden = int(dim * mlp_ratio)
    return {prefix + "norm1.weight": (dim,), prefix + "norm1.bias": (dim,),
            prefix + "attn.q_bias": (inner,), prefix + "attn.v_bias": (inner,),
            prefix + "attn.qkv.weight": (3 * inner, dim),
            prefix + "attn.proj.weight": (dim, inner), prefix + "attn.proj.bias": (dim,),
            prefix + "norm2.weight": (dim,), prefix + "norm2.bias": (dim,),
            prefix + "mlp.fc1.weight": (hidden, dim), prefix + "mlp.fc1.bias": (hidden,),
            prefix + "mlp.fc2.weight": (dim, hidden), prefix + "mlp.fc2.bias": (dim,)}


def fork_shapes(in_chans: int, dim: int, depth: int, heads: int, dec_dim: int, dec_depth: int,
                dec_heads: int, patch: int = 16, tubelet: int = 2, actions: int = 204) -> dict:
    """Key -> shape of the fork's PretrainVisionTransformer state dict (models/modeling_pretrain.py).
    No pos_embed: both tables are plain tensors, not parameters or buffers (:75, :445)."""
    shapes = {"encoder.patch_embed.proj.weight": (dim, in_chans, tubelet, patch, patch),  # :60-66
              "encoder.patch_embed.proj.bias": (dim,),
              "encoder.norm.weight": (dim,), "encoder.norm.bias": (dim,)}  # :97; head Identity :98
    for i in range(depth):  # :80-96
        shapes.update(_block_shapes(f"encoder.blocks.{i}.", dim, heads))
    for i in range(dec_depth):  # decoder blocks :283-299
        shapes.update(_block_shapes(f"decoder.blocks.{i}.", dec_dim, dec_heads))
    out = in_chans * tubelet * patch ** 2  # decoder_num_classes, asserted at :273
    shapes.update({"decoder.norm.weight": (dec_dim,), "decoder.norm.bias": (dec_dim,),  # :300
                   "decoder.head.weight": (out, dec_dim), "decoder.head.bias": (out,),  # :301
                   "fc_norm.weight": (dim,), "fc_norm.bias": (dim,),  # :433
                   "head_action.weight": (actions, dim), "head_action.bias": (actions,),  # :434
                   "encoder_to_decoder.weight": (dec_dim, dim),  # :437-439
                   "mask_token": (1, 1, dec_dim)})  # :442
    return shapes


def fork_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """The tiny fork model with random (not init) values, so a wrong load or formula shows."""
    g = torch.Generator().manual_seed(seed)
    t = TINY
    shapes = fork_shapes(t["in_chans"], t["dim"], t["depth"], t["heads"], t["dec_dim"],
                         t["dec_depth"], t["dec_heads"], t["patch"], t["tubelet"])
    state = {}
    for key, shape in shapes.items():
        value = torch.randn(shape, generator=g) * (0.3 if len(shape) == 1 else 0.1)
        if key.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            value = 1.0 + value  # LayerNorm gains near 1
        state[PREFIX + key] = value.half()  # a 16-mixed DeepSpeed run keeps fp16 weights
    return state


def write_deepspeed_dir(root: Path, state: dict) -> Path:
    """What Lightning's DeepSpeed strategy writes for `trainer.save_checkpoint(dir)`
    (models/lit_VideoMAETrainer.py:306-308): <dir>/latest naming the tag 'checkpoint', and
    <dir>/checkpoint/mp_rank_00_model_states.pt with `module` plus client state."""
    ckpt_dir = root / "epoch=49-loss=0.6095"
    (ckpt_dir / "checkpoint").mkdir(parents=True)
    (ckpt_dir / "latest").write_text("checkpoint")
    torch.save({"module": state, "buffer_names": [], "ds_version": "0.14.4", "epoch": 49,
                "global_step": 28300, "global_steps": 28300, "dp_world_size": 1,
                "pytorch-lightning_version": "2.4.0"},
               ckpt_dir / "checkpoint" / "mp_rank_00_model_states.pt")
    return ckpt_dir


# --- the fork's encoder forward, written from its files ------------------------------------------

def sinusoid_table(n: int, d: int) -> torch.Tensor:
    """models/modeling_finetune.py:231-249: angle(p, j) = p / 10000^(2 (j // 2) / d);
    sin on even j, cos on odd j."""
    pos = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(d)
    angle = pos / np.power(10000, 2 * (j // 2) / d)
    table = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    return torch.tensor(table, dtype=torch.float32)


def fork_encoder_forward(state: dict, x: torch.Tensor, heads: int,
                         mask: torch.Tensor | None = None) -> torch.Tensor:
    """PretrainVisionTransformerEncoder.forward_features (models/modeling_pretrain.py:132-222)
    with equal visible counts per clip (no zero padding)."""
    sd = {k[len(PREFIX) + len("encoder."):]: v.float() for k, v in state.items()
          if k.startswith(PREFIX + "encoder.")}
    w = sd["patch_embed.proj.weight"]
    tokens = F.conv3d(x, w, sd["patch_embed.proj.bias"], stride=w.shape[2:])  # finetune.py:212-217
    tokens = tokens.flatten(2).transpose(1, 2)  # finetune.py:225
    tokens = tokens + sinusoid_table(tokens.shape[1], tokens.shape[2])  # pretrain.py:171-172
    if mask is not None:  # pretrain.py:190-202: each clip's visible tokens, in order
        tokens = torch.stack([tokens[i][~mask[i]] for i in range(x.shape[0])])
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):  # Block.forward without gamma, finetune.py:178-181
        p = f"blocks.{i}."
        h = F.layer_norm(tokens, tokens.shape[-1:], sd[p + "norm1.weight"], sd[p + "norm1.bias"], EPS)
        bias = torch.cat([sd[p + "attn.q_bias"], torch.zeros_like(sd[p + "attn.v_bias"]),
                          sd[p + "attn.v_bias"]])  # finetune.py:100-108
        qkv = F.linear(h, sd[p + "attn.qkv.weight"], bias)  # :110
        b, n, _ = qkv.shape
        q, k, v = qkv.reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)  # :111-116
        head_dim = tokens.shape[-1] // heads  # :80
        attn = ((q * head_dim ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)  # :84, :118-121
        out = (attn @ v).transpose(1, 2).reshape(b, n, -1)  # :124
        tokens = tokens + F.linear(out, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])  # :125
        h = F.layer_norm(tokens, tokens.shape[-1:], sd[p + "norm2.weight"], sd[p + "norm2.bias"], EPS)
        h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                     sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])  # Mlp :57-64, nn.GELU
        tokens = tokens + h
    return F.layer_norm(tokens, tokens.shape[-1:], sd["norm.weight"], sd["norm.bias"], EPS)  # :221


def tiny_model(num_heads: int = TINY["heads"]) -> VideoViT:
    t = TINY
    return VideoViT(in_chans=t["in_chans"], num_frames=t["frames"], img_size=t["size"],
                    patch_size=t["patch"], tubelet_size=t["tubelet"], embed_dim=t["dim"],
                    depth=t["depth"], num_heads=num_heads)


@pytest.fixture
def fork_ckpt(tmp_path):
    state = fork_state_dict()
    return write_deepspeed_dir(tmp_path, state), state


def _clip(batch: int = 2) -> torch.Tensor:
    t = TINY
    return torch.randn(batch, t["in_chans"], t["frames"], *t["size"],
                       generator=torch.Generator().manual_seed(1))


def test_fork_teacher_loads_strictly_and_matches_the_fork_forward(fork_ckpt):
    path, state = fork_ckpt
    model = tiny_model().eval()
    report = load_pretrained(model, path)
    assert report.format == "deepspeed" and report.prefix == "model.encoder."
    assert report.loaded == len(model.state_dict()) and not report.skipped
    assert model.blocks[0].attn.q_bias.shape == (60,)  # 12 heads x (64 // 12)
    x = _clip()
    with torch.no_grad():
        tokens, pooled = model(x)
    expected = fork_encoder_forward(state, x, TINY["heads"])
    torch.testing.assert_close(tokens, expected, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(pooled, expected.mean(1), atol=2e-5, rtol=1e-4)


def test_fork_teacher_matches_the_fork_forward_under_a_mask(fork_ckpt):
    """Visible tokens (equal counts per clip) as the fork selects them with its bool mask."""
    path, state = fork_ckpt
    model = tiny_model().eval()
    load_pretrained(model, path)
    x = _clip()
    n = model.num_patches
    mask = torch.zeros(2, n, dtype=torch.bool)
    mask[0, [0, 3, 4, 7, 8, 11]] = True
    mask[1, [1, 2, 5, 6, 9, 10]] = True
    visible, _ = token_indices(mask)
    with torch.no_grad():
        tokens, _ = model(x, visible)
    torch.testing.assert_close(tokens, fork_encoder_forward(state, x, TINY["heads"], mask),
                               atol=2e-5, rtol=1e-4)


def test_a_head_count_that_does_not_give_the_inner_width_is_refused_with_the_counts_that_do(fork_ckpt):
    path, _ = fork_ckpt
    with pytest.raises(ArchitectureMismatchError) as err:
        load_pretrained(tiny_model(num_heads=16), path)  # 16 x 4 = 64, the file's is 60
    message = str(err.value)
    assert "60 wide" in message and "12" in message and "num_heads" in message


def test_exact_fork_shapes_are_inferred_from_shapes_alone():
    """The real VideoMAE_ViT_B_1600 (3 channels): its encoder and decoder, as meta tensors."""
    shapes = fork_shapes(3, 1024, 12, 12, 512, 4, 6)
    state = {PREFIX.removeprefix("_forward_module.") + k: torch.empty(s, device="meta")
             for k, s in shapes.items()}
    assert state["model.encoder.blocks.0.attn.q_bias"].shape == (1020,)
    assert state["model.encoder.blocks.0.attn.qkv.weight"].shape == (3060, 1024)
    assert state["model.encoder.blocks.0.attn.proj.weight"].shape == (1024, 1020)
    ckpt = Checkpoint("deepspeed", state, {}, Path("fork"), Path("fork"))
    view = select_model(ckpt)
    arch = view.arch
    assert (arch["embed_dim"], arch["depth"], arch["attn_dim"], arch["in_chans"]) == (1024, 12, 1020, 3)
    assert arch["num_heads"] is None and 12 in heads_for_width(1024, 1020)
    assert 16 not in heads_for_width(1024, 1020)
    decoder = decoder_arch({k[len("model."):]: v for k, v in state.items()
                            if k.startswith("model.decoder.")})
    assert decoder == dict(embed_dim=512, depth=4, attn_dim=510, num_heads=None, mlp_ratio=4.0,
                           out_dim=1536)
    with torch.device("meta"):
        encoder = VideoViT(in_chans=3, num_frames=16, img_size=(224, 384), embed_dim=1024,
                           depth=12, num_heads=12)
        mae = MaskedAutoencoder(encoder, decoder_dim=512, decoder_depth=4, decoder_heads=6)
    assert arch_mismatches(arch, encoder) == []
    ours = {k: tuple(v.shape) for k, v in mae.state_dict().items()}
    theirs = {k[len("model."):]: tuple(v.shape) for k, v in state.items()
              if k.startswith(("model.encoder.", "model.decoder.", "model.encoder_to_decoder",
                               "model.mask_token"))}
    assert ours == theirs


def test_inspect_shows_the_attention_width_and_the_decoder(fork_ckpt):
    path, _ = fork_ckpt
    text = describe(read_checkpoint(path))
    assert "attention_width=60" in text
    assert "decoder: embed_dim=32 depth=1" in text and "attention_width=30" in text
    assert "num_heads=?" in text and "12" in text


def test_build_from_checkpoint_needs_the_head_count_and_names_the_candidates(fork_ckpt):
    path, state = fork_ckpt
    with pytest.raises(CheckpointError, match=r"num_heads in \{5, 6, 10, 12, 15, 20, 30, 60\}"):
        build_from_checkpoint(path)
    model, report = build_from_checkpoint(path, num_heads=12, num_frames=4, img_size=(32, 48))
    assert not report.skipped and model.blocks[0].attn.head_dim == 5
    x = _clip(1)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x)[0], fork_encoder_forward(state, x, 12),
                                   atol=2e-5, rtol=1e-4)


def test_resuming_a_fork_pretraining_checkpoint_loads_its_decoder(fork_ckpt):
    path, state = fork_ckpt
    t = TINY
    mae = MaskedAutoencoder(tiny_model(), decoder_dim=t["dec_dim"], decoder_depth=t["dec_depth"],
                            decoder_heads=t["dec_heads"])
    report = initialise_mae(mae, path)
    decoder_keys = [k for k in state if k.startswith(tuple(
        PREFIX + part for part in ("decoder.", "encoder_to_decoder", "mask_token")))]
    assert report.decoder_loaded == len(decoder_keys)
    torch.testing.assert_close(mae.decoder.blocks[0].attn.q_bias,
                               state[PREFIX + "decoder.blocks.0.attn.q_bias"].float())
    wrong = MaskedAutoencoder(tiny_model(), decoder_dim=t["dec_dim"], decoder_depth=t["dec_depth"],
                              decoder_heads=8)  # 8 x 4 = 32, the file's is 30
    with pytest.raises(CheckpointError) as err:
        initialise_mae(wrong, path)
    assert "mae.decoder_dim = 32" in str(err.value) and "attention 30 wide" in str(err.value)
    assert math.isclose(decoder_arch({k[len(PREFIX):]: v for k, v in state.items()
                                      if k.startswith(PREFIX + "decoder.")})["mlp_ratio"], 4.0)


@pytest.mark.parametrize("modality", ["rgb", "flow", "skeleton"])
def test_tennis_pretraining_files_take_the_initial_checkpoint_as_a_macro(modality):
    import gin

    from mmdistill.config import parse_config
    from test_spine import ROOT, import_run_configurables

    import_run_configurables()
    path = ROOT / "gin" / f"tennis_pretrain_{modality}.gin"
    gin.clear_config()
    try:
        parse_config([path], [], finalize=False)
        assert str(gin.query_parameter("pretrain.init_checkpoint")) == "%INIT_CHECKPOINT"
        assert gin.query_parameter("%INIT_CHECKPOINT") is None  # random init unless set
        gin.clear_config()
        parse_config([path], ["INIT_CHECKPOINT = '/ckpts/VideoMAE_ViT_B_1600.pth'"], finalize=False)
        assert gin.query_parameter("%INIT_CHECKPOINT") == "/ckpts/VideoMAE_ViT_B_1600.pth"
    finally:
        gin.clear_config()


def test_export_keeps_the_head_count_official_yes_hugging_face_no(fork_ckpt, tmp_path):
    """The official layout records num_heads, so the export rebuilds alone; the Hugging Face
    classes need heads that divide the width and are refused."""
    from mmdistill.ckpt.command import main

    path, state = fork_ckpt
    out = tmp_path / "teacher.pth"
    assert main(["export", str(path), str(out), "--to", "official", "--num-heads", "12",
                 "--num-frames", "4", "--img-size", "32", "48"]) == 0
    model, report = build_from_checkpoint(out)
    assert model.arch["num_heads"] == 12 and not report.skipped
    x = _clip(1)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x)[0], fork_encoder_forward(state, x, 12),
                                   atol=2e-5, rtol=1e-4)
    assert main(["export", str(path), str(tmp_path / "hf"), "--to", "hf", "--num-heads", "12",
                 "--num-frames", "4", "--img-size", "32", "48"]) == 2
    assert not (tmp_path / "hf" / "model.safetensors").exists()
