"""Safety limits and the clipping every velocity command goes through before it reaches the arm.

The env commands the arm with Cartesian velocities that a running command keeps for up to
`horizon` seconds (the command's hold time: the arm keeps moving that long if the actor stalls,
then brakes). A command is safe when moving at it for the whole horizon and then braking still
ends inside the limits, so each velocity component is clipped to the fastest speed v that
satisfies  v * horizon + v^2 / (2 * deceleration) <= room  (room: distance to the limit the
component moves towards). At or beyond a limit the speed towards it is zero and the speed back
is free, so an arm that was pushed out (by a person, a collision) can always come back.

What this does not guarantee is spelled out in docs/robot.md: the clip bounds the commanded
motion; tracking error, external forces and the orientation's first-order approximation are
bounded only in practice (tested against franky-sim).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from franka_env.poses import rotation_error


@dataclass(frozen=True)
class SafetyConfig:
    """Limits of a FrankaEnv. Defaults suit an FR3 / Panda on a table at its base's height.

    workspace_low/high   box (m, base frame) the TCP position is kept in
    rotation_limit       largest TCP rotation (rad) about each axis of the reference orientation
                         (the TCP orientation at the home joint pose), see poses.rotation_error
    max_force            external force (N, norm of libfranka's O_F_ext_hat_K[:3]) that stops the
                         arm within one 1 kHz cycle (a franky reaction) and ends the episode
    max_torque           external torque (Nm, norm of O_F_ext_hat_K[3:]) that stops the arm and
                         ends the episode, checked every control step
    collision_force      libfranka's collision thresholds: above them the arm's own controller
    collision_torque     triggers a reflex (N for the Cartesian force, Nm for each joint)
    """

    workspace_low: tuple[float, float, float] = (0.3, -0.25, 0.1)
    workspace_high: tuple[float, float, float] = (0.65, 0.25, 0.5)
    rotation_limit: tuple[float, float, float] = (0.3, 0.3, 0.6)
    max_force: float = 20.0
    max_torque: float = 4.0
    collision_force: float = 30.0
    collision_torque: float = 20.0

    def __post_init__(self):
        low, high = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        if low.shape != (3,) or high.shape != (3,) or not np.all(low < high):
            raise ValueError(f"workspace_low must be 3 values below workspace_high, got {self.workspace_low} "
                             f"and {self.workspace_high}")
        limit = np.asarray(self.rotation_limit, float)
        if limit.shape != (3,) or not np.all((limit > 0) & (limit < np.pi)):
            raise ValueError(f"rotation_limit must be 3 angles in (0, pi) rad, got {self.rotation_limit}")
        for name in ("max_force", "max_torque", "collision_force", "collision_torque"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def safe_speed(room: np.ndarray, horizon: float, deceleration: float) -> np.ndarray:
    """The largest speed v >= 0 with v * horizon + v^2 / (2 * deceleration) <= room (0 where room <= 0)."""
    room = np.maximum(room, 0.0)
    return deceleration * (np.sqrt(horizon**2 + 2.0 * room / deceleration) - horizon)


def clip_linear_velocity(position, velocity, low, high, horizon: float, deceleration: float) -> np.ndarray:
    """`velocity` (m/s, base frame) clipped per axis so the TCP at `position` stays in [low, high]."""
    position = np.asarray(position, float)
    upper = safe_speed(np.asarray(high) - position, horizon, deceleration)
    lower = -safe_speed(position - np.asarray(low), horizon, deceleration)
    return np.clip(velocity, lower, upper)


def clip_angular_velocity(quat, reference_quat, omega, limit, horizon: float, deceleration: float) -> np.ndarray:
    """`omega` (rad/s, base frame) clipped so the TCP's rotation from `reference_quat` stays within
    +-`limit` about each reference axis.

    To first order the rotation error r (poses.rotation_error) changes at the angular velocity
    expressed in the reference's axes, so that is what is clipped, per axis, like a position. The
    approximation is exact for a rotation about a single axis; for combined rotations near the
    limits the error can exceed a limit by a few percent of it.
    """
    reference = Rotation.from_quat(reference_quat)
    error = rotation_error(quat, reference_quat)
    limit = np.asarray(limit, float)
    local = reference.inv().apply(np.asarray(omega, float))
    upper = safe_speed(limit - error, horizon, deceleration)
    lower = -safe_speed(error + limit, horizon, deceleration)
    return reference.apply(np.clip(local, lower, upper))
