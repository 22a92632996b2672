"""Tasks: what a FrankaEnv episode asks of the arm.

A task picks the TCP pose an episode starts from, adds its own entries to the observation's
"state" dict (from the arm's state), and scores each step (reward, success; success ends the
episode). The env owns the arm, the safety limits and the timing; a task only sees ArmState
readings, so a new task is a small class and can be unit-tested without a robot.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np
from gymnasium import spaces

from franka_env.arm import ArmState
from franka_env.poses import as_pose, rotation_error


def _vector(n: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32)


class Task(ABC):
    """Base class. Subclasses implement `evaluate`; the defaults start at the home pose and add
    no observations."""

    #: extra entries of the observation's "state" dict (name -> float32 Box)
    observation_space: Mapping[str, spaces.Box] = {}

    def reset(self, rng: np.random.Generator, home_pose: np.ndarray) -> np.ndarray:
        """Called at every env reset after the arm reached its home joint pose (whose TCP pose is
        `home_pose`); returns the TCP pose the episode starts from."""
        return home_pose

    def observe(self, state: ArmState) -> dict[str, np.ndarray]:
        """The task's entries of the observation's "state" dict, given the arm's `state` (fresh arrays)."""
        return {}

    @abstractmethod
    def evaluate(self, state: ArmState) -> tuple[float, bool]:
        """(reward, success) of the arm's state after a step."""


class ReachTask(Task):
    """Move the TCP to a target position sampled uniformly in a box at every reset.

    Observation: state/target_pos (3,; m) and state/target_offset (3,): target_pos minus the TCP
    position in units of OFFSET_UNIT (10 cm). The offset is what the policy acts on, and in these
    units the last centimetres are tenths rather than hundredths: from absolute positions alone,
    SAC learned to come within a few cm but rarely within 2 cm (docs/robot.md has the runs).
    Reward: minus the TCP's distance to the target (m), so every step costs something and reaching
    it sooner pays. Success (ends the episode): closer than `success_distance`. Needs nothing but
    the arm, so it runs against franky-sim.
    """

    OFFSET_UNIT = 0.1  # m
    observation_space = {"target_pos": _vector(3), "target_offset": _vector(3)}

    def __init__(self, target_low=(0.40, -0.10, 0.25), target_high=(0.56, 0.10, 0.40), success_distance: float = 0.02):
        self.target_low, self.target_high = np.asarray(target_low, float), np.asarray(target_high, float)
        low, high = self.target_low, self.target_high
        if low.shape != (3,) or high.shape != (3,) or np.any(low > high):
            raise ValueError(f"target_low must be 3 values <= target_high, got {target_low} and {target_high}")
        if not success_distance > 0:
            raise ValueError(f"success_distance must be positive, got {success_distance}")
        self.success_distance = success_distance
        self.target = (self.target_low + self.target_high) / 2

    def reset(self, rng, home_pose):
        self.target = rng.uniform(self.target_low, self.target_high)
        return home_pose

    def observe(self, state):
        offset = (self.target - state.tcp_pose[:3]) / self.OFFSET_UNIT
        return {"target_pos": self.target.astype(np.float32), "target_offset": offset.astype(np.float32)}

    def evaluate(self, state):
        distance = float(np.linalg.norm(state.tcp_pose[:3] - self.target))
        return -distance, distance < self.success_distance


class PoseThresholdTask(Task):
    """Bring the TCP to a target pose, within per-axis thresholds: SERL's reward for peg
    insertion, cable routing and similar contact tasks (reward 1 on success, else 0).

    Each episode starts at the target pose shifted by `reset_offset` (m, base frame), e.g. 10 cm
    above the hole. Success: |position error| <= position_threshold per axis (m) and
    |poses.rotation_error| <= rotation_threshold per axis of the target orientation (rad).
    The target pose is measured on the real setup (move the arm there in guiding mode and read
    `FrankaEnv.read_state().tcp_pose`); franky-sim has no objects, so there it only checks the pose.
    """

    def __init__(self, target_pose, position_threshold=(0.01, 0.01, 0.01), rotation_threshold=(0.2, 0.2, 0.2),
                 reset_offset=(0.0, 0.0, 0.1)):
        self.target_pose = as_pose(target_pose)
        self.position_threshold = np.asarray(position_threshold, float)
        self.rotation_threshold = np.asarray(rotation_threshold, float)
        self.reset_offset = np.asarray(reset_offset, float)
        for name in ("position_threshold", "rotation_threshold", "reset_offset"):
            if getattr(self, name).shape != (3,):
                raise ValueError(f"{name} must have 3 values, got {getattr(self, name)}")
        if np.any(self.position_threshold <= 0) or np.any(self.rotation_threshold <= 0):
            raise ValueError("position_threshold and rotation_threshold must be positive")

    def reset(self, rng, home_pose):
        start = self.target_pose.copy()
        start[:3] += self.reset_offset
        return start

    def evaluate(self, state):
        position_error = np.abs(state.tcp_pose[:3] - self.target_pose[:3])
        angle_error = np.abs(rotation_error(state.tcp_pose[3:], self.target_pose[3:]))
        success = bool(np.all(position_error <= self.position_threshold)
                       and np.all(angle_error <= self.rotation_threshold))
        return float(success), success
