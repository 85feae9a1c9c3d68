"""Synthetic multi-modal demo data: stick figures performing actions, written in the real formats.

The demo must run on a fresh clone without any download, yet exercise the same readers as real
data. So this module renders small videos of a 3-D stick figure (random clothes, background,
position, size, speed and viewpoint) performing one of several actions, and writes, under a root:

    frames/{video}/{frame:06d}.jpg      RGB frames, files numbered from 1
    flows/{video}/pair_{frame:05d}.npy  float16 [2, H, W] flow from frame k to k+1 (dx, dy pixels)
    skeletons/{video}.pkl               MMAction2-style dict, COCO-17 keypoints in pixels
    unlabeled.json, fewshot.json (, fewshot_val.json)   tennis-style events (0-based frame index)
    manifest.json                       generator version + parameters (for cache reuse)

Flow and keypoints come from the same geometry that draws the frames: every visible pixel
belongs to one rigid capsule (a limb, the torso, the head or a distractor), and its flow is
where that point of the capsule sits in the next frame. Appearance is sampled independently of
the action, so only pose and motion tell the classes apart.
"""

from __future__ import annotations

import argparse
import inspect
import json
import pickle
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import gin
import numpy as np
from PIL import Image
from mmdistill.progress import progress as progress_bar

GENERATOR = 'mmdistill.data.synthetic'
# Bump whenever the rendered content changes, so cached demo data is regenerated.
GENERATOR_VERSION = 1

FRAME_TEMPLATE = 'frames/{video}/{frame:06d}.jpg'
FLOW_TEMPLATE = 'flows/{video}/pair_{frame:05d}.npy'
SKELETON_TEMPLATE = 'skeletons/{video}.pkl'
UNLABELED_FILE = 'unlabeled.json'
FEWSHOT_FILE = 'fewshot.json'
FEWSHOT_VAL_FILE = 'fewshot_val.json'
MANIFEST_FILE = 'manifest.json'
FPS = 25
DEFAULT_ROOT = '.cache/demo_data'  # relative to the working directory; .cache/ is git-ignored
# Everything the generator writes at the top level of its root; only these are ever deleted.
OWNED_ENTRIES = frozenset({'frames', 'flows', 'skeletons', UNLABELED_FILE, FEWSHOT_FILE,
                           FEWSHOT_VAL_FILE, MANIFEST_FILE})

COCO17_JOINTS = ('nose', 'l_eye', 'r_eye', 'l_ear', 'r_ear', 'l_shoulder', 'r_shoulder',
                 'l_elbow', 'r_elbow', 'l_wrist', 'r_wrist', 'l_hip', 'r_hip', 'l_knee',
                 'r_knee', 'l_ankle', 'r_ankle')

# ---------------------------------------------------------------------------------------------
# Body model. Units: figure height ~1, origin at the pelvis, x = the person's left (image right
# when facing the camera), y = down, z = towards the camera. Projection is orthographic.
# ---------------------------------------------------------------------------------------------
HIP_HALF_WIDTH = 0.085
SHOULDER_HALF_WIDTH = 0.12
TORSO_LENGTH = 0.30
NECK_TO_HEAD = 0.11
HEAD_RADIUS = 0.075
UPPER_ARM, FOREARM, THIGH, SHIN = 0.16, 0.15, 0.235, 0.235
STANDING_ANKLE_Y = THIGH + SHIN
LIMBS = ('l_upper', 'l_fore', 'r_upper', 'r_fore', 'l_thigh', 'l_shin', 'r_thigh', 'r_shin')
# Face points relative to the head centre, facing +z.
FACE_OFFSETS = {'nose': (0.0, 0.012, 0.07), 'l_eye': (0.027, -0.015, 0.062),
                'r_eye': (-0.027, -0.015, 0.062), 'l_ear': (0.07, 0.0, 0.0),
                'r_ear': (-0.07, 0.0, 0.0)}


def _limb_direction(abduction_deg, flexion_deg, side):
    """Unit vector of a limb: abduction swings it sideways (0 = hanging, 180 = straight up),
    flexion swings it forward towards the camera. `side` is +1 for left limbs, -1 for right."""
    a, f = np.deg2rad(abduction_deg), np.deg2rad(flexion_deg)
    return np.stack([side * np.sin(a) * np.cos(f), np.cos(a) * np.cos(f), np.sin(f)], axis=-1)


def _rest_pose(num_frames):
    """Angles in degrees and offsets in body units, one value per frame."""
    zeros = np.zeros(num_frames)
    pose = {k: zeros.copy() for k in ('yaw', 'lean', 'pitch', 'lift', 'travel')}
    rest = {'upper': (8, 0), 'fore': (5, 8), 'thigh': (3, 0), 'shin': (2, 0)}
    for limb in LIMBS:
        abduction, flexion = rest[limb[2:]]
        pose[limb + '_abd'] = zeros + abduction
        pose[limb + '_flex'] = zeros + flexion
    return pose


def _set_limb(pose, limb, abduction=None, flexion=None):
    """Set a limb's angles (a number or one value per frame)."""
    for key, value in (('_abd', abduction), ('_flex', flexion)):
        if value is not None:
            pose[limb + key] = np.zeros_like(pose[limb + key]) + value


def _rotate_x(points, deg):
    """Bow forward: the head moves towards the camera (+z) and down."""
    r = np.deg2rad(deg)  # (T,), broadcasts over (J, T)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([x, y * np.cos(r) + z * np.sin(r), -y * np.sin(r) + z * np.cos(r)], -1)


def _rotate_z(points, deg):
    """Lean sideways in the image plane about the pelvis."""
    r = np.deg2rad(deg)  # (T,), broadcasts over (J, T)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([x * np.cos(r) - y * np.sin(r), x * np.sin(r) + y * np.cos(r), z], -1)


def _rotate_y(points, deg):
    """Turn about the vertical axis; +90 makes the person face image right."""
    r = np.deg2rad(deg)  # (T,), broadcasts over (J, T)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([x * np.cos(r) + z * np.sin(r), y, -x * np.sin(r) + z * np.cos(r)], -1)


def _pose_to_joints(pose):
    """Forward kinematics: pose angles -> 3-D points (T, 3) for joints and drawing anchors."""
    num_frames = len(pose['yaw'])
    const = lambda x, y, z: np.tile(np.array([x, y, z], float), (num_frames, 1))
    limb = lambda name, side: _limb_direction(pose[name + '_abd'], pose[name + '_flex'], side)

    upper = {'neck': const(0, -TORSO_LENGTH, 0), 'head': const(0, -TORSO_LENGTH - NECK_TO_HEAD, 0)}
    for name, offset in FACE_OFFSETS.items():
        upper[name] = upper['head'] + np.array(offset)
    for side, s in (('l', 1), ('r', -1)):
        shoulder = const(s * SHOULDER_HALF_WIDTH, -TORSO_LENGTH, 0)
        elbow = shoulder + UPPER_ARM * limb(side + '_upper', s)
        upper[side + '_shoulder'] = shoulder
        upper[side + '_elbow'] = elbow
        upper[side + '_wrist'] = elbow + FOREARM * limb(side + '_fore', s)
    names = list(upper)
    stacked = np.stack([upper[n] for n in names], axis=1)  # (T, J, 3)
    stacked = _rotate_z(_rotate_x(stacked.transpose(1, 0, 2), pose['pitch']), pose['lean'])
    joints = dict(zip(names, stacked))

    joints['pelvis'] = const(0, 0, 0)
    for side, s in (('l', 1), ('r', -1)):
        hip = const(s * HIP_HALF_WIDTH, 0, 0)
        knee = hip + THIGH * limb(side + '_thigh', s)
        joints[side + '_hip'] = hip
        joints[side + '_knee'] = knee
        joints[side + '_ankle'] = knee + SHIN * limb(side + '_shin', s)

    names = list(joints)
    stacked = _rotate_y(np.stack([joints[n] for n in names]), pose['yaw'])
    # Keep the lower foot on the ground, then add jumps and walking.
    ground_shift = STANDING_ANKLE_Y - np.maximum(stacked[names.index('l_ankle'), :, 1],
                                                 stacked[names.index('r_ankle'), :, 1])
    stacked[..., 1] += ground_shift - pose['lift']
    stacked[..., 0] += pose['travel']
    return dict(zip(names, stacked))


# ---------------------------------------------------------------------------------------------
# Actions. Each fills the pose for phase `phi` (radians, one per frame) and clip progress in
# [0, 1). `style` holds per-clip randomness that must not change the class: which side moves,
# which way the figure walks or turns, and an amplitude factor.
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Style:
    side: str       # 'l' or 'r': the arm that waves, the leg that kicks, ...
    direction: int  # +1 / -1: walking or turning direction
    amplitude: float
    cycles: float   # movement cycles in the clip


def _other(side):
    return 'r' if side == 'l' else 'l'


def _up_down(phi):
    """0 -> 1 -> 0 over one cycle."""
    return 0.5 - 0.5 * np.cos(phi)


def _guard(pose):
    for side in 'lr':
        _set_limb(pose, side + '_upper', 20, 40)
        _set_limb(pose, side + '_fore', 20, 150)


def _wave(pose, phi, progress, style):
    _set_limb(pose, style.side + '_upper', 135 + 10 * style.amplitude, 10)
    _set_limb(pose, style.side + '_fore', 165 + 32 * style.amplitude * np.sin(phi), 10)


def _clap(pose, phi, progress, style):
    u = _up_down(phi) * style.amplitude
    for side in 'lr':
        _set_limb(pose, side + '_upper', -10 + 30 * u, 60 - 10 * u)
        _set_limb(pose, side + '_fore', -60 + 90 * u, 45 + 5 * u)


def _jumping_jacks(pose, phi, progress, style):
    u = _up_down(phi) * style.amplitude
    arm = np.minimum(10 + 150 * u, 175)
    for side in 'lr':
        _set_limb(pose, side + '_upper', arm, 0)
        _set_limb(pose, side + '_fore', np.minimum(arm + 10 * u, 180), 0)
        _set_limb(pose, side + '_thigh', 3 + 18 * u, 0)
        _set_limb(pose, side + '_shin', 3 + 18 * u, 0)
    pose['lift'] = 0.04 * np.abs(np.sin(phi))


def _squat(pose, phi, progress, style):
    u = _up_down(phi) * style.amplitude
    for side in 'lr':
        _set_limb(pose, side + '_thigh', 8, np.minimum(85 * u, 95))
        _set_limb(pose, side + '_shin', 5, -15 * u)
        _set_limb(pose, side + '_upper', 10, 85 * u)
        _set_limb(pose, side + '_fore', 5, 85 * u)
    pose['pitch'] = 20 * u


def _kick(pose, phi, progress, style):
    k = np.maximum(0, np.sin(phi)) ** 2 * style.amplitude
    _guard(pose)
    _set_limb(pose, style.side + '_thigh', 75 * k, 0)
    _set_limb(pose, style.side + '_shin', 85 * k, 0)
    _set_limb(pose, _other(style.side) + '_thigh', 6, 0)
    pose['lean'] = (15 if style.side == 'r' else -15) * k


def _walk(pose, phi, progress, style):
    swing = 28 * style.amplitude * np.sin(phi)
    for side, sign in (('l', 1), ('r', -1)):
        _set_limb(pose, side + '_thigh', 2, sign * swing)
        _set_limb(pose, side + '_shin', 2, sign * swing - 35 * np.maximum(0, -sign * np.sin(phi)))
        _set_limb(pose, side + '_upper', 6, -sign * 0.8 * swing)
        _set_limb(pose, side + '_fore', 6, -sign * 0.8 * swing + 15)
    pose['yaw'] = pose['yaw'] + 90 * style.direction
    pose['travel'] = style.direction * 0.5 * style.cycles * (progress - 0.5)


def _spin(pose, phi, progress, style):
    for side in 'lr':
        _set_limb(pose, side + '_upper', 55, 0)
        _set_limb(pose, side + '_fore', 65, 0)
    pose['yaw'] = pose['yaw'] + style.direction * 360 * progress * style.amplitude


def _punch(pose, phi, progress, style):
    _guard(pose)
    for side, p in (('l', np.maximum(0, np.sin(phi))), ('r', np.maximum(0, -np.sin(phi)))):
        p = np.minimum(p ** 2 * style.amplitude, 1)
        _set_limb(pose, side + '_upper', 20 * (1 - p), 40 + 50 * p)
        _set_limb(pose, side + '_fore', 20 * (1 - p), 150 - 60 * p)
    for side in 'lr':
        _set_limb(pose, side + '_thigh', 8, 0)


def _arm_circles(pose, phi, progress, style):
    for side in 'lr':
        abduction = 90 + 25 * style.amplitude * np.sin(phi)
        flexion = 25 * style.amplitude * np.cos(phi)
        _set_limb(pose, side + '_upper', abduction, flexion)
        _set_limb(pose, side + '_fore', abduction, flexion)


def _jump(pose, phi, progress, style):
    flight = np.maximum(0, np.sin(phi))
    crouch = np.maximum(0, -np.sin(phi))
    for side in 'lr':
        _set_limb(pose, side + '_thigh', 5, 60 * crouch)
        _set_limb(pose, side + '_shin', 3, -15 * crouch)
        _set_limb(pose, side + '_upper', 10, -30 * crouch + 150 * flight)
        _set_limb(pose, side + '_fore', 10, -30 * crouch + 160 * flight)
    pose['lift'] = 0.22 * style.amplitude * flight


def _side_bend(pose, phi, progress, style):
    pose['lean'] = 28 * style.amplitude * np.sin(phi)
    for side in 'lr':
        _set_limb(pose, side + '_upper', 25, 0)
        _set_limb(pose, side + '_fore', 20, 0)


def _march(pose, phi, progress, style):
    for side, lift in (('l', np.maximum(0, np.sin(phi))), ('r', np.maximum(0, -np.sin(phi)))):
        _set_limb(pose, side + '_thigh', 4, 75 * style.amplitude * lift)
        _set_limb(pose, side + '_shin', 2, 0)
        _set_limb(pose, _other(side) + '_upper', 8, 35 * lift)
        _set_limb(pose, _other(side) + '_fore', 8, 75 * lift)


def _bow(pose, phi, progress, style):
    pose['pitch'] = 50 * style.amplitude * _up_down(phi)


def _reach(pose, phi, progress, style):
    for side, up in (('l', np.maximum(0, np.sin(phi))), ('r', np.maximum(0, -np.sin(phi)))):
        angle = 10 + 165 * np.minimum(up * style.amplitude, 1)
        _set_limb(pose, side + '_upper', angle, 0)
        _set_limb(pose, side + '_fore', angle, 0)
    pose['lift'] = 0.03 * np.abs(np.sin(phi))


@dataclass(frozen=True)
class _Action:
    animate: callable
    cycles: tuple   # range of movement cycles per clip
    yaw: tuple      # range of |base yaw| in degrees (sign random)


# Order matters: the first `num_classes` are used. Every class is closed under a horizontal flip
# (the moving side / direction is random), so flip augmentation never turns one class into another.
ACTIONS = {
    'wave': _Action(_wave, (1.0, 2.5), (0, 35)),
    'clap': _Action(_clap, (2.0, 3.5), (0, 35)),
    'jumping_jacks': _Action(_jumping_jacks, (1.0, 2.0), (0, 35)),
    'squat': _Action(_squat, (0.75, 1.5), (0, 50)),
    'kick': _Action(_kick, (1.0, 2.0), (0, 35)),
    'walk': _Action(_walk, (0.75, 1.25), (0, 12)),
    'spin': _Action(_spin, (1.0, 1.0), (0, 35)),
    'punch': _Action(_punch, (1.0, 2.0), (30, 60)),
    'arm_circles': _Action(_arm_circles, (1.0, 2.5), (0, 35)),
    'jump': _Action(_jump, (1.0, 1.5), (0, 35)),
    'side_bend': _Action(_side_bend, (0.75, 1.5), (0, 25)),
    'march': _Action(_march, (1.0, 2.0), (0, 35)),
    'bow': _Action(_bow, (0.75, 1.25), (30, 70)),
    'reach': _Action(_reach, (1.0, 2.0), (0, 35)),
}


# ---------------------------------------------------------------------------------------------
# Appearance: background, clothes, distractors. Sampled without looking at the action.
# ---------------------------------------------------------------------------------------------
def _random_colour(rng):
    return rng.uniform(0, 255, 3)


def _contrasting_colour(rng, against, min_distance=90.0):
    colour = _random_colour(rng)
    for _ in range(30):
        if np.linalg.norm(colour - against) >= min_distance:
            break
        colour = _random_colour(rng)
    return colour


def _background(rng, height, width):
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
class _Layers:
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


def _figure_layers(joints, rng, height_px, centre, background_mean):
    to_px = lambda p: np.stack([centre[0] + height_px * p[:, 0], centre[1] + height_px * p[:, 1]], -1)
    limb_radius = rng.uniform(0.035, 0.05) * height_px
    clothes = {'shirt': _contrasting_colour(rng, background_mean),
               'trousers': _contrasting_colour(rng, background_mean),
               'skin': _contrasting_colour(rng, background_mean, 60)}
    clothes['sleeve'] = clothes['skin'] if rng.random() < 0.5 else clothes['shirt']
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
    return _Layers(np.stack(starts, 1), np.stack(ends, 1), np.array(radii),
                   np.stack(colours, 1), np.stack(depths, 1))


def _distractor_layers(rng, num_frames, height, width, max_distractors):
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
        return _Layers(empty, empty, np.zeros(0), np.zeros((num_frames, 0, 3)),
                       np.zeros((num_frames, 0)))
    return _Layers(np.stack(starts, 1), np.stack(ends, 1), np.array(radii),
                   np.stack(colours, 1), np.full((num_frames, count), -10.0))


# ---------------------------------------------------------------------------------------------
# Rasteriser. Hand-written rather than PIL.ImageDraw because the flow needs, for every pixel,
# which capsule covers it and where on that capsule it lies; one distance field gives both the
# anti-aliased drawing and that correspondence, so frames and flow cannot disagree.
# ---------------------------------------------------------------------------------------------
def _axis_frame(start, end):
    """Unit axis direction and its normal per frame and layer; (1, 0) for discs."""
    axis = end - start
    length = np.linalg.norm(axis, axis=-1, keepdims=True)
    unit = np.where(length > 1e-3, axis / np.maximum(length, 1e-9), np.array([1.0, 0.0]))
    normal = np.stack([-unit[..., 1], unit[..., 0]], -1)
    return unit, normal


def _capsule_coordinates(px, py, ax, ay, bx, by):
    """For pixel centres (px, py) and capsules from (ax, ay) to (bx, by), all broadcast: the
    axis position t in [0, 1] of the nearest axis point and the offset (dx, dy) from it."""
    axis_x, axis_y = bx - ax, by - ay
    t = ((px - ax) * axis_x + (py - ay) * axis_y) / np.maximum(axis_x ** 2 + axis_y ** 2, 1e-9)
    t = np.minimum(np.maximum(t, 0), 1)  # np.clip's wrapper costs more than the work here
    return t, px - ax - t * axis_x, py - ay - t * axis_y


def _paint(layers, background):
    """Paint capsules back to front. Frames that stack their layers in the same order are
    painted together, each layer only inside its bounding box over those frames: limbs cover
    a few percent of a frame, and per-frame loops would cost more in overhead than in work.

    Returns frames (T, H, W, 3) uint8 and, per pixel, the front-most layer covering at least
    half of it (-1 for background).
    """
    num_frames = layers.start.shape[0]
    height, width = background.shape[:2]
    image = np.broadcast_to(background, (num_frames, height, width, 3)).astype(np.float32)
    owner = np.full((num_frames, height, width), -1)
    columns, rows = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    order = np.argsort(layers.depth, axis=1, kind='stable')
    starts, ends = layers.start.astype(np.float32), layers.end.astype(np.float32)
    for stacking in np.unique(order, axis=0):
        group = np.flatnonzero((order == stacking).all(axis=1))
        frames = slice(None) if len(group) == num_frames else group
        for layer in stacking.tolist():
            a, b = starts[group, layer], ends[group, layer]  # (n, 2)
            reach = layers.radius[layer] + 1
            low = np.floor(np.minimum(a, b).min(0) - reach).astype(int)
            high = np.ceil(np.maximum(a, b).max(0) + reach).astype(int) + 1
            x0, y0 = max(low[0], 0), max(low[1], 0)
            x1, y1 = min(high[0], width), min(high[1], height)
            if x0 >= x1 or y0 >= y1:
                continue  # entirely outside the frame
            column = lambda v: v[:, None, None]
            _, dx, dy = _capsule_coordinates(columns[None, None, x0:x1], rows[None, y0:y1, None],
                                             column(a[:, 0]), column(a[:, 1]),
                                             column(b[:, 0]), column(b[:, 1]))
            alpha = np.minimum(np.maximum(np.float32(layers.radius[layer] + 0.5)
                                          - np.hypot(dx, dy), 0), 1)
            colour = layers.colour[group, layer].astype(np.float32)[:, None, None, :]
            patch = image[frames, y0:y1, x0:x1]
            image[frames, y0:y1, x0:x1] = patch + alpha[..., None] * (colour - patch)
            owned = owner[frames, y0:y1, x0:x1]
            owner[frames, y0:y1, x0:x1] = np.where(alpha >= 0.5, layer, owned)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), owner


def _render(layers, background):
    """Frames (T, H, W, 3) uint8 and forward flow (T-1, 2, H, W) float32 in pixels."""
    frames, owner = _paint(layers, background)
    # Each owned pixel is a point of a rigid capsule: keep its axis position t and its offset in
    # the capsule's own (axis, normal) frame, and re-place it on the capsule one frame later.
    k, y, x = np.nonzero(owner[:-1] >= 0)
    layer = owner[k, y, x]
    start, end = layers.start[k, layer], layers.end[k, layer]
    t, dx, dy = _capsule_coordinates(x, y, start[:, 0], start[:, 1], end[:, 0], end[:, 1])
    unit, normal = _axis_frame(layers.start, layers.end)
    along = dx * unit[k, layer, 0] + dy * unit[k, layer, 1]
    across = dx * normal[k, layer, 0] + dy * normal[k, layer, 1]
    flow = np.zeros((len(owner) - 1, 2) + owner.shape[1:], np.float32)
    for c, pixel in ((0, x), (1, y)):
        start, end = layers.start[k + 1, layer, c], layers.end[k + 1, layer, c]
        moved = (start + t * (end - start) + along * unit[k + 1, layer, c]
                 + across * normal[k + 1, layer, c])
        flow[k, c, y, x] = moved - pixel
    return frames, flow


# ---------------------------------------------------------------------------------------------
# One clip.
# ---------------------------------------------------------------------------------------------
@dataclass
class DemoClip:
    """Everything written for one video, kept in memory so tests can compare against it."""
    frames: np.ndarray     # (T, H, W, 3) uint8
    flow: np.ndarray       # (T-1, 2, H, W) float32, pair k = frame k -> k+1
    keypoints: np.ndarray  # (T, 17, 2) float32, x, y pixels, COCO-17 order
    scores: np.ndarray     # (T, 17) float32, 1 inside the frame, 0 outside
    action: str


def render_clip(action, rng, num_frames=16, size=(64, 64), max_distractors=3):
    """Render one clip of `action` with appearance and timing drawn from `rng`."""
    if action not in ACTIONS:
        raise ValueError(f'Unknown demo action {action!r}; choose from {sorted(ACTIONS)}.')
    height, width = size
    spec = ACTIONS[action]
    style = _Style(side='l' if rng.random() < 0.5 else 'r',
                   direction=1 if rng.random() < 0.5 else -1,
                   amplitude=float(rng.uniform(0.8, 1.15)),
                   cycles=float(rng.uniform(*spec.cycles)))
    progress = np.arange(num_frames) / num_frames
    phi = 2 * np.pi * style.cycles * progress + rng.uniform(0, 2 * np.pi)
    pose = _rest_pose(num_frames)
    pose['yaw'] += rng.choice([-1, 1]) * rng.uniform(*spec.yaw)
    spec.animate(pose, phi, progress, style)
    joints = _pose_to_joints(pose)

    figure_height = rng.uniform(0.55, 0.8) * height
    centre = (rng.uniform(0.35, 0.65) * width,
              rng.uniform(0.52 * figure_height + 1, height - STANDING_ANKLE_Y * figure_height - 1))
    background = _background(rng, height, width)
    figure = _figure_layers(joints, rng, figure_height, centre, background.mean((0, 1)))
    distractors = _distractor_layers(rng, num_frames, height, width, max_distractors)
    join = lambda a, b, axis=1: np.concatenate([a, b], axis=axis)
    layers = _Layers(join(distractors.start, figure.start), join(distractors.end, figure.end),
                     join(distractors.radius, figure.radius, 0),
                     join(distractors.colour, figure.colour), join(distractors.depth, figure.depth))
    frames, flow = _render(layers, background)

    body = np.stack([joints[name][:, :2] for name in COCO17_JOINTS], 1)  # (T, 17, 2), x and y
    keypoints = np.asarray(centre) + figure_height * body
    inside = ((keypoints[..., 0] >= 0) & (keypoints[..., 0] <= width - 1)
              & (keypoints[..., 1] >= 0) & (keypoints[..., 1] <= height - 1))
    return DemoClip(frames, flow, keypoints.astype(np.float32), inside.astype(np.float32), action)


def _clip_rng(seed, split_code, index):
    """Independent stream per clip, so a clip does not depend on how many others exist."""
    return np.random.default_rng([seed, split_code, index])


def _write_clip(root, video, clip, jpeg_quality):
    num_frames, height, width = clip.frames.shape[:3]
    frame_path = root / FRAME_TEMPLATE.format(video=video, frame=1)
    frame_path.parent.mkdir(parents=True, exist_ok=True)
    for k in range(num_frames):
        Image.fromarray(clip.frames[k]).save(root / FRAME_TEMPLATE.format(video=video, frame=k + 1),
                                             quality=jpeg_quality)
    flow_path = root / FLOW_TEMPLATE.format(video=video, frame=1)
    flow_path.parent.mkdir(parents=True, exist_ok=True)
    for k in range(num_frames - 1):
        np.save(root / FLOW_TEMPLATE.format(video=video, frame=k + 1), clip.flow[k].astype(np.float16))
    skeleton_path = root / SKELETON_TEMPLATE.format(video=video)
    skeleton_path.parent.mkdir(parents=True, exist_ok=True)
    skeleton = {'keypoint': clip.keypoints[None], 'keypoint_score': clip.scores[None],
                'img_shape': (int(height), int(width)), 'original_shape': (int(height), int(width)),
                'total_frames': int(num_frames), 'frame_dir': str(video)}
    with open(skeleton_path, 'wb') as f:
        pickle.dump(skeleton, f, protocol=4)


def _annotation(video, action, num_frames, size):
    # One event per video, starting the clip at the video's first frame. Event frames are 0-based
    # indices as in the F3Set tennis files (which contain frame 0), the annotation reader's
    # default; index i is stored in the file numbered i + 1 by FRAME_TEMPLATE.
    return {'video': video, 'fps': FPS, 'height': int(size[0]), 'width': int(size[1]),
            'num_frames': int(num_frames), 'events': [{'frame': 0, 'label': action}]}


# ---------------------------------------------------------------------------------------------
# Whole dataset.
# ---------------------------------------------------------------------------------------------
@gin.configurable('demo_data', denylist=['root'])
def generate_demo_dataset(root, seed=0, num_classes=8, val_classes=0, clips_per_class=20,
                          unlabeled_clips=160, num_frames=16, size=(64, 64), jpeg_quality=90,
                          max_distractors=3, progress=True):
    """Write the demo dataset into `root` (missing or empty) and return its path.

    `num_classes` actions go to fewshot.json and the next `val_classes` to fewshot_val.json
    (class-disjoint); unlabeled.json holds `unlabeled_clips` videos cycling over all of them.
    """
    root = Path(root)
    params = _normalise_params(dict(seed=seed, num_classes=num_classes, val_classes=val_classes,
                                    clips_per_class=clips_per_class,
                                    unlabeled_clips=unlabeled_clips, num_frames=num_frames,
                                    size=size, jpeg_quality=jpeg_quality,
                                    max_distractors=max_distractors))
    _check_params(params)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f'{root} is not empty; the demo generator only writes into a missing '
                              f'or empty folder. Pick another folder, or use ensure_demo_dataset() '
                              f'which reuses or refreshes its own cache.')
    root.mkdir(parents=True, exist_ok=True)
    names = list(ACTIONS)
    test_classes = names[:num_classes]
    val_class_names = names[num_classes:num_classes + val_classes]
    all_classes = test_classes + val_class_names
    size = tuple(params['size'])

    jobs = [('unlabeled', 0, f'u{i:05d}', all_classes[i % len(all_classes)], i)
            for i in range(unlabeled_clips)]
    for split, code, prefix, classes in (('fewshot', 1, 'e', test_classes),
                                         ('fewshot_val', 2, 'v', val_class_names)):
        jobs += [(split, code, f'{prefix}{i:05d}', classes[i % len(classes)], i)
                 for i in range(clips_per_class * len(classes))]

    manifest = {'generator': GENERATOR, 'version': GENERATOR_VERSION, 'complete': False,
                'params': params}
    _write_json(root / MANIFEST_FILE, manifest)  # marks the folder as ours even if interrupted
    began = time.perf_counter()
    annotations = {'unlabeled': [], 'fewshot': [], 'fewshot_val': []}
    for split, code, video, action, index in progress_bar(jobs, desc=f'demo data -> {root}',
                                                          disable=not progress):
        clip = render_clip(action, _clip_rng(seed, code, index), num_frames, size, max_distractors)
        _write_clip(root, video, clip, jpeg_quality)
        annotations[split].append(_annotation(video, action, num_frames, size))
    _write_json(root / UNLABELED_FILE, annotations['unlabeled'])
    _write_json(root / FEWSHOT_FILE, annotations['fewshot'])
    if val_classes:
        _write_json(root / FEWSHOT_VAL_FILE, annotations['fewshot_val'])
    manifest.update(complete=True, seconds=round(time.perf_counter() - began, 2),
                    classes={'fewshot': test_classes, 'fewshot_val': val_class_names},
                    counts={k: len(v) for k, v in annotations.items()},
                    layout={'frames': FRAME_TEMPLATE, 'flow': FLOW_TEMPLATE,
                            'skeleton': SKELETON_TEMPLATE,
                            'event_frame': '0-based index; index i is file number i + 1'})
    _write_json(root / MANIFEST_FILE, manifest)
    return root


def demo_data_params(**overrides):
    """The parameters generate_demo_dataset would use: its defaults, then gin bindings of
    `demo_data`, then `overrides`. ensure_demo_dataset compares these with the cache."""
    signature = inspect.signature(generate_demo_dataset)
    params = {name: p.default for name, p in signature.parameters.items()
              if name not in ('root', 'progress')}
    params.update({k: v for k, v in gin.get_bindings('demo_data').items() if k in params})
    unknown = set(overrides) - set(params)
    if unknown:
        raise TypeError(f'Unknown demo data parameters {sorted(unknown)}; known: {sorted(params)}.')
    params.update(overrides)
    return _normalise_params(params)


@gin.configurable('demo_data_cache', allowlist=['root'])
def ensure_demo_dataset(root=DEFAULT_ROOT, progress=True, **overrides):
    """Return `root` holding the demo dataset, generating it only when needed.

    Reuses a complete dataset whose manifest matches the parameters; replaces one this generator
    wrote with other parameters (or left incomplete); refuses any folder it did not write.
    Call it from one process only (rank 0) and let the others wait.
    """
    root = Path(root)
    params = demo_data_params(**overrides)
    manifest = _read_manifest(root)
    if manifest is not None and manifest.get('complete') and manifest.get('params') == params \
            and manifest.get('version') == GENERATOR_VERSION:
        return root
    if manifest is not None:
        _remove_own_dataset(root)
        why = 'was incomplete' if not manifest.get('complete') else 'had other parameters'
        print(f'Demo data in {root} {why}; regenerating it.')
    elif root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f'{root} exists, is not empty and has no {MANIFEST_FILE} from the demo generator, so '
            f'it is not demo data this program wrote. It was left untouched. Point the demo data '
            f'root at a new or empty folder instead.')
    else:
        print(f'Writing the synthetic demo dataset to {root} (first run only).')
    return generate_demo_dataset(root, progress=progress, **params)


def _normalise_params(params):
    """JSON round trip, so parameters compare equal to those read back from a manifest."""
    params = dict(params)
    params['size'] = [int(v) for v in params['size']]
    return json.loads(json.dumps(params, sort_keys=True))


def _check_params(params):
    total = params['num_classes'] + params['val_classes']
    if params['num_classes'] < 1 or params['val_classes'] < 0 or total > len(ACTIONS):
        raise ValueError(f'demo_data: num_classes ({params["num_classes"]}) + val_classes '
                         f'({params["val_classes"]}) must be between 1 and {len(ACTIONS)}, the '
                         f'number of actions the generator can draw ({", ".join(ACTIONS)}).')
    if params['num_frames'] < 2:
        raise ValueError(f'demo_data.num_frames must be at least 2 (flow needs frame pairs), '
                         f'got {params["num_frames"]}.')
    if len(params['size']) != 2 or min(params['size']) < 16:
        raise ValueError(f'demo_data.size must be (height, width) with both >= 16, '
                         f'got {params["size"]}.')
    if params['clips_per_class'] < 1 or params['unlabeled_clips'] < 0:
        raise ValueError('demo_data.clips_per_class must be >= 1 and unlabeled_clips >= 0.')


def _read_manifest(root):
    path = root / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f'{path} is not valid JSON ({error}); this folder was not written by '
                         f'the demo generator or is damaged. Delete it or use another root.')
    if not isinstance(manifest, dict) or manifest.get('generator') != GENERATOR:
        raise FileExistsError(f'{path} was not written by {GENERATOR}; leaving {root} untouched. '
                              f'Point the demo data root at a new or empty folder.')
    return manifest


def _remove_own_dataset(root):
    foreign = sorted(p.name for p in root.iterdir() if p.name not in OWNED_ENTRIES)
    if foreign:
        raise FileExistsError(f'{root} holds demo data that needs regenerating, but also files '
                              f'the generator did not write ({", ".join(foreign)}); nothing was '
                              f'deleted. Move those files out or use another root.')
    for entry in root.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _write_json(path, value):
    path.write_text(json.dumps(value, indent=1) + '\n')


_CLI_HELP = {
    'seed': 'all randomness comes from it',
    'num_classes': f'actions in fewshot.json (at most {len(ACTIONS)} with val classes)',
    'val_classes': 'further actions in fewshot_val.json (class-disjoint); 0 = none',
    'clips_per_class': 'labelled videos per class',
    'unlabeled_clips': 'videos in unlabeled.json',
    'num_frames': 'frames per video',
    'size': 'frame height and width',
    'jpeg_quality': 'JPEG quality of the frames',
    'max_distractors': 'most drifting shapes behind the figure',
}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m mmdistill.data.synthetic',
        description='Write (or reuse) the synthetic multi-modal demo dataset. '
                    'Example: python -m mmdistill.data.synthetic .cache/demo_data --seed 0')
    parser.add_argument('root', help='dataset folder (created; reused when it matches)')
    for name, default in demo_data_params().items():
        extra = dict(nargs=2, metavar=('H', 'W')) if name == 'size' else {}
        parser.add_argument('--' + name.replace('_', '-'), type=int, default=default,
                            help=f'{_CLI_HELP[name]} (default: {default})', **extra)
    args = vars(parser.parse_args(argv))
    root = args.pop('root')
    began = time.perf_counter()
    path = ensure_demo_dataset(root, **args)
    print(f'Demo dataset ready in {path} ({time.perf_counter() - began:.1f} s).')

if __name__ == '__main__':
    main()
