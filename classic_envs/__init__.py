"""The classic pixel-based RL benchmarks as gymnasium 1.x envs with camera observations, for the
pixel agent (examples/async_drq_sim --env ...). Importing the package registers them:

    dmc/cheetah-run-v0 (and walker-walk, cartpole-swingup, finger-spin, reacher-easy,
        ball_in_cup-catch: the PlaNet benchmark)   DeepMind Control from 84x84 pixels, PlaNet's
                                                   action repeat, 3 stacked frames
    VisualPendulum-v0                              Pendulum-v1 seen through 84x84 frames only
    CarRacingPixels-v0                             CarRacing-v3, continuous, skip 4, 4 stacked frames

Observations are {"pixels": (stack, H, W, C) uint8}. Needs the `envs` extra (dm-control,
gymnasium[box2d]); rendering is headless with MUJOCO_GL=egl (set when there is no display).
"""
from franka_sim import headless  # noqa: F401  (MUJOCO_GL=egl without a display, before mujoco loads)
from gymnasium.envs.registration import register

from classic_envs.dmc import PLANET_TASKS

for _name in PLANET_TASKS:
    register(id=f"dmc/{_name}-v0", entry_point="classic_envs.dmc:make_dmc_env", kwargs={"name": _name})
register(id="VisualPendulum-v0", entry_point="classic_envs.pixels:make_visual_pendulum")
register(id="CarRacingPixels-v0", entry_point="classic_envs.pixels:make_car_racing")
