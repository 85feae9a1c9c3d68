"""The demo's appearance: background, clothes and distractors, as layers for the rasteriser.

Everything here is drawn from the clip's random stream without looking at the action, so
appearance says nothing about the class. A scene is a set of capsules (`Layers`): the figure's
parts, placed from its 3-D joints, and discs and bars drifting behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from mmdistill.demo.figure import HEAD_RADIUS


def _random_colour(rng):
    return rng.uniform(0, 255, 3)


def _contrasting_colour(rng, against, min_distance=90.0):
    colour = _random_colour(rng)
    for _ in range(30):
        if np.linalg.norm(colour - against) >= min_distance:
            break
        colour = _random_colour(rng)
    return colour


def background(rng, height, width):
    """A static textured background (H, W, 3) float in [0, 255]; static so its flow is zero."""
    c1, c2 = _random_colour(rng), _random_colour(rng)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    along = (xs * np.cos(angle) + ys * np.sin(angle)) / max(height, width)
    kind = rng.integers(4)
    if kind == 0:    # linear gradient
        weight = (along - along.min()) / max(np.ptp(along), 1e-6)
    elif kind == 1:  # soft stripes
        weight = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * along + rng.uniform(0, 6.3))
    elif kind == 2:  # checkerboard
        cell = rng.integers(4, 17)
        weight = ((xs // cell + ys // cell) % 2).astype(np.float64)
    else:            # smooth blobs: bilinear upsampling of a coarse random grid
        coarse = rng.uniform(0, 1, (rng.integers(3, 7), rng.integers(3, 7)))
        image = Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height),
                                                                        Image.BILINEAR)
        weight = np.asarray(image, np.float64) / 255
    image = c1 + (c2 - c1) * weight[..., None]
    image += rng.normal(0, rng.uniform(2, 10), image.shape)
    return np.clip(image, 0, 255)


@dataclass
class Layers:
    """Capsules to draw, back to front after sorting by depth: start/end points (T, L, 2) in
    pixels, radius (L,), colour (T, L, 3), depth (T, L). A disc is a capsule with start == end."""
    start: np.ndarray
    end: np.ndarray
    radius: np.ndarray
    colour: np.ndarray
    depth: np.ndarray


# (name, from, to, radius relative to the limb radius, clothing part)
_FIGURE_PARTS = (
    ('torso', 'neck', 'pelvis', 1.9, 'shirt'),
    ('shoulders', 'l_shoulder', 'r_shoulder', 1.0, 'shirt'),
    ('hips', 'l_hip', 'r_hip', 1.2, 'trousers'),
    ('neck', 'neck', 'head', 0.8, 'skin'),
    ('head', 'head', 'head', None, 'skin'),
    ('l_upper', 'l_shoulder', 'l_elbow', 1.0, 'shirt'),
    ('r_upper', 'r_shoulder', 'r_elbow', 1.0, 'shirt'),
    ('l_fore', 'l_elbow', 'l_wrist', 0.9, 'sleeve'),
    ('r_fore', 'r_elbow', 'r_wrist', 0.9, 'sleeve'),
    ('l_thigh', 'l_hip', 'l_knee', 1.2, 'trousers'),
    ('r_thigh', 'r_hip', 'r_knee', 1.2, 'trousers'),
    ('l_shin', 'l_knee', 'l_ankle', 1.0, 'trousers'),
    ('r_shin', 'r_knee', 'r_ankle', 1.0, 'trousers'),
)
# Small depth nudges so that ties resolve naturally: limbs over the torso, head over the neck.
_DEPTH_BIAS = {'torso': -0.02, 'neck': -0.01, 'head': 0.03}


def figure_layers(joints, rng, height_px, centre, background_mean):
    limb_radius = rng.uniform(0.035, 0.05) * height_px
    clothes = {'shirt': _contrasting_colour(rng, background_mean),
               'trousers': _contrasting_colour(rng, background_mean),
               'skin': _contrasting_colour(rng, background_mean, 60)}
    clothes['sleeve'] = clothes['skin'] if rng.random() < 0.5 else clothes['shirt']
    return place_figure(joints, height_px, centre, limb_radius, clothes)


def place_figure(joints, height_px, centre, limb_radius, clothes):
    """The figure's capsules in pixels; `clothes` maps shirt/trousers/skin/sleeve to RGB."""
    to_px = lambda p: np.stack([centre[0] + height_px * p[:, 0], centre[1] + height_px * p[:, 1]], -1)
    starts, ends, radii, colours, depths = [], [], [], [], []
    for name, a, b, radius, part in _FIGURE_PARTS:
        starts.append(to_px(joints[a]))
        ends.append(to_px(joints[b]))
        radii.append(HEAD_RADIUS * height_px if radius is None else radius * limb_radius)
        depth = 0.5 * (joints[a][:, 2] + joints[b][:, 2]) + _DEPTH_BIAS.get(name, 0)
        depths.append(depth)
        # Parts nearer the camera are a little brighter: a cheap 3-D cue for turns.
        shade = 1 + 0.3 * np.clip(depth, -0.25, 0.25)
        colours.append(np.clip(clothes[part][None] * shade[:, None], 0, 255))
    return Layers(np.stack(starts, 1), np.stack(ends, 1), np.array(radii),
                   np.stack(colours, 1), np.stack(depths, 1))


def distractor_layers(rng, num_frames, height, width, max_distractors):
    """Discs and bars drifting at constant velocity behind the figure: motion that is not the
    action, so neither appearance nor 'anything moving' identifies the class."""
    count = int(rng.integers(0, max_distractors + 1))
    frames = np.arange(num_frames)[:, None]
    starts, ends, radii, colours = [], [], [], []
    for _ in range(count):
        position = rng.uniform([0, 0], [width, height])
        velocity = rng.uniform(-1.5, 1.5, 2)
        angle = rng.uniform(0, np.pi)
        half_bar = rng.uniform(0, 0.15 * width) * np.array([np.cos(angle), np.sin(angle)])
        centre = position + frames * velocity
        starts.append(centre - half_bar)
        ends.append(centre + half_bar)
        radii.append(rng.uniform(0.03, 0.08) * width)
        colours.append(np.tile(_random_colour(rng), (num_frames, 1)))
    if not count:
        empty = np.zeros((num_frames, 0, 2))
        return Layers(empty, empty, np.zeros(0), np.zeros((num_frames, 0, 3)),
                       np.zeros((num_frames, 0)))
    return Layers(np.stack(starts, 1), np.stack(ends, 1), np.array(radii),
                   np.stack(colours, 1), np.full((num_frames, count), -10.0))



def stack_layers(back, front):
    """One Layers holding `back`'s capsules then `front`'s (depth still decides the drawing)."""
    join = lambda a, b, axis=1: np.concatenate([a, b], axis=axis)
    return Layers(join(back.start, front.start), join(back.end, front.end),
                  join(back.radius, front.radius, 0), join(back.colour, front.colour),
                  join(back.depth, front.depth))
