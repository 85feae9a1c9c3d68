"""The pose teacher (21 channels, 4 px patches) starts from a K400-style RGB VideoMAE file
(3 channels, 16 px patches) with pretrain.init_patch_embed='reinit', like MM-CDFSL's stage 1.

Reference (MM-CDFSL c21d686, models/modeling_pretrain.py:423-441): every key of the file's
`model` dict is copied except, when in_chans != 3, those containing both 'encoder.' and
'patch_embed.' or both 'decoder.' and 'head.'; the fixed sinusoid position tables are not in the
state dict and depend on the token count only. The file below is written by hand with the
official VideoMAE key names, so the test does not lean on our own state-dict layout."""
import pytest
import torch

import ckpt_factories as cf
from mmdistill.ckpt.reading import ArchitectureMismatchError
from mmdistill.models.decoder import MaskedAutoencoder
from mmdistill.ckpt.loading import initialise_mae
from mmdistill.models.vit import VideoViT

DIM, DEC, FRAMES, TUBELET = 32, 16, 4, 2


def _block(prefix: str, dim: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """One official VideoMAE block (qkv without bias, q_bias/v_bias apart)."""
    shapes = {"norm1.weight": (dim,), "norm1.bias": (dim,), "attn.q_bias": (dim,),
              "attn.v_bias": (dim,), "attn.qkv.weight": (3 * dim, dim),
              "attn.proj.weight": (dim, dim), "attn.proj.bias": (dim,), "norm2.weight": (dim,),
              "norm2.bias": (dim,), "mlp.fc1.weight": (4 * dim, dim), "mlp.fc1.bias": (4 * dim,),
              "mlp.fc2.weight": (dim, 4 * dim), "mlp.fc2.bias": (dim,)}
    return {f"{prefix}{k}": torch.randn(s, generator=g) for k, s in shapes.items()}


def _k400_rgb_state(patch: int = 16) -> dict[str, torch.Tensor]:
    """A tiny K400 pretraining `model` dict: RGB, `patch` px patches, encoder + decoder."""
    g = torch.Generator().manual_seed(3)
    state = {"encoder.patch_embed.proj.weight": torch.randn(DIM, 3, TUBELET, patch, patch, generator=g),
             "encoder.patch_embed.proj.bias": torch.randn(DIM, generator=g)}
    state |= _block("encoder.blocks.0.", DIM, g)
    state |= {"encoder.norm.weight": torch.randn(DIM, generator=g),
              "encoder.norm.bias": torch.randn(DIM, generator=g),
              "encoder_to_decoder.weight": torch.randn(DEC, DIM, generator=g),
              "mask_token": torch.randn(1, 1, DEC, generator=g)}
    state |= _block("decoder.blocks.0.", DEC, g)
    state |= {"decoder.norm.weight": torch.randn(DEC, generator=g),
              "decoder.norm.bias": torch.randn(DEC, generator=g),
              "decoder.head.weight": torch.randn(3 * TUBELET * patch * patch, DEC, generator=g),
              "decoder.head.bias": torch.randn(3 * TUBELET * patch * patch, generator=g)}
    return state


def _pose_teacher() -> MaskedAutoencoder:
    """The pose teacher at a tiny scale: 21 channels, 4 px patches on 8 px frames, so its token
    grid (2, 2, 2) equals the RGB file's 16 px patches on 32 px frames."""
    torch.manual_seed(0)
    encoder = VideoViT(in_chans=21, num_frames=FRAMES, img_size=(8, 8), patch_size=4,
                       tubelet_size=TUBELET, embed_dim=DIM, depth=1, num_heads=2)
    return MaskedAutoencoder(encoder, decoder_dim=DEC, decoder_depth=1)


def _mmcdfsl_kept(key: str) -> bool:
    """modeling_pretrain.py:428-438 for in_chans != 3."""
    return not (("encoder." in key and "patch_embed." in key) or ("decoder." in key and "head." in key))


def test_pose_teacher_starts_from_rgb_patch16_file_with_reinit_and_reports_what_was_not_copied(tmp_path):
    file = _k400_rgb_state()
    path = cf.write_official_pth(tmp_path / "videomae_small_k400.pth", file)
    model = _pose_teacher()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = initialise_mae(model, path, patch_embed="reinit")
    after = model.state_dict()
    copied = {k for k in file if _mmcdfsl_kept(k)}
    dropped = set(file) - copied
    assert dropped == {"encoder.patch_embed.proj.weight", "encoder.patch_embed.proj.bias",
                       "decoder.head.weight", "decoder.head.bias"}
    for key in copied:
        torch.testing.assert_close(after[key], file[key])
    for key in dropped:  # ours keep their fresh init, at the pose teacher's shapes
        assert torch.equal(after[key], before[key])
    assert after["encoder.patch_embed.proj.weight"].shape == (DIM, 21, TUBELET, 4, 4)
    assert after["decoder.head.weight"].shape == (21 * TUBELET * 4 * 4, DEC)
    assert set(report.not_copied) == dropped
    text = str(report)
    assert "16 -> 4 px patches" in text and "3 -> 21 channels" in text
    for key in dropped:
        assert f"not copied: {key}" in text
    tokens, _ = model.encoder(torch.randn(1, 21, FRAMES, 8, 8))
    assert tokens.shape == (1, 8, DIM)


def test_strict_refuses_the_patch_change_and_names_reinit(tmp_path):
    path = cf.write_official_pth(tmp_path / "k400.pth", _k400_rgb_state())
    with pytest.raises(ArchitectureMismatchError, match="init_patch_embed = 'reinit'"):
        initialise_mae(_pose_teacher(), path)


def test_channel_mean_refuses_a_patch_change(tmp_path):
    path = cf.write_official_pth(tmp_path / "k400.pth", _k400_rgb_state())
    with pytest.raises(ArchitectureMismatchError, match="cannot change its patch size"):
        initialise_mae(_pose_teacher(), path, patch_embed="channel_mean")
