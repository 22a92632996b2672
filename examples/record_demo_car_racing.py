"""A person plays classic_envs:CarRacingPixels-v0 in its pygame window while record_demo.py records.

The keys are read from pygame's event queue (KEYDOWN / KEYUP -> the set of held keys), as
gymnasium's own `python -m gymnasium.envs.box2d.car_racing` does, so the game can be driven without
a terminal and tested headless (SDL_VIDEODRIVER=dummy, pygame.event.post):

    left / right  steer         up  gas         down or space  brake
    Esc  give up this attempt (it is discarded)         q or closing the window  stop and save

A key acts while it is held; a tap shorter than one env step (4 frames, 80 ms) still acts for that
step. Kept apart from record_demo_teleop.py so that pygame (the `envs` extra) is imported only for
the game.
"""
from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pygame
from record_demo_teleop import Command, DemoError, Teleop
from tqdm import tqdm

BRAKE = 0.8  # gymnasium's play script brakes with 0.8: 1.0 locks the wheels
BRAKE_KEYS = (pygame.K_DOWN, pygame.K_SPACE)
HEADLESS_DRIVERS = ("offscreen", "dummy")  # what pygame falls back to without a display
HELP = "keys (in the game's window): left/right steer, up gas, down or space brake, Esc give up the attempt, " \
       "q stop and save"


def car_action(keys) -> np.ndarray:
    """CarRacing's own action [steer, gas, brake] (Box [-1, 0, 0] .. [1, 1, 1]) for the held `keys`:
    nothing held is all zeros (the car rolls on), left and right together cancel out."""
    steer = float(pygame.K_RIGHT in keys) - float(pygame.K_LEFT in keys)
    gas = float(pygame.K_UP in keys)
    brake = BRAKE if any(key in keys for key in BRAKE_KEYS) else 0.0
    return np.array([steer, gas, brake], dtype=np.float32)


def rescale(action: np.ndarray, source: gym.spaces.Box, target: gym.spaces.Box) -> np.ndarray:
    """`action` in `source`'s bounds mapped affinely onto `target`'s: the recorder steps (and the
    learner trains on) make_env's RescaleAction to [-1, 1], so the car's own action is converted
    back the way that wrapper converts forward (gas 0 -> -1, brake 0.8 -> 0.6)."""
    fraction = (action - source.low) / (source.high - source.low)
    return (target.low + fraction * (target.high - target.low)).astype(np.float32)


class CarRacingKeyboard(Teleop):
    """The held arrow keys of the game's window -> the env's action, once per env step. Held keys
    persist across attempts, as the keyboard does: a key released during a reset arrives as a
    KEYUP at the next step."""

    def __init__(self, env: gym.Env):
        self._car_space, self._env_space = env.unwrapped.action_space, env.action_space
        self._held: set = set()

    def __enter__(self):
        try:  # the env opens its window at the first reset; this only finds out whether it can
            pygame.display.init()
        except pygame.error as error:
            raise DemoError(f"--teleop keyboard plays CarRacing in a pygame window, which failed: {error}") from error
        if pygame.display.get_driver() in HEADLESS_DRIVERS and "SDL_VIDEODRIVER" not in os.environ:
            raise DemoError("--teleop keyboard plays CarRacing in a window, and there is no display "
                            f"(pygame fell back to its {pygame.display.get_driver()!r} driver)")
        tqdm.write(HELP)
        return self

    def act(self, obs) -> Command:
        pressed, end, quit = set(), False, False
        for event in pygame.event.get():
            if event.type == pygame.KEYDOWN:
                pressed.add(event.key)
                self._held.add(event.key)
                end |= event.key == pygame.K_ESCAPE
                quit |= event.key == pygame.K_q
            elif event.type == pygame.KEYUP:
                self._held.discard(event.key)
            elif event.type == pygame.QUIT:
                quit = True
        action = rescale(car_action(self._held | pressed), self._car_space, self._env_space)
        return Command(action, end_episode=end, quit=quit)
