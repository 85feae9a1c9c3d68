"""The appearance baseline: colour histograms, nearest class mean, in every comparison."""
import json

import gin
import pytest
import torch
from PIL import Image

from context_factories import TINY_VIT, bind_tiny_fewshot_data, cpu_context
from mmdistill.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Normalize
from mmdistill.eval.appearance import ColourHistogram
from mmdistill.evaluation import evaluate_stage

NORMALIZE = Normalize(IMAGENET_MEAN, IMAGENET_STD, 1.0 / 255.0)


def _clip(rgb, frames=2, size=(9, 16)):
    """One normalised clip (1, 3, T, H, W) of a single pixel colour (0..255)."""
    pixels = torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1, 1).expand(1, 3, frames, *size)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return (pixels / 255.0 - mean) / std


def test_one_colour_falls_in_its_cell_and_halves_give_sqrt_half():
    model = ColourHistogram(NORMALIZE, bins=6, size=(3, 4))
    _, pooled = model(_clip((250, 0, 130)))
    # 250 -> bin 5, 0 -> bin 0, 130 -> bin 3 (130 / 256 * 6 = 3.05)
    expected = torch.zeros(216)
    expected[(5 * 6 + 0) * 6 + 3] = 1.0
    assert torch.allclose(pooled[0], expected, atol=1e-5)
    half = torch.cat([_clip((10, 10, 10), frames=1), _clip((200, 200, 200), frames=1)], dim=2)
    _, pooled = model(half)
    assert sorted(pooled[0][pooled[0] > 0].tolist()) == pytest.approx([0.5 ** 0.5] * 2, abs=1e-5)
    assert pooled.norm(dim=1).item() == pytest.approx(1.0, abs=1e-5)


def test_masking_is_refused():
    with pytest.raises(ValueError, match="no tokens to mask"):
        ColourHistogram(NORMALIZE)(_clip((0, 0, 0)), visible_index=torch.zeros(1, 1))


def test_the_comparison_holds_the_appearance_baseline_standard_and_group_disjoint(tmp_path):
    bind_tiny_fewshot_data(tmp_path / "data", "fewshot.group_by = 'video'",
                           *(f"student/video_vit.{k} = {v!r}" for k, v in TINY_VIT.items()))
    ctx = cpu_context(tmp_path / "run")
    try:
        summary = evaluate_stage(ctx, None, untrained=True, cache_features=False)
    finally:
        gin.clear_config()
    for name in ("untrained", "colour_histogram"):
        for setting in ("2way_1shot", "2way_1shot_disjoint"):
            assert 0 <= summary[f"{name}/fewshot/{setting}/acc"] <= 100
    assert summary["evaluated/colour_histogram/checkpoint"].startswith("none (RGB colour")
    report = json.loads((ctx.dir / "fewshot_colour_histogram.json").read_text())
    # The picture beside summary.json, logged too: a panel per setting (standard, disjoint).
    picture = Image.open(ctx.dir / "comparison.png")
    assert picture.width > 2 * 260 and ctx.logger.images[0][0] == "fewshot/comparison"
    assert report["classifier"] == "euclidean_centroid"
    assert report["groups_per_class"] == {"a": 4, "b": 4}


def test_the_appearance_baseline_can_be_left_out(tmp_path):
    bind_tiny_fewshot_data(tmp_path / "data",
                           *(f"student/video_vit.{k} = {v!r}" for k, v in TINY_VIT.items()))
    try:
        summary = evaluate_stage(cpu_context(tmp_path / "run"), None, untrained=True,
                                 cache_features=False, appearance_baseline=False)
    finally:
        gin.clear_config()
    assert not any(k.startswith("colour_histogram/") for k in summary)


def test_a_baseline_named_like_the_histogram_is_refused(tmp_path):
    with pytest.raises(ValueError, match="adds itself: rename that baseline"):
        evaluate_stage(cpu_context(tmp_path / "run"), None,
                       baselines={"colour_histogram": str(tmp_path / "x.ckpt")})
