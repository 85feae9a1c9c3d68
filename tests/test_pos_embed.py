"""Sinusoid tables and the 3-D position-table resample."""
import pytest
import torch
import torch.nn.functional as F

from mmdistill.models.pos_embed import guess_grid, resample_pos_embed, sinusoid_table


def test_sinusoid_table_matches_the_reference_implementation():
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

    ours = sinusoid_table(1568, 64)
    assert ours.shape == (1, 1568, 64)
    torch.testing.assert_close(ours, get_sinusoid_encoding_table(1568, 64), rtol=0, atol=1e-6)


def test_resample_is_identity_at_equal_size():
    table = torch.randn(1, 2 * 3 * 4, 8)
    assert torch.equal(resample_pos_embed(table, (2, 3, 4), (2, 3, 4)), table)


def test_spatial_resample_is_per_frame_bicubic():
    table = torch.randn(1, 8 * 14 * 14, 16)
    out = resample_pos_embed(table, (8, 14, 14), (8, 14, 24))
    frames = table.reshape(8, 14, 14, 16).permute(0, 3, 1, 2)
    expected = F.interpolate(frames, size=(14, 24), mode="bicubic", align_corners=False)
    assert out.shape == (1, 8 * 14 * 24, 16)
    torch.testing.assert_close(out, expected.permute(0, 2, 3, 1).reshape(1, -1, 16), rtol=0, atol=0)


def test_temporal_resample_is_linear_along_time():
    # a table that is linear in t resamples to the linear values at the new frame centres
    t = torch.arange(8, dtype=torch.float32)
    table = t[:, None, None, None].expand(8, 3, 3, 4).reshape(1, -1, 4)
    out = resample_pos_embed(table, (8, 3, 3), (4, 3, 3)).reshape(4, 3, 3, 4)
    expected = F.interpolate(t[None, None], size=4, mode="linear", align_corners=False).flatten()
    torch.testing.assert_close(out[:, 1, 2, 0], expected)
    torch.testing.assert_close(out[:, 0, 0, 3], torch.tensor([0.5, 2.5, 4.5, 6.5]))


def test_resample_keeps_dtype_and_accepts_2d_tables():
    table = torch.randn(2 * 2 * 2, 8, dtype=torch.float16)
    out = resample_pos_embed(table, (2, 2, 2), (1, 3, 3))
    assert out.shape == (9, 8) and out.dtype == torch.float16


def test_resample_refuses_a_grid_that_does_not_fit_the_table():
    with pytest.raises(ValueError, match="1568 tokens, but grid"):
        resample_pos_embed(torch.zeros(1, 1568, 8), (8, 14, 24), (8, 14, 14))


@pytest.mark.parametrize("tokens, target, expected", [
    (1568, (8, 14, 24), (8, 14, 14)),   # 16x224x224 checkpoint into a 16x224x384 model
    (1568, (4, 14, 14), (8, 14, 14)),   # frame count change
    (2688, (8, 14, 24), (8, 14, 24)),   # same size
    (7, (8, 14, 14), None),             # nothing sensible
])
def test_guess_grid(tokens, target, expected):
    assert guess_grid(tokens, target) == expected
