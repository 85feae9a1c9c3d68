"""One demo clip: an action performed by the figure in a random scene, in every modality.

This is where the pieces meet: the action (actions.py) poses the figure (figure.py), the scene
is sampled (appearance.py) and drawn with its flow (raster.py), and the keypoints are the joints
the parts are drawn between. The order of the draws from `rng` fixes the generated data, so a
change here changes every clip (bump writer.GENERATOR_VERSION).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import mmdistill.demo.appearance as appearance
from mmdistill.demo.actions import ACTIONS, Style
from mmdistill.demo.figure import COCO17_JOINTS, STANDING_ANKLE_Y, pose_to_joints, rest_pose
from mmdistill.demo.raster import render


@dataclass
class DemoClip:
    """Everything written for one video, kept in memory so tests can compare against it."""
    frames: np.ndarray     # (T, H, W, 3) uint8
    flow: np.ndarray       # (T-1, 2, H, W) float32, pair k = frame k -> k+1
    keypoints: np.ndarray  # (T, 17, 2) float32, x, y pixels, COCO-17 order
    scores: np.ndarray     # (T, 17) float32, 1 inside the frame, 0 outside
    action: str


def animate(action, rng, num_frames):
    """The action's 3-D joints over the clip, with its per-clip style drawn from `rng`."""
    if action not in ACTIONS:
        raise ValueError(f'Unknown demo action {action!r}; choose from {sorted(ACTIONS)}.')
    spec = ACTIONS[action]
    style = Style(side='l' if rng.random() < 0.5 else 'r',
                  direction=1 if rng.random() < 0.5 else -1,
                  amplitude=float(rng.uniform(0.8, 1.15)),
                  cycles=float(rng.uniform(*spec.cycles)))
    progress = np.arange(num_frames) / num_frames
    phi = 2 * np.pi * style.cycles * progress + rng.uniform(0, 2 * np.pi)
    pose = rest_pose(num_frames)
    pose['yaw'] += rng.choice([-1, 1]) * rng.uniform(*spec.yaw)
    spec.animate(pose, phi, progress, style)
    return pose_to_joints(pose)


def render_clip(action, rng, num_frames=16, size=(64, 64), max_distractors=3, look=None,
                cue=None, recording=None):
    """Render one clip of `action` with appearance and timing drawn from `rng`.

    `look` None is the single demo world (appearance independent of everything); a look name
    (looks.LOOKS) draws the scene from that domain's look, with `cue` its class-tied tint or None,
    and `recording` the stream of the recording whose backdrop and performer it shares (None: its
    own scene; recording_rng).
    """
    height, width = size
    joints = animate(action, rng, num_frames)
    if look is not None:
        from mmdistill.demo.looks import look_scene
        layers, background, figure_height, centre = look_scene(look, joints, rng, num_frames,
                                                               size, cue, recording)
    else:
        figure_height = rng.uniform(0.55, 0.8) * height
        centre = (rng.uniform(0.35, 0.65) * width,
                  rng.uniform(0.52 * figure_height + 1,
                              height - STANDING_ANKLE_Y * figure_height - 1))
        background = appearance.background(rng, height, width)
        figure = appearance.figure_layers(joints, rng, figure_height, centre,
                                          background.mean((0, 1)))
        distractors = appearance.distractor_layers(rng, num_frames, height, width,
                                                   max_distractors)
        layers = appearance.stack_layers(distractors, figure)
    frames, flow = render(layers, background)

    body = np.stack([joints[name][:, :2] for name in COCO17_JOINTS], 1)  # (T, 17, 2), x and y
    keypoints = np.asarray(centre) + figure_height * body
    inside = ((keypoints[..., 0] >= 0) & (keypoints[..., 0] <= width - 1)
              & (keypoints[..., 1] >= 0) & (keypoints[..., 1] <= height - 1))
    return DemoClip(frames, flow, keypoints.astype(np.float32), inside.astype(np.float32), action)


def clip_rng(seed, split_code, index):
    """Independent stream per clip, so a clip does not depend on how many others exist."""
    return np.random.default_rng([seed, split_code, index])


# The fourth entropy word keeps recording streams apart from clip streams ([seed, code, index]).
RECORDING_STREAM = 7


def recording_rng(seed, split_code, recording):
    """A fresh stream per call, the same for every clip of one recording of one split."""
    return np.random.default_rng([seed, split_code, recording, RECORDING_STREAM])
