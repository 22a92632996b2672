"""Who chooses each action while examples/record_demo.py records: a person or a scripted expert.

Every teleop is a context manager with `reset()` (a new attempt begins) and `act(observation) ->
Command`. `make_teleop` picks one by name and by the kind of env ("sim", "robot" or "game"):

- franka_sim (position steps of up to 3 cm per action unit, stepped --hz times a second):
  record_demo's own key map and SpaceMouse mapping, made for those steps (one key press = 1 cm,
  Enter gives up an attempt, q stops), and franka_sim's PickCubeExpert.
- the robot (franka_env: TCP velocities, stepped by the env at its 50 Hz control rate): franka_env's
  SpaceMouse and KeyboardTeleop devices through the very mapping HIL interventions use
  (SpaceMouseIntervention.operator_action), and the task's expert from franka_env.experts.
- the game (classic_envs' CarRacing): the arrow keys of its pygame window, in
  record_demo_car_racing.py; it has no scripted driver and no SpaceMouse mapping.
"""
from __future__ import annotations

import os
import select
import sys
import termios
import tty
from collections.abc import Mapping
from typing import NamedTuple

import gymnasium as gym
import numpy as np
from franka_sim.experts import PickCubeExpert
from tqdm import tqdm

TELEOPS = ("keyboard", "spacemouse", "scripted")
KEY_STEP = 1.0 / 3.0  # action units per key press: 1 cm of the env's 3 cm per unit
MOVE_KEYS = {"w": (0, 1.0), "s": (0, -1.0), "a": (1, 1.0), "d": (1, -1.0), "r": (2, 1.0), "f": (2, -1.0)}
SPACEMOUSE_DEADZONE = 0.1  # |axis| below this is noise from a puck at rest
ROBOT_HELP = {
    "keyboard": "keys: w/s away from / towards you, a/d left / right, r/f up / down (a key keeps moving for "
                "0.5 s after its last press), c closes the gripper, v opens it; Ctrl-C stops and saves",
    "spacemouse": "SpaceMouse: the puck moves the TCP (push it away from you: the TCP moves away from you), "
                  "left button closes the gripper, right button opens it; Ctrl-C stops and saves",
}


class DemoError(Exception):
    """A problem the operator can fix (bad directory, missing device or terminal): no traceback."""


class Command(NamedTuple):
    """One step of teleoperation: the action, and whether to end the attempt or the whole session."""

    action: np.ndarray
    end_episode: bool = False
    quit: bool = False


def env_observation(env: gym.Env, obs):
    """The env's own observation (a dict) from the recorded one, which FlattenObservation flattened."""
    if isinstance(env, gym.wrappers.FlattenObservation):
        return gym.spaces.unflatten(env.env.observation_space, obs)
    return obs


def check_teleop(name: str, kind: str, noise: float, operator_yaw: float) -> None:
    """Refuses a teleop setting that would be ignored (called before an arm is connected)."""
    if name not in TELEOPS:
        raise DemoError(f"--teleop must be one of {TELEOPS}, got {name!r}")
    if kind == "game" and name != "keyboard":
        raise DemoError(f"--teleop {name}: the game is played with --teleop keyboard (it has no scripted "
                        "driver and no SpaceMouse mapping)")
    if noise < 0:
        raise DemoError(f"--noise must be >= 0, got {noise}")
    if noise and name != "scripted":
        raise DemoError("--noise only applies to --teleop scripted")
    if operator_yaw and not (kind == "robot" and name != "scripted"):
        raise DemoError("--operator_yaw only applies to a person driving the robot (keyboard or spacemouse)")


def make_teleop(name: str, env: gym.Env, kind: str, noise: float = 0.0, seed: int = 0,
                operator_yaw: float = 0.0):
    """The teleop `name` for `env` of `kind` (check_teleop's checks passed): see the module docstring."""
    if kind == "game":
        from record_demo_car_racing import CarRacingKeyboard  # pygame: the `envs` extra

        return CarRacingKeyboard(env)
    robot = kind == "robot"
    if name == "scripted":
        return RobotScriptedTeleop(env, noise, seed) if robot else ScriptedTeleop(env, noise, seed)
    if robot:
        return OperatorTeleop(env, _open_robot_device(name), operator_yaw, ROBOT_HELP[name])
    return KeyboardTeleop() if name == "keyboard" else SpaceMouseTeleop()


class Teleop:
    """Defaults: nothing to open or close, nothing to reset between attempts."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def reset(self) -> None:
        pass


# -- franka_sim ------------------------------------------------------------------------------------
def keys_to_command(keys: str, gripper_closed: bool) -> Command:
    """The command for the keys pressed during one step (see record_demo's docstring for the map).

    Motion keys add up per axis (a held key repeats), clipped to [-1, 1]; each space toggles the
    gripper, whose new state is action[3] > 0. Other keys, uppercase included (arrow keys send
    escape sequences ending in A-D), are ignored.
    """
    action = np.zeros(4, dtype=np.float32)
    for key in keys:
        if key in MOVE_KEYS:
            axis, sign = MOVE_KEYS[key]
            action[axis] += sign * KEY_STEP
        elif key == " ":
            gripper_closed = not gripper_closed
    action[:3] = np.clip(action[:3], -1.0, 1.0)
    action[3] = 1.0 if gripper_closed else -1.0
    return Command(action, end_episode="\n" in keys or "\r" in keys, quit="q" in keys)


def spacemouse_to_action(x: float, y: float, z: float, gripper_closed: bool) -> np.ndarray:
    """pyspacemouse's default axes (x right, y away from the operator, z up) for an operator behind
    the robot: pushing the puck away moves the TCP to +x, right to -y, up to +z."""
    move = np.array([y, -x, z], dtype=np.float32)
    move[np.abs(move) < SPACEMOUSE_DEADZONE] = 0.0
    return np.append(np.clip(move, -1.0, 1.0), 1.0 if gripper_closed else -1.0).astype(np.float32)


class ScriptedTeleop(Teleop):
    """franka_sim's PickCubeExpert with Gaussian action noise; in the vision env it is handed the
    cube position, which the camera observations hide."""

    def __init__(self, env: gym.Env, noise: float, seed: int):
        self._env = env
        self._expert = PickCubeExpert(env.unwrapped.observation_space, noise_std=noise, seed=seed)

    def act(self, obs) -> Command:
        if isinstance(obs, Mapping) and "block_pos" not in obs["state"]:
            obs = {"state": {**obs["state"], "block_pos": self._env.unwrapped.block_pos}}
        return Command(self._expert.act(obs))


class KeyboardTeleop(Teleop):
    """Keys from the controlling terminal, read without blocking once per step."""

    def __init__(self):
        if not sys.stdin.isatty():
            raise DemoError("--teleop keyboard needs an interactive terminal on stdin; "
                            "use --teleop scripted on headless machines")
        self._fd = sys.stdin.fileno()
        self._saved = None
        self._closed = False

    def __enter__(self):
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)  # unlike raw mode, keeps Ctrl-C and output newlines working
        tqdm.write("keys: w/s a/d r/f move x/y/z, space gripper, Enter give up the attempt, q stop and save")
        return self

    def __exit__(self, *exc_info):
        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def reset(self) -> None:
        self._closed = False

    def act(self, obs) -> Command:
        keys = ""
        while select.select([self._fd], [], [], 0)[0]:
            keys += os.read(self._fd, 64).decode(errors="ignore")
        command = keys_to_command(keys, self._closed)
        self._closed = bool(command.action[3] > 0)
        return command


class SpaceMouseTeleop(Teleop):
    """A 3Dconnexion SpaceMouse through pyspacemouse: the puck moves the TCP, the left button
    toggles the gripper, the right button gives up the attempt."""

    def __init__(self):
        try:
            import pyspacemouse
        except (ImportError, OSError) as error:  # OSError: the hidapi C library is missing
            raise DemoError(
                f"--teleop spacemouse needs pyspacemouse ({error}): `pip install pyspacemouse`, plus the hidapi "
                "library (Debian/Ubuntu: `sudo apt-get install libhidapi-dev`) and read access to /dev/hidraw*"
            ) from error
        try:
            device = pyspacemouse.open()  # pyspacemouse 1.x returns None when nothing is found, 2.x raises
        except RuntimeError as error:
            device, reason = None, str(error)
        else:
            reason = "no supported device found"
        if not device:
            raise DemoError(f"SpaceMouse not found ({reason}): plug it in and check that your user can read "
                            "/dev/hidraw* (a udev rule), or use --teleop keyboard")
        self._device = device
        self._closed = False
        self._buttons = (0, 0)

    def __exit__(self, *exc_info):
        self._device.close()

    def reset(self) -> None:
        self._closed = False

    def act(self, obs) -> Command:
        state = self._device.read()
        buttons = tuple(state.buttons[:2]) + (0,) * (2 - len(state.buttons[:2]))
        pressed = [now and not before for now, before in zip(buttons, self._buttons)]  # rising edges only
        self._buttons = buttons
        self._closed ^= bool(pressed[0])
        return Command(spacemouse_to_action(state.x, state.y, state.z, self._closed), end_episode=bool(pressed[1]))


# -- the robot (franka_env) ------------------------------------------------------------------------
class RobotScriptedTeleop(Teleop):
    """The expert franka_env.experts has for the env's task (e.g. ReachExpert), fed the env's own
    dict observation."""

    def __init__(self, env: gym.Env, noise: float, seed: int):
        from franka_env.experts import scripted_expert

        self._env = env
        try:
            self._expert = scripted_expert(env.unwrapped.task, env.action_space, noise_std=noise, seed=seed)
        except ValueError as error:
            raise DemoError(f"--teleop scripted: {error}; record this task with keyboard or spacemouse") from error

    def act(self, obs) -> Command:
        return Command(self._expert.act(env_observation(self._env, obs)))


class OperatorTeleop(Teleop):
    """A person drives the arm with a franka_env device, mapped exactly as in a HIL intervention
    (SpaceMouseIntervention.operator_action: dead zone, the operator's frame turned to the base
    frame by `operator_yaw`, close / open buttons). While the operator does nothing the arm holds
    still: zero velocity, gripper as it is (0), and that is the action recorded. Only the wrapper's
    mapping is used; the recorder steps the env itself. Closes the device on exit."""

    def __init__(self, env: gym.Env, device, operator_yaw: float, help_text: str):
        from franka_env import SpaceMouseIntervention

        self._mapping = SpaceMouseIntervention(env, device, operator_yaw=operator_yaw)
        self._idle = np.zeros(env.action_space.shape, np.float32)
        self._help = help_text

    def __enter__(self):
        tqdm.write(self._help)
        return self

    def __exit__(self, *exc_info):
        self._mapping.device.close()

    def act(self, obs) -> Command:
        action = self._mapping.operator_action()
        return Command(self._idle if action is None else action)


def _open_robot_device(name: str):
    """franka_env's SpaceMouse or KeyboardTeleop (a terminal's keys), opened now."""
    import franka_env

    try:
        return franka_env.SpaceMouse() if name == "spacemouse" else franka_env.KeyboardTeleop()
    except (ImportError, RuntimeError) as error:
        raise DemoError(f"--teleop {name}: {error}") from error
