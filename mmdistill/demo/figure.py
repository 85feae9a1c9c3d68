"""The demo's person: a 3-D stick figure posed by joint angles, and its COCO-17 keypoints.

An action (actions.py) writes angles and offsets per frame into a pose from `rest_pose`;
`pose_to_joints` turns the pose into 3-D joint positions that the renderer draws and the
skeleton files record, so the drawn figure and its keypoints cannot disagree.
"""

from __future__ import annotations

import numpy as np

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


def rest_pose(num_frames):
    """Angles in degrees and offsets in body units, one value per frame."""
    zeros = np.zeros(num_frames)
    pose = {k: zeros.copy() for k in ('yaw', 'lean', 'pitch', 'lift', 'travel')}
    rest = {'upper': (8, 0), 'fore': (5, 8), 'thigh': (3, 0), 'shin': (2, 0)}
    for limb in LIMBS:
        abduction, flexion = rest[limb[2:]]
        pose[limb + '_abd'] = zeros + abduction
        pose[limb + '_flex'] = zeros + flexion
    return pose


def set_limb(pose, limb, abduction=None, flexion=None):
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


def pose_to_joints(pose):
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
