"""Vectorised heatmaps equal the original per-joint renderer and mean what they should."""
import numpy as np
import pytest
import torch

from data_factories import random_skeleton
from mmdistill.data.heatmaps import (HeatmapRenderer, render_heatmaps, render_heatmaps_per_joint,
                                    render_heatmaps_torch)


@pytest.mark.parametrize("persons, sigma, size", [(1, 2.5, (20, 30)), (3, 0.6, (20, 30)), (2, 1.0, (90, 120)),
                                                   (2, 9.0, (20, 30))])
def test_vectorised_equals_per_joint_reference(persons, sigma, size):
    rng = np.random.default_rng(persons)
    xy, score = random_skeleton(rng, persons, 3, size, num_joints=5)
    xy[0, 0, 0] = (-4.0, 25.0)   # joints outside the frame still spill in, as in the original
    xy[-1, 1, 1] = (size[1] + 3.3, -2.6)
    fast = render_heatmaps(xy, score, size, sigma=sigma)
    assert fast.shape == (5, 3) + size and fast.dtype == np.float32
    np.testing.assert_allclose(fast, render_heatmaps_per_joint(xy, score, size, sigma), rtol=0, atol=2.5e-7)  # 2 ulp of 1.0 + the 6-sigma window


def test_peak_position_value_and_persons():
    xy = np.zeros((2, 1, 2, 2), np.float32)
    score = np.zeros((2, 1, 2), np.float32)
    xy[0, 0, 0], score[0, 0, 0] = (7, 3), 0.8   # person 0, joint 0 at column 7, row 3
    xy[1, 0, 0], score[1, 0, 0] = (2, 9), 0.5   # person 1, same joint elsewhere
    xy[1, 0, 1], score[1, 0, 1] = (5, 5), 0.0   # absent joint
    heat = HeatmapRenderer(sigma=1.0)(xy, score, (12, 10))
    assert heat[0, 0, 3, 7] == pytest.approx(0.8) and heat[0, 0, 9, 2] == pytest.approx(0.5)
    assert np.unravel_index(heat[0, 0].argmax(), (12, 10)) == (3, 7)
    assert heat.max() <= 0.8 and not heat[1].any()
    assert heat[0, 0, 3, 8] == pytest.approx(0.8 * np.exp(-0.5))


def test_no_persons_gives_empty_maps():
    heat = render_heatmaps(np.zeros((0, 2, 17, 2)), np.zeros((0, 2, 17)), (4, 5), 2.0)
    assert heat.shape == (17, 2, 4, 5) and not heat.any()


def test_bad_sigma_and_shapes():
    with pytest.raises(ValueError, match="sigma must be positive"):
        HeatmapRenderer(sigma=0)
    with pytest.raises(ValueError, match=r"expected xy \(M, T, V, 2\)"):
        render_heatmaps(np.zeros((2, 17, 2)), np.zeros((2, 17)), (4, 4), 1.0)


def test_batched_torch_renderer_equals_the_loader_renderer():
    """What is drawn on the device equals what the loader draws, clip by clip, including joints
    outside the frame, zero scores and a clip padded with a score-0 person."""
    rng = np.random.default_rng(3)
    size, sigma = (20, 28), 1.7
    clips = []
    for persons in (2, 1):
        xy, score = random_skeleton(rng, persons, 3, size)
        xy[0, 0, :3] = [[-4.0, 5.0], [30.5, 21.0], [27.6, -1.2]]  # off the frame, partly
        score[0, 1, 4:6] = 0.0
        clips.append((xy, score))
    keypoints = torch.zeros(2, 2, 3, 17, 3)
    for b, (xy, score) in enumerate(clips):
        keypoints[b, :xy.shape[0], ..., :2] = torch.from_numpy(xy)
        keypoints[b, :xy.shape[0], ..., 2] = torch.from_numpy(score)
    drawn = render_heatmaps_torch(keypoints, size, sigma)
    assert drawn.shape == (2, 17, 3, 20, 28) and drawn.dtype == torch.float32
    for b, (xy, score) in enumerate(clips):
        np.testing.assert_allclose(drawn[b].numpy(), render_heatmaps(xy, score, size, sigma), rtol=0, atol=1e-6)
    assert render_heatmaps_torch(torch.zeros(1, 0, 3, 17, 3), size, sigma).abs().sum() == 0
    with pytest.raises(ValueError, match=r"\(B, M, T, V, 3\)"):
        render_heatmaps_torch(torch.zeros(1, 3, 17, 3), size, sigma)
    with pytest.raises(ValueError, match="render_on"):
        HeatmapRenderer(render_on="gpu")


def test_a_stride_draws_each_joint_on_its_cell_at_a_fraction_of_the_size():
    """stride 2: 6x8 heatmaps for a 12x16 crop; a joint at the centre of the crop pixels of output
    cell (r, c) (crop pixel 2c + 0.5, 2r + 0.5) peaks there at its score, and one output pixel is
    sigma (output pixels) x stride crop pixels wide; loader and device renderers agree."""
    xy = np.zeros((1, 2, 2, 2), np.float32)
    score = np.zeros((1, 2, 2), np.float32)
    xy[0, 0, 0], score[0, 0, 0] = (2 * 5 + 0.5, 2 * 1 + 0.5), 0.9   # -> column 5, row 1
    xy[0, 1, 1], score[0, 1, 1] = (0.0, 11.0), 0.6                  # -> column -0.25, row 5.25
    renderer = HeatmapRenderer(sigma=1.0, stride=2)
    heat = renderer(xy, score, (12, 16))
    assert heat.shape == (2, 2, 6, 8)
    assert heat[0, 0, 1, 5] == pytest.approx(0.9) and heat[0, 0].max() == pytest.approx(0.9)
    assert heat[0, 0, 1, 6] == pytest.approx(0.9 * np.exp(-0.5))
    expected = 0.6 * np.exp(-((0 + 0.25) ** 2 + (5 - 5.25) ** 2) / 2)
    assert heat[1, 1, 5, 0] == pytest.approx(expected, rel=1e-6) and not heat[1, 0].any()
    keypoints = torch.from_numpy(np.concatenate([xy, score[..., None]], -1))[None]
    np.testing.assert_allclose(renderer.render_batch(keypoints, (12, 16))[0].numpy(), heat, rtol=0, atol=1e-6)
    unstrided = HeatmapRenderer(sigma=2.0)(xy, score, (12, 16))
    assert unstrided.shape == (2, 2, 12, 16) and np.array_equal(unstrided, render_heatmaps(xy, score, (12, 16), 2.0))


def test_a_stride_must_divide_the_crop_and_be_whole():
    with pytest.raises(ValueError, match=r"skeleton_heatmaps.stride = 3 does not divide the crop 12x16"):
        HeatmapRenderer(stride=3)(np.zeros((1, 1, 1, 2)), np.ones((1, 1, 1)), (12, 16))
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="skeleton_heatmaps.stride must be a whole number"):
            HeatmapRenderer(stride=bad)


def test_a_stride_commutes_with_a_horizontal_flip():
    """A joint mirrored in the crop (x -> W - 1 - x) is drawn mirrored on the strided grid, so a
    flipped clip's heatmaps are its heatmaps flipped, as at full size."""
    rng = np.random.default_rng(7)
    xy, score = random_skeleton(rng, 2, 3, (16, 24), num_joints=5)
    mirrored = xy.copy()
    mirrored[..., 0] = 24 - 1 - xy[..., 0]
    renderer = HeatmapRenderer(sigma=1.0, stride=2)
    np.testing.assert_allclose(renderer(mirrored, score, (16, 24)), renderer(xy, score, (16, 24))[..., ::-1],
                               rtol=0, atol=1e-6)
