"""The video ViT: shapes, sizes, masking, key names, checkpointing and autocast."""
import gin
import pytest
import torch

from ckpt_factories import TINY, clip, tiny_vit
from mmdistill.models.pos_embed import resample_pos_embed, sinusoid_table
from mmdistill.data.masking import token_indices
from mmdistill.models.vit import SIZES, VideoViT, video_vit


@pytest.mark.parametrize("in_chans", [3, 2, 17])
def test_any_channel_count_and_non_square_input(in_chans):
    model = tiny_vit(in_chans=in_chans)
    tokens, pooled = model(clip(model, batch=3))
    assert model.grid_size == (2, 2, 3) and model.num_patches == 12
    assert tokens.shape == (3, 12, 64) and pooled.shape == (3, 64)
    assert torch.isfinite(tokens).all()


def test_grid_of_the_original_tennis_input():
    model = VideoViT(num_frames=16, img_size=(224, 384), embed_dim=64, depth=1, num_heads=2)
    assert model.grid_size == (8, 14, 24) and model.num_patches == 2688
    assert model.pos_embed.shape == (1, 2688, 64)


def test_named_sizes_and_overrides():
    assert SIZES["base"] == (768, 12, 12) and SIZES["huge"] == (1280, 32, 16)
    tiny = video_vit("tiny", num_frames=4, img_size=32)
    assert (tiny.embed_dim, len(tiny.blocks), tiny.blocks[0].attn.num_heads) == (192, 4, 3)
    custom = video_vit("small", depth=1, num_frames=4, img_size=32)
    assert (custom.embed_dim, len(custom.blocks), custom.blocks[0].attn.num_heads) == (384, 1, 6)
    with pytest.raises(ValueError, match="video_vit.size='medium'"):
        video_vit("medium")


def test_gin_scopes_configure_the_factory():
    gin.parse_config("""
        student/video_vit.size = 'tiny'
        student/video_vit.num_frames = 4
        student/video_vit.img_size = (32, 48)
        flow/video_vit.embed_dim = 64
        flow/video_vit.depth = 1
        flow/video_vit.num_heads = 2
        flow/video_vit.num_frames = 4
        flow/video_vit.img_size = 32
    """)
    with gin.config_scope("student"):
        student = video_vit()
    with gin.config_scope("flow"):
        flow = video_vit(in_chans=2)  # the stages pass it from the modality's spec
    assert student.grid_size == (2, 2, 3) and student.embed_dim == 192
    assert flow.in_chans == 2 and flow.embed_dim == 64 and len(flow.blocks) == 1


def test_state_dict_uses_official_videomae_names():
    keys = set(tiny_vit().state_dict())
    assert {"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.q_bias",
            "blocks.0.attn.v_bias", "blocks.0.norm1.weight", "blocks.0.mlp.fc1.weight",
            "norm.weight"} <= keys
    assert "blocks.0.attn.qkv.bias" not in keys
    assert "pos_embed" not in keys  # the fixed table is not stored
    assert "pos_embed" in tiny_vit(pos_embed="learned").state_dict()
    pooled = set(tiny_vit(use_mean_pooling=True).state_dict())
    assert "fc_norm.weight" in pooled and "norm.weight" not in pooled
    assert "blocks.0.ls1.gamma" in tiny_vit(init_values=0.1).state_dict()


def test_attention_is_videomae_q_v_bias_attention():
    attn = tiny_vit(depth=1).blocks[0].attn
    x = torch.randn(2, 5, 64)
    w_q, w_k, w_v = attn.qkv.weight.chunk(3)
    q = (x @ w_q.T + attn.q_bias).reshape(2, 5, 2, 32).transpose(1, 2)
    k = (x @ w_k.T).reshape(2, 5, 2, 32).transpose(1, 2)  # no key bias
    v = (x @ w_v.T + attn.v_bias).reshape(2, 5, 2, 32).transpose(1, 2)
    weights = (q @ k.transpose(-2, -1) * 32 ** -0.5).softmax(-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 64))
    with torch.no_grad():
        torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)
        attn.fused_attn = False  # timm's non-fused path must agree too
        torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_mask_drops_tokens_before_the_blocks():
    model = tiny_vit(depth=0)  # no attention: each token's output depends on itself only
    x = clip(model)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, [0, 3, 5, 7, 8, 11]] = True
    mask[1, :6] = True
    with torch.no_grad():
        full, _ = model(x)
        visible, pooled = model(x, token_indices(mask)[0])
    assert visible.shape == (2, 6, 64)
    torch.testing.assert_close(visible, full[~mask].reshape(2, 6, 64))
    torch.testing.assert_close(pooled, visible.mean(1))  # norm is applied per token, fc_norm is Identity


def test_visible_index_is_the_bool_mask_selection():
    """The shared index the device stage computes once selects exactly what the bool mask does."""
    model = tiny_vit(depth=0)  # no attention: each token's output depends on itself only
    x = clip(model)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, [1, 2, 4, 9]] = True
    mask[1, [0, 5, 10, 11]] = True
    index = token_indices(mask)[0]
    assert index.dtype == torch.long and index.shape == (2, 8)
    assert torch.equal(index[0], (~mask[0]).nonzero().flatten())
    assert torch.equal(index[1], (~mask[1]).nonzero().flatten())
    visible_part, masked_part = token_indices(mask)
    assert torch.equal(visible_part, index) and torch.equal(masked_part[1], mask[1].nonzero().flatten())
    with torch.no_grad():
        full, _ = model(x)
        by_index, _ = model(x, index)
    torch.testing.assert_close(by_index, full[~mask].reshape(2, 8, -1), rtol=0, atol=0)


def test_mask_errors_are_clear():
    model = tiny_vit()
    x = clip(model)
    uneven = torch.zeros(2, 12, dtype=torch.bool)
    uneven[0, :3] = True
    uneven[1, :5] = True
    with pytest.raises(ValueError, match="same number of tokens"):
        token_indices(uneven)
    with pytest.raises(ValueError, match="mask must be a bool"):
        token_indices(torch.zeros(2, 12))
    with pytest.raises(ValueError, match=r"mask must be bool \(B, N\) = \(2, 12\)"):
        token_indices(torch.zeros(2, 10, dtype=torch.bool), model.num_patches)
    with pytest.raises(ValueError, match=r"visible_index must be a long.*token_indices"):
        model(x, torch.zeros(2, 12, dtype=torch.bool))  # the mask itself is not an index
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\) = \(B, 3, 4, 32, 48\)"):
        model(torch.zeros(2, 3, 4, 32, 32))


def test_constructor_refuses_sizes_that_do_not_tile():
    with pytest.raises(ValueError, match="img_size width=40 is not divisible by patch_size=16"):
        VideoViT(img_size=(32, 40), **{k: v for k, v in TINY.items() if k != "img_size"})
    with pytest.raises(ValueError, match="num_frames=5 is not divisible by tubelet_size=2"):
        VideoViT(**(TINY | {"num_frames": 5}))


def test_grad_checkpointing_gives_the_same_output_and_gradients():
    plain, ckpt = tiny_vit(), tiny_vit(grad_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = clip(plain)
    grads = []
    for model in (plain, ckpt):
        model.train()
        tokens, pooled = model(x)
        (tokens.square().mean() + pooled.sum()).backward()
        grads.append(model.patch_embed.proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_autocast_bf16_keeps_fp32_parameters():
    model = tiny_vit()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tokens, pooled = model(clip(model))
    assert tokens.dtype == torch.float32 or tokens.dtype == torch.bfloat16
    assert torch.isfinite(tokens.float()).all() and torch.isfinite(pooled.float()).all()
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_sincos_table_of_another_grid_is_resampled_not_regenerated():
    model = tiny_vit(sincos_grid=(2, 2, 2))
    expected = resample_pos_embed(sinusoid_table(8, 64), (2, 2, 2), (2, 2, 3))
    torch.testing.assert_close(model.pos_embed, expected)
    assert not torch.allclose(model.pos_embed, sinusoid_table(12, 64))
    assert model.arch["sincos_grid"] == (2, 2, 2)


def test_drop_path_grows_linearly_with_depth():
    model = tiny_vit(depth=3, drop_path_rate=0.2)
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in model.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])


def test_tubelet_embedding_equals_its_conv3d():
    from mmdistill.models.vit import TubeletEmbed

    torch.manual_seed(0)
    embed = TubeletEmbed(in_chans=5, embed_dim=24, tubelet_size=2, patch_size=8)
    x = torch.randn(3, 5, 4, 16, 24)
    reference = embed.proj(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(embed(x), reference, rtol=1e-5, atol=1e-5)
