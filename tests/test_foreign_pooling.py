"""evaluate.foreign_pooling='fresh_layer_norm': MM-CDFSL's evaluation reads a checkpoint through
its classifier (models/videomae_classifier.py, c21d686), which keeps only `encoder.` keys
(:249-263) and pools as fc_norm(mean of the encoder's normed tokens) (:218-219) with fc_norm a
fresh torch LayerNorm (:196; norm_layer default nn.LayerNorm, eps 1e-5, weight 1, bias 0)."""
import pytest
import torch
import torch.nn.functional as F

import ckpt_factories as cf
from mmdistill.evaluation import _load_for_eval, evaluate_stage
from mmdistill.models.heads import NormedPooling


def _foreign(tmp_path):
    encoder = cf.tiny_vit(5, use_mean_pooling=False)
    args = {"num_frames": 4, "input_size": [32, 48], "num_heads": 2}
    return encoder, cf.write_official_pth(tmp_path / "stage1_rgb.pth", cf.pretraining_state(encoder),
                                          args=args)


def test_fresh_layer_norm_pools_a_foreign_checkpoint_like_mmcdfsl(tmp_path):
    encoder, path = _foreign(tmp_path)
    model, _ = _load_for_eval(path, None, False, "fresh_layer_norm")
    assert isinstance(model, NormedPooling)
    x = cf.clip(encoder)
    with torch.no_grad():
        tokens, pooled = model(x)
        reference_tokens, _ = encoder(x)
    expected = F.layer_norm(reference_tokens.mean(1), (encoder.embed_dim,), eps=1e-5)
    torch.testing.assert_close(tokens, reference_tokens)
    torch.testing.assert_close(pooled, expected)


def test_mean_keeps_the_encoders_own_pooling(tmp_path):
    encoder, path = _foreign(tmp_path)
    model, _ = _load_for_eval(path, None, False, "mean")
    assert not isinstance(model, NormedPooling)
    x = cf.clip(encoder)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[1], encoder(x)[0].mean(1))


def test_our_checkpoints_are_not_touched(tmp_path):
    path = cf.write_mmdistill_ckpt(tmp_path / "ours.ckpt",
                                   {"student.": cf.tiny_vit(6, use_mean_pooling=False)})
    model, _ = _load_for_eval(path, None, False, "fresh_layer_norm")
    assert not isinstance(model, NormedPooling)


def test_a_bad_value_is_refused_before_anything_is_read(tmp_path):
    with pytest.raises(ValueError, match="evaluate.foreign_pooling='layernorm'.*'fresh_layer_norm'"):
        evaluate_stage(None, tmp_path / "absent.ckpt", foreign_pooling="layernorm")
