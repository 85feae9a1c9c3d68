"""The demo's actions: each one animates a pose (figure.py) over a clip.

An action fills the pose for phase `phi` (radians, one per frame) and clip progress in [0, 1).
`Style` holds per-clip randomness that must not change the class: which side moves, which way
the figure walks or turns, and an amplitude factor. A new action is a function here plus an
entry in ACTIONS; the order of ACTIONS decides which classes `num_classes` takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmdistill.demo.figure import set_limb


@dataclass(frozen=True)
class Style:
    """Per-clip randomness that does not change the class."""
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
        set_limb(pose, side + '_upper', 20, 40)
        set_limb(pose, side + '_fore', 20, 150)


def _wave(pose, phi, progress, style):
    set_limb(pose, style.side + '_upper', 135 + 10 * style.amplitude, 10)
    set_limb(pose, style.side + '_fore', 165 + 32 * style.amplitude * np.sin(phi), 10)


def _clap(pose, phi, progress, style):
    u = _up_down(phi) * style.amplitude
    for side in 'lr':
        set_limb(pose, side + '_upper', -10 + 30 * u, 60 - 10 * u)
        set_limb(pose, side + '_fore', -60 + 90 * u, 45 + 5 * u)


def _jumping_jacks(pose, phi, progress, style):
    u = _up_down(phi) * style.amplitude
    arm = np.minimum(10 + 150 * u, 175)
    for side in 'lr':
        set_limb(pose, side + '_upper', arm, 0)
        set_limb(pose, side + '_fore', np.minimum(arm + 10 * u, 180), 0)
        set_limb(pose, side + '_thigh', 3 + 18 * u, 0)
        set_limb(pose, side + '_shin', 3 + 18 * u, 0)
    pose['lift'] = 0.04 * np.abs(np.sin(phi))


def _squat(pose, phi, progress, style):
    u = _up_down(phi) * style.amplitude
    for side in 'lr':
        set_limb(pose, side + '_thigh', 8, np.minimum(85 * u, 95))
        set_limb(pose, side + '_shin', 5, -15 * u)
        set_limb(pose, side + '_upper', 10, 85 * u)
        set_limb(pose, side + '_fore', 5, 85 * u)
    pose['pitch'] = 20 * u


def _kick(pose, phi, progress, style):
    k = np.maximum(0, np.sin(phi)) ** 2 * style.amplitude
    _guard(pose)
    set_limb(pose, style.side + '_thigh', 75 * k, 0)
    set_limb(pose, style.side + '_shin', 85 * k, 0)
    set_limb(pose, _other(style.side) + '_thigh', 6, 0)
    pose['lean'] = (15 if style.side == 'r' else -15) * k


def _walk(pose, phi, progress, style):
    swing = 28 * style.amplitude * np.sin(phi)
    for side, sign in (('l', 1), ('r', -1)):
        set_limb(pose, side + '_thigh', 2, sign * swing)
        set_limb(pose, side + '_shin', 2, sign * swing - 35 * np.maximum(0, -sign * np.sin(phi)))
        set_limb(pose, side + '_upper', 6, -sign * 0.8 * swing)
        set_limb(pose, side + '_fore', 6, -sign * 0.8 * swing + 15)
    pose['yaw'] = pose['yaw'] + 90 * style.direction
    pose['travel'] = style.direction * 0.5 * style.cycles * (progress - 0.5)


def _spin(pose, phi, progress, style):
    for side in 'lr':
        set_limb(pose, side + '_upper', 55, 0)
        set_limb(pose, side + '_fore', 65, 0)
    pose['yaw'] = pose['yaw'] + style.direction * 360 * progress * style.amplitude


def _punch(pose, phi, progress, style):
    _guard(pose)
    for side, p in (('l', np.maximum(0, np.sin(phi))), ('r', np.maximum(0, -np.sin(phi)))):
        p = np.minimum(p ** 2 * style.amplitude, 1)
        set_limb(pose, side + '_upper', 20 * (1 - p), 40 + 50 * p)
        set_limb(pose, side + '_fore', 20 * (1 - p), 150 - 60 * p)
    for side in 'lr':
        set_limb(pose, side + '_thigh', 8, 0)


def _arm_circles(pose, phi, progress, style):
    for side in 'lr':
        abduction = 90 + 25 * style.amplitude * np.sin(phi)
        flexion = 25 * style.amplitude * np.cos(phi)
        set_limb(pose, side + '_upper', abduction, flexion)
        set_limb(pose, side + '_fore', abduction, flexion)


def _jump(pose, phi, progress, style):
    flight = np.maximum(0, np.sin(phi))
    crouch = np.maximum(0, -np.sin(phi))
    for side in 'lr':
        set_limb(pose, side + '_thigh', 5, 60 * crouch)
        set_limb(pose, side + '_shin', 3, -15 * crouch)
        set_limb(pose, side + '_upper', 10, -30 * crouch + 150 * flight)
        set_limb(pose, side + '_fore', 10, -30 * crouch + 160 * flight)
    pose['lift'] = 0.22 * style.amplitude * flight


def _side_bend(pose, phi, progress, style):
    pose['lean'] = 28 * style.amplitude * np.sin(phi)
    for side in 'lr':
        set_limb(pose, side + '_upper', 25, 0)
        set_limb(pose, side + '_fore', 20, 0)


def _march(pose, phi, progress, style):
    for side, lift in (('l', np.maximum(0, np.sin(phi))), ('r', np.maximum(0, -np.sin(phi)))):
        set_limb(pose, side + '_thigh', 4, 75 * style.amplitude * lift)
        set_limb(pose, side + '_shin', 2, 0)
        set_limb(pose, _other(side) + '_upper', 8, 35 * lift)
        set_limb(pose, _other(side) + '_fore', 8, 75 * lift)


def _bow(pose, phi, progress, style):
    pose['pitch'] = 50 * style.amplitude * _up_down(phi)


def _reach(pose, phi, progress, style):
    for side, up in (('l', np.maximum(0, np.sin(phi))), ('r', np.maximum(0, -np.sin(phi)))):
        angle = 10 + 165 * np.minimum(up * style.amplitude, 1)
        set_limb(pose, side + '_upper', angle, 0)
        set_limb(pose, side + '_fore', angle, 0)
    pose['lift'] = 0.03 * np.abs(np.sin(phi))


@dataclass(frozen=True)
class Action:
    animate: callable
    cycles: tuple   # range of movement cycles per clip
    yaw: tuple      # range of |base yaw| in degrees (sign random)


# Order matters: the first `num_classes` are used. Every class is closed under a horizontal flip
# (the moving side / direction is random), so flip augmentation never turns one class into another.
ACTIONS = {
    'wave': Action(_wave, (1.0, 2.5), (0, 35)),
    'clap': Action(_clap, (2.0, 3.5), (0, 35)),
    'jumping_jacks': Action(_jumping_jacks, (1.0, 2.0), (0, 35)),
    'squat': Action(_squat, (0.75, 1.5), (0, 50)),
    'kick': Action(_kick, (1.0, 2.0), (0, 35)),
    'walk': Action(_walk, (0.75, 1.25), (0, 12)),
    'spin': Action(_spin, (1.0, 1.0), (0, 35)),
    'punch': Action(_punch, (1.0, 2.0), (30, 60)),
    'arm_circles': Action(_arm_circles, (1.0, 2.5), (0, 35)),
    'jump': Action(_jump, (1.0, 1.5), (0, 35)),
    'side_bend': Action(_side_bend, (0.75, 1.5), (0, 25)),
    'march': Action(_march, (1.0, 2.0), (0, 35)),
    'bow': Action(_bow, (0.75, 1.25), (30, 70)),
    'reach': Action(_reach, (1.0, 2.0), (0, 35)),
}
