"""Human interventions (HIL-SERL style): an operator takes over from the policy with a
SpaceMouse, or with the keyboard when there is none.

`SpaceMouseIntervention` wraps a FrankaEnv: at every step it reads the device; while the operator
moves it beyond the dead zone (or presses a gripper button), the operator's action replaces the
policy's, and info["intervene_action"] holds the action actually executed with
info["intervened"] = True (the actor loop stores that action and flags the transition). Every
step's info has "intervened".

Devices report a `TeleopReading` in the operator's frame: x to the operator's right, y away from
the operator, z up, then rotations about those axes (right-handed), each in [-1, 1]. The wrapper
turns it into the base frame with `operator_yaw`, the direction the operator faces measured from
the base x axis: 0 = standing behind the robot's base, looking along +x.

The SpaceMouse needs pyspacemouse (the `robot` extra) and the hidapi C library; it is imported on
first use. Neither a SpaceMouse nor a person is available to the tests: they drive the wrapper
with a stand-in device, and the keyboard device through a pseudo-terminal.
"""
from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from scipy.spatial.transform import Rotation

CLOSE_BUTTON, OPEN_BUTTON = 0, 1


@dataclass(frozen=True)
class TeleopReading:
    motion: np.ndarray  # (6,) translation x y z, rotation about x y z; operator frame, each in [-1, 1]
    buttons: tuple[bool, ...]  # CLOSE_BUTTON closes the gripper, OPEN_BUTTON opens it


class SpaceMouse:
    """A 3Dconnexion SpaceMouse through pyspacemouse 2.x (right-handed, z-up axis convention).
    Untested here: there is no device on the development and CI machines."""

    def __init__(self, path: str | None = None):
        try:
            import pyspacemouse
        except (ImportError, OSError) as error:  # OSError: the hidapi C library is missing
            raise ImportError(
                f"SpaceMouse needs pyspacemouse ({error}): pip install -e '.[robot]', plus the hidapi library "
                "(Debian/Ubuntu: sudo apt-get install libhidapi-dev) and read access to /dev/hidraw*") from error
        convention = pyspacemouse.AxisConvention.HID_Z_UP
        try:
            if path is None:
                self._device = pyspacemouse.open(axis_convention=convention)
            else:
                self._device = pyspacemouse.open_by_path(path, axis_convention=convention)
        except (RuntimeError, FileNotFoundError) as error:
            raise RuntimeError(f"SpaceMouse not found ({error}): check that it is plugged in, that the hidapi library "
                               "is installed (Debian/Ubuntu: sudo apt-get install libhidapi-dev) and that your user "
                               "can read /dev/hidraw* (a udev rule)") from error

    def read(self) -> TeleopReading:
        s = self._device.read()
        return TeleopReading(np.array([s.x, s.y, s.z, s.roll, s.pitch, s.yaw], dtype=np.float64),
                             tuple(bool(b) for b in s.buttons))

    def close(self) -> None:
        self._device.close()


class KeyboardTeleop:
    """Keys from a terminal (stdin, or any tty file descriptor), read without blocking:

        d / a  right / left      w / s  away / towards you      r / f  up / down
        l / j, i / k, u / o      rotate about x, y, z (+ / -)
        c  close the gripper     v  open it

    Terminals repeat a held key only after a delay (~0.3-0.5 s) and at ~30 Hz, slower than the
    50 Hz loop, so a key keeps its axis at full deflection for `hold` seconds after its last press.
    """

    KEYS = {"d": (0, 1), "a": (0, -1), "w": (1, 1), "s": (1, -1), "r": (2, 1), "f": (2, -1),
            "l": (3, 1), "j": (3, -1), "i": (4, 1), "k": (4, -1), "u": (5, 1), "o": (5, -1)}
    BUTTON_KEYS = {"c": CLOSE_BUTTON, "v": OPEN_BUTTON}

    def __init__(self, fd: int | None = None, hold: float = 0.5, clock: Callable[[], float] = time.monotonic):
        self._fd = sys.stdin.fileno() if fd is None else fd
        if not os.isatty(self._fd):
            raise RuntimeError("KeyboardTeleop needs a terminal (a tty) to read keys from")
        self._hold, self._clock = hold, clock
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)  # keys arrive without Enter; Ctrl-C still raises KeyboardInterrupt
        self._until = np.full(6, -np.inf)
        self._sign = np.zeros(6)
        self._button_until = np.full(2, -np.inf)

    def read(self) -> TeleopReading:
        now = self._clock()
        keys = ""
        while select.select([self._fd], [], [], 0)[0]:
            keys += os.read(self._fd, 64).decode(errors="ignore")
        for key in keys:
            if key in self.KEYS:
                axis, sign = self.KEYS[key]
                self._until[axis], self._sign[axis] = now + self._hold, sign
            elif key in self.BUTTON_KEYS:
                self._button_until[self.BUTTON_KEYS[key]] = now + self._hold
        motion = np.where(self._until >= now, self._sign, 0.0)
        return TeleopReading(motion, tuple(bool(t >= now) for t in self._button_until))

    def close(self) -> None:
        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)


class SpaceMouseIntervention(gym.Wrapper):
    """Replaces the policy's action with the operator's while the operator acts (see module doc).

    The operator's action: translation (and rotation, for 7-dim actions) from the device, axes
    under `deadzone` zeroed; gripper +1 while CLOSE_BUTTON is pressed, -1 while OPEN_BUTTON is,
    else 0, which the env's hysteresis reads as "keep the gripper as it is". Closes the device
    with the env.
    """

    def __init__(self, env: gym.Env, device, deadzone: float = 0.1, operator_yaw: float = 0.0):
        super().__init__(env)
        if not 0 <= deadzone < 1:
            raise ValueError(f"deadzone must be in [0, 1), got {deadzone}")
        if env.action_space.shape not in ((4,), (7,)):
            raise ValueError(f"expected a FrankaEnv action space of shape (4,) or (7,), got {env.action_space}")
        self.device, self.deadzone = device, deadzone
        self._to_base = Rotation.from_euler("z", operator_yaw - np.pi / 2).as_matrix()  # operator y -> base x at yaw 0

    def operator_action(self) -> np.ndarray | None:
        """The operator's action now, or None while the operator does nothing."""
        reading = self.device.read()
        motion = np.where(np.abs(reading.motion) < self.deadzone, 0.0, np.clip(reading.motion, -1.0, 1.0))
        buttons = tuple(reading.buttons) + (False,) * 2
        gripper = 1.0 if buttons[CLOSE_BUTTON] else -1.0 if buttons[OPEN_BUTTON] else 0.0
        rotating = self.action_space.shape == (7,)
        if not (np.any(motion[:3]) or (rotating and np.any(motion[3:])) or gripper):
            return None
        parts = [self._to_base @ motion[:3]] + ([self._to_base @ motion[3:]] if rotating else []) + [[gripper]]
        return np.clip(np.concatenate(parts), -1.0, 1.0).astype(np.float32)

    def step(self, action):
        override = self.operator_action()
        if override is not None:
            action = override
        observation, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "intervened": override is not None}
        if override is not None:
            info["intervene_action"] = override.copy()
        return observation, reward, terminated, truncated, info

    def close(self):
        self.device.close()
        super().close()
