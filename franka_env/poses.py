"""Pose conventions shared by the env, its safety limits and its tasks.

A pose is a float array (7,): position xyz in metres, then the orientation as a unit quaternion in
scalar-last (x, y, z, w) order, both in the robot's base frame. franky's `Affine.quaternion`
uses the same order; scipy's `Rotation.from_quat` too.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def as_pose(pose) -> np.ndarray:
    """Validates and normalises a pose: float64 (7,), unit quaternion."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (7,) or not np.all(np.isfinite(pose)):
        raise ValueError(f"a pose is 7 finite floats (xyz + quaternion xyzw), got {pose!r}")
    norm = np.linalg.norm(pose[3:])
    if not 0.9 < norm < 1.1:
        raise ValueError(f"the pose's quaternion (xyzw) must have unit norm, got norm {norm:.3f}")
    return np.concatenate([pose[:3], pose[3:] / norm])


def rotation_error(quat, reference_quat) -> np.ndarray:
    """The rotation from `reference_quat` to `quat` as a rotation vector (rad) in the reference's
    own axes: [0.1, 0, 0] means turned 0.1 rad about the reference orientation's x axis."""
    return (Rotation.from_quat(reference_quat).inv() * Rotation.from_quat(quat)).as_rotvec()


def yaw_rotated(quat, yaw: float) -> np.ndarray:
    """`quat` turned by `yaw` radians about the base frame's z axis (xyzw)."""
    return (Rotation.from_euler("z", yaw) * Rotation.from_quat(quat)).as_quat()
