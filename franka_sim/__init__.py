"""MuJoCo Franka Panda environments; importing the package registers them with gymnasium.

    PandaPickCube-v0        state observations (see franka_sim.pick_cube for the full contract)
    PandaPickCubeVision-v0  front and wrist camera images plus the proprioceptive state

Both are truncated after 100 steps (2 s at 50 Hz). `franka_sim.experts.PickCubeExpert` solves them.
"""
from franka_sim import headless  # noqa: F401  (before mujoco loads)
from gymnasium.envs.registration import register

from franka_sim.pick_cube import PandaPickCubeEnv

__all__ = ["PandaPickCubeEnv"]

register(id="PandaPickCube-v0", entry_point="franka_sim.pick_cube:PandaPickCubeEnv", max_episode_steps=100)
register(
    id="PandaPickCubeVision-v0",
    entry_point="franka_sim.pick_cube:PandaPickCubeEnv",
    max_episode_steps=100,
    kwargs={"image_obs": True},
)
