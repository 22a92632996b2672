"""Scripted expert for PandaPickCube: reach above the cube, descend, close, lift.

The expert is a pure function of the observation (no phase memory), so it is deterministic
given the observation and recovers by itself when a grasp slips: whatever the state, it does
the next sensible thing. Optional Gaussian action noise, from the expert's own seeded RNG,
diversifies recorded demonstrations.
"""
from __future__ import annotations

from collections.abc import Mapping

import gymnasium as gym
import numpy as np

from franka_sim.pick_cube import ACTION_SCALE

class PickCubeExpert:
    """Maps a PandaPickCube-v0 observation (dict or flattened; with or without block_offset) to an action
    in [-1, 1]^4."""

    HOVER = 0.06  # m above the cube centre before descending
    DESCEND = 0.02  # m, horizontal distance to the cube under which the gripper goes down
    GRASP_XY, GRASP_Z = 0.012, 0.008  # m, TCP-to-cube-centre tolerances to start closing
    HOLDING = (0.47, 0.8)  # gripper_pos of fingers closed on the 4 cm cube (1 = closed on air)

    def __init__(self, observation_space: gym.spaces.Dict | None = None, noise_std: float = 0.0,
                 action_scale: float = ACTION_SCALE, seed: int | None = None):
        """observation_space: the env's own (unflattened) Dict space, `env.unwrapped.observation_space`,
        needed only to read flat observations (those of gymnasium's FlattenObservation)."""
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if action_scale <= 0:
            raise ValueError(f"action_scale must be positive, got {action_scale}")
        self.noise_std = noise_std
        self.action_scale = action_scale
        self.observation_space = observation_space
        self._rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        """Re-seeds the noise generator (only matters when noise_std > 0)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def act(self, obs) -> np.ndarray:
        """Action for a state observation. For the vision env, which hides the cube, pass
        {"state": {**obs["state"], "block_pos": env.unwrapped.block_pos}}."""
        tcp, grip, cube = _parse(obs, self.observation_space)
        rel = cube - tcp
        near = np.linalg.norm(rel) < 0.02
        xy = np.linalg.norm(rel[:2])
        if near and self.HOLDING[0] <= grip <= self.HOLDING[1]:  # cube in hand: lift straight up
            move, close = np.array([0.0, 0.0, self.action_scale]), True
        elif grip < self.HOLDING[1] and (
            (xy < self.GRASP_XY and abs(rel[2]) < self.GRASP_Z) or (near and grip > 0.1)
        ):  # at the grasp pose, or already closing around the cube: keep closing
            move, close = rel, True
        elif xy < self.DESCEND:  # open, go down around the cube
            move, close = rel, False
        else:  # open, go to the hover point above the cube
            move, close = np.array([rel[0], rel[1], rel[2] + self.HOVER]), False
        action = np.empty(4)
        action[:3] = np.clip(move / self.action_scale, -1.0, 1.0)
        action[3] = 1.0 if close else -1.0
        if self.noise_std > 0:
            action[:3] += self._rng.normal(0.0, self.noise_std, 3)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def _parse(obs, space: gym.spaces.Dict | None) -> tuple[np.ndarray, float, np.ndarray]:
    if not isinstance(obs, Mapping):
        if space is None:
            raise ValueError("a flat observation needs PickCubeExpert(observation_space=env.unwrapped.observation_space)")
        flat = np.asarray(obs, dtype=np.float32)
        if flat.shape != (gym.spaces.flatdim(space),):
            raise ValueError(f"flat observation must have shape ({gym.spaces.flatdim(space)},), got {flat.shape}")
        obs = gym.spaces.unflatten(space, flat)
    try:
        state = obs["state"]
        return (
            np.asarray(state["panda/tcp_pos"], dtype=np.float64),
            float(np.asarray(state["panda/gripper_pos"]).reshape(-1)[0]),
            np.asarray(state["block_pos"], dtype=np.float64),
        )
    except KeyError as err:
        raise ValueError(f"the expert needs a PandaPickCube-v0 state observation, missing {err}") from None
