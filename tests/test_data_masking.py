"""Tube masks: exact count, same spatial mask in every slice, reproducible from the rng."""
import numpy as np
import pytest

from mmdistill.data.masking import TubeMaskGenerator, tube_mask


def test_exact_count_repeated_over_time():
    generator = TubeMaskGenerator((4, 3, 5), ratio=0.6)
    mask = generator(np.random.default_rng(0))
    assert mask.dtype == bool and mask.shape == (60,)
    slices = mask.reshape(4, 15)
    assert (slices == slices[0]).all() and slices[0].sum() == 9 == generator.num_masked_spatial
    assert generator.num_masked == 36


def test_ratio_zero_and_one():
    assert not TubeMaskGenerator((2, 2, 2), 0.0)(np.random.default_rng(0)).any()
    assert TubeMaskGenerator((2, 2, 2), 1.0)(np.random.default_rng(0)).all()


def test_reproducible_and_varied():
    generator = TubeMaskGenerator((1, 8, 8), 0.5)
    first = generator(np.random.default_rng(1))
    assert (first == generator(np.random.default_rng(1))).all()
    assert (first != generator(np.random.default_rng(2))).any()


def test_factory_for_model_grid():
    generator = tube_mask(num_frames=16, input_size=(224, 384), patch_size=16, tubelet_size=2, ratio=0.75)
    assert generator.grid == (8, 14, 24) and generator.num_tokens == 2688
    assert generator.num_masked_spatial == round(0.75 * 336)
    with pytest.raises(ValueError, match="not divisible"):
        tube_mask(num_frames=15)
    with pytest.raises(ValueError, match="within"):
        TubeMaskGenerator((1, 2, 2), 1.5)
