"""DeepMind Control tasks from pixels, as PlaNet / DrQ / RAD evaluate them.

Env steps count the simulator's control steps (action repeat included), as the papers do: one
episode is 1000 env steps, i.e. 1000 / action_repeat agent steps.
"""
import gymnasium as gym
import numpy as np
from gymnasium import spaces

# name -> (domain, task, action repeat, camera): PlaNet's settings.
PLANET_TASKS = {
    "cheetah-run": ("cheetah", "run", 4, 0),
    "walker-walk": ("walker", "walk", 2, 0),
    "cartpole-swingup": ("cartpole", "swingup", 8, 0),
    "finger-spin": ("finger", "spin", 2, 0),
    "reacher-easy": ("reacher", "easy", 4, 0),
    "ball_in_cup-catch": ("ball_in_cup", "catch", 4, 0),
}


class DMCPixels(gym.Env):
    """One DMC task: rendered frames as the observation, `action_repeat` control steps per step.

    info["env_steps"] counts control steps; the episode is truncated (never terminated: DMC tasks
    have no terminal states) when the suite's time limit ends it.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, domain: str, task: str, action_repeat: int = 1, size: int = 84, camera: int = 0,
                 render_mode: str | None = None):
        from dm_control import suite

        self._load = lambda seed: suite.load(domain, task, task_kwargs={"random": seed})
        self._env = self._load(None)
        self.action_repeat, self.size, self.camera, self.render_mode = action_repeat, size, camera, render_mode
        spec = self._env.action_spec()
        self.action_space = spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32),
                                       dtype=np.float32)
        self.observation_space = spaces.Dict({"pixels": spaces.Box(0, 255, (size, size, 3), np.uint8)})
        self.metadata = {**self.metadata, "render_fps": int(round(1 / (self._env.control_timestep() * action_repeat)))}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env = self._load(seed)
        self._env.reset()
        return self._observation(), {}

    def step(self, action):
        reward, time_step = 0.0, None
        for _ in range(self.action_repeat):
            time_step = self._env.step(np.asarray(action, np.float64))
            reward += time_step.reward or 0.0
            if time_step.last():
                break
        return self._observation(), reward, False, bool(time_step.last()), {}

    def render(self):
        return self._env.physics.render(self.size, self.size, camera_id=self.camera)

    def _observation(self) -> dict:
        return {"pixels": self.render()}


def make_dmc_env(name: str, size: int = 84, frame_stack: int = 3, action_repeat: int | None = None,
                 render_mode: str | None = None) -> gym.Env:
    """dmc/<name>-v0: PlaNet's action repeat for the task unless given, `frame_stack` frames stacked."""
    domain, task, repeat, camera = PLANET_TASKS[name]
    env = DMCPixels(domain, task, action_repeat or repeat, size, camera, render_mode)
    return gym.wrappers.FrameStackObservation(env, frame_stack)
