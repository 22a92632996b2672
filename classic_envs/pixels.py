"""Gymnasium tasks seen through pixels only: VisualPendulum and CarRacing, with the usual preprocessing."""
import gymnasium as gym
import numpy as np


class _PixelsOnly(gym.ObservationWrapper):
    """The rendered frame as {"pixels": frame}, resized to `size` x `size` (PIL, bilinear: gymnasium's
    ResizeObservation would need OpenCV); the state is not observed."""

    def __init__(self, env: gym.Env, size: int):
        super().__init__(gym.wrappers.AddRenderObservation(env, render_only=True))
        self.size = size
        self.observation_space = gym.spaces.Dict({"pixels": gym.spaces.Box(0, 255, (size, size, 3), np.uint8)})

    def observation(self, observation):
        from PIL import Image

        frame = Image.fromarray(np.asarray(observation, np.uint8)).resize((self.size, self.size), Image.BILINEAR)
        return {"pixels": np.asarray(frame)}


def make_visual_pendulum(size: int = 84, frame_stack: int = 3, render_mode: str = "rgb_array") -> gym.Env:
    """VisualPendulum-v0: Pendulum-v1 from 84x84 frames; 3 stacked frames carry the velocity."""
    env = gym.make("Pendulum-v1", render_mode=render_mode)
    return gym.wrappers.FrameStackObservation(_PixelsOnly(env, size), frame_stack)


class _PixelsDict(gym.ObservationWrapper):
    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = gym.spaces.Dict({"pixels": env.observation_space})

    def observation(self, observation):
        return {"pixels": observation}


def make_car_racing(grayscale: bool = False, skip: int = 4, frame_stack: int = 4,
                    render_mode: str | None = None) -> gym.Env:
    """CarRacingPixels-v0: CarRacing-v3 with continuous actions (steer, gas, brake), 96x96 frames,
    each action repeated `skip` times (max over the last two frames), `frame_stack` frames stacked."""
    env = gym.make("CarRacing-v3", continuous=True, render_mode=render_mode)
    if grayscale:
        env = gym.wrappers.GrayscaleObservation(env, keep_dim=True)
    env = gym.wrappers.MaxAndSkipObservation(env, skip=skip)
    return gym.wrappers.FrameStackObservation(_PixelsDict(env), frame_stack)
