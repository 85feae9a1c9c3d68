"""Domain looks for the cross-domain demo world: how a domain's clips appear, not what moves.

The cross-domain world (worlds.py) shows one set of actions in a 'studio' look (the labelled
source domain) and other actions in a 'street' look (the target domain). The looks differ in
everything a pixel model sees (background family, contrast polarity, figure colours and style,
clutter) and in nothing that flow or pose see: the same figure geometry, sizes and motions.
In the source look a background tint is tied to the class for most clips (`cue`), a shortcut
an RGB model trained on the source can take; it does not exist in the target.

Both looks draw big, thick figures on calm backgrounds, so that motion is visible to a patch-16
RGB ViT at 64x64 (the single world's thin figures on textured backgrounds were not).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mmdistill.demo.appearance import Layers, place_figure, stack_layers
from mmdistill.demo.figure import STANDING_ANKLE_Y


def _hsv(hue, saturation, value):
    """RGB in [0, 255] from HSV in [0, 1]."""
    return 255.0 * np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value))


def _studio_background(rng, height, width, hue):
    """A bright, smooth vertical gradient of one hue (a lit backdrop)."""
    top = _hsv(hue, rng.uniform(0.45, 0.65), rng.uniform(0.85, 1.0))
    bottom = _hsv(hue, rng.uniform(0.35, 0.55), rng.uniform(0.65, 0.8))
    weight = np.linspace(0, 1, height)[:, None, None]
    image = top + (bottom - top) * weight + np.zeros((height, width, 3))
    return np.clip(image + rng.normal(0, 2.0, image.shape), 0, 255)


def _studio_clothes(rng):
    """Dark, saturated clothes on the bright backdrop: separate shirt, trousers and skin."""
    shirt = _hsv(rng.uniform(), rng.uniform(0.5, 0.9), rng.uniform(0.2, 0.4))
    return {'shirt': shirt, 'sleeve': shirt,
            'trousers': _hsv(rng.uniform(), rng.uniform(0.2, 0.5), rng.uniform(0.1, 0.25)),
            'skin': _hsv(rng.uniform(0.03, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.5))}


def _street_background(rng, height, width, hue):
    """Dim, desaturated, low-contrast texture (stripes, tiles or blotches) in cool colours:
    the clip's hue is mapped into the blue-green family."""
    base = 0.52 + 0.18 * hue
    c1 = _hsv(base, rng.uniform(0.1, 0.35), rng.uniform(0.15, 0.3))
    c2 = _hsv(base + rng.uniform(-0.05, 0.05), rng.uniform(0.1, 0.35), rng.uniform(0.3, 0.45))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    kind = rng.integers(3)
    if kind == 0:    # stripes
        angle = rng.uniform(0, np.pi)
        along = (xs * np.cos(angle) + ys * np.sin(angle)) / max(height, width)
        weight = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 7) * along)
    elif kind == 1:  # tiles
        cell = rng.integers(6, 14)
        weight = ((xs // cell + ys // cell) % 2).astype(np.float64)
    else:            # blotches
        coarse = rng.uniform(0, 1, (rng.integers(3, 6), rng.integers(3, 6)))
        image = Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height),
                                                                        Image.BILINEAR)
        weight = np.asarray(image, np.float64) / 255
    image = c1 + (c2 - c1) * weight[..., None]
    return np.clip(image + rng.normal(0, 4.0, image.shape), 0, 255)


def _street_clothes(rng):
    """Light clothes on the dim street: one colour for the whole body, a paler head."""
    body = _hsv(rng.uniform(), rng.uniform(0.15, 0.5), rng.uniform(0.8, 1.0))
    head = _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.1, 0.3), rng.uniform(0.85, 1.0))
    return {'shirt': body, 'sleeve': body, 'trousers': body, 'skin': head}


@dataclass(frozen=True)
class Look:
    """One domain's appearance; figure sizes are fractions of the frame / figure height."""
    background: callable   # (rng, height, width, hue in [0, 1)) -> (H, W, 3) float
    clothes: callable      # rng -> {'shirt', 'sleeve', 'trousers', 'skin'}: RGB
    figure_height: tuple   # of the frame height
    limb_radius: tuple     # of the figure height
    max_distractors: int   # drifting discs behind the figure
    distractor_value: tuple  # their brightness range (HSV value)


LOOKS = {
    'studio': Look(_studio_background, _studio_clothes, (0.72, 0.88), (0.055, 0.075), 0,
                   (0.0, 0.0)),
    'street': Look(_street_background, _street_clothes, (0.72, 0.88), (0.055, 0.075), 1,
                   (0.35, 0.55)),
}


def _distractors(rng, look, num_frames, height, width):
    """Up to `look.max_distractors` dim discs drifting behind the figure."""
    count = int(rng.integers(0, look.max_distractors + 1))
    frames = np.arange(num_frames)[:, None]
    centres, radii, colours = [], [], []
    for _ in range(count):
        centres.append(rng.uniform([0, 0], [width, height]) + frames * rng.uniform(-1.5, 1.5, 2))
        radii.append(rng.uniform(0.05, 0.09) * width)
        colour = _hsv(rng.uniform(), rng.uniform(0.1, 0.4), rng.uniform(*look.distractor_value))
        colours.append(np.tile(colour, (num_frames, 1)))
    if not count:
        empty = np.zeros((num_frames, 0, 2))
        return Layers(empty, empty, np.zeros(0), np.zeros((num_frames, 0, 3)),
                      np.zeros((num_frames, 0)))
    centres = np.stack(centres, 1)
    return Layers(centres, centres, np.array(radii), np.stack(colours, 1),
                  np.full((num_frames, count), -10.0))


def look_scene(look_name, joints, rng, num_frames, size, cue=None, recording=None):
    """The scene of one clip in look `look_name`: (layers, background, figure height px, centre).

    `cue` (hue, probability) ties the background hue to the class: with that probability the
    clip's backdrop takes the class hue, otherwise a random one. None: no class-tied tint.
    `recording`: the random stream of the clip's recording, which then draws the backdrop and the
    performer's clothes, so every clip of a recording shares them (placement, size, distractors
    and motion stay the clip's own). None: the clip is a scene of its own.
    """
    if look_name not in LOOKS:
        raise ValueError(f'Unknown demo look {look_name!r}; choose from {sorted(LOOKS)}.')
    look = LOOKS[look_name]
    height, width = size
    figure_height = rng.uniform(*look.figure_height) * height
    centre = (rng.uniform(0.4, 0.6) * width,
              rng.uniform(0.52 * figure_height + 1,
                          max(height - STANDING_ANKLE_Y * figure_height - 1,
                              0.52 * figure_height + 1)))
    tied = rng.random()  # drawn for every clip, so clip streams do not depend on `cue`
    hue = rng.uniform()
    if cue is not None and tied < cue[1]:
        hue = cue[0]
    scene = rng if recording is None else recording
    if recording is not None:
        hue = recording.uniform()
    background = look.background(scene, height, width, hue)
    limb_radius = rng.uniform(*look.limb_radius) * figure_height
    figure = place_figure(joints, figure_height, centre, limb_radius, look.clothes(scene))
    distractors = _distractors(rng, look, num_frames, height, width)
    return stack_layers(distractors, figure), background, figure_height, centre
