"""Scripted experts for franka_env's tasks: demonstrations without a person at the robot.

An expert maps FrankaEnv's own observation (the dict {"state": {...}}, before any flattening) to
an action in the env's action space. It reads only what the env observes, so the same expert runs
against franky-sim, where examples/record_demo.py and its tests use it, and against a real arm.
`scripted_expert(task, ...)` picks the expert for a task; tasks without one raise, since their
goal (e.g. a peg-insertion pose) is not in the observation.
"""
from __future__ import annotations

import numpy as np
from gymnasium import spaces

from franka_env.tasks import ReachTask, Task


class ReachExpert:
    """ReachTask's expert: a proportional controller that moves the TCP straight at
    state/target_pos, `gain` action units per metre of error (40: full speed beyond 2.5 cm, so it
    slows down only on the last centimetres), clipped to [-1, 1]. Rotation actions, when the env has
    them, are zero; the gripper stays open.
    Optional Gaussian noise on the motion, from the expert's own seeded generator, varies the demos."""

    def __init__(self, action_space: spaces.Box, gain: float = 40.0, noise_std: float = 0.0, seed: int | None = None):
        if action_space.shape not in ((4,), (7,)):
            raise ValueError(f"expected a FrankaEnv action space of shape (4,) or (7,), got {action_space}")
        if not gain > 0:
            raise ValueError(f"gain must be positive, got {gain}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.action_dim, self.gain, self.noise_std = action_space.shape[0], gain, noise_std
        self._rng = np.random.default_rng(seed)

    def act(self, observation: dict) -> np.ndarray:
        state = observation["state"]
        error = np.asarray(state["target_pos"], np.float64) - np.asarray(state["tcp_pose"][:3], np.float64)
        action = np.zeros(self.action_dim)
        action[:3] = self.gain * error
        if self.noise_std > 0:
            action[:3] += self._rng.normal(0.0, self.noise_std, 3)
        action[-1] = -1.0  # open
        return np.clip(action, -1.0, 1.0).astype(np.float32)


EXPERTS = {ReachTask: ReachExpert}


def scripted_expert(task: Task, action_space: spaces.Box, noise_std: float = 0.0, seed: int | None = None):
    """The scripted expert for `task` (an object with `act(observation) -> action`)."""
    for task_type, expert in EXPERTS.items():
        if isinstance(task, task_type):
            return expert(action_space, noise_std=noise_std, seed=seed)
    raise ValueError(f"no scripted expert for {type(task).__name__}: franka_env.experts has one for "
                     f"{', '.join(t.__name__ for t in EXPERTS)}")
