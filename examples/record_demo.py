"""Record pick-cube demonstrations by teleoperation and save the successful ones as an RLDS dataset.

    python examples/record_demo.py --teleop keyboard --render          # a person at a desktop
    python examples/record_demo.py --teleop spacemouse --render        # pip install pyspacemouse
    python examples/record_demo.py --teleop scripted --noise 0.2       # headless machines and CI

Each attempt is one episode of --env; only the attempts that lift the cube (the env terminates
with info["success"]) are kept, until --successes_needed of them are in --output_dir. Pressing q
(keyboard) or Ctrl-C stops early and keeps what was recorded. The learner loads the result with
`--preload_rlds_path DIR` (or `episodes_to_transitions(read_rlds_dataset(DIR))`).

Observations are stored exactly as the training example sees them (the env comes from the same
serl_launcher.utils.launcher.make_env), so the demos go into its replay buffer unchanged:
PandaPickCube-v0 through gymnasium's FlattenObservation, a float32 (10,) vector in the order
gymnasium flattens the sorted dict keys (block_pos, panda/gripper_pos, panda/tcp_pos, panda/tcp_vel);
PandaPickCubeVision-v0 as its dict (images + state), where RLDS's '/'-joined feature paths turn the
key "panda/tcp_pos" into nested "panda" -> "tcp_pos" (see split_slash_keys). Every episode's
episode_metadata/observation_layout spells the layout out, and the dataset's name says which it is.

Transitions are SAC's {observations, actions, next_observations, rewards, masks, dones}, written
with serl_launcher.data.rlds (RLDS's final-observation layout: N transitions are N + 1 steps).

Keyboard teleop reads the terminal in cbreak mode (keys arrive without Enter, Ctrl-C still works):
    w / s  +x / -x (away from / back to the robot base)    a / d  +y / -y (left / right from behind it)
    r / f  up / down        space  open or close the gripper
    Enter  give up this attempt (it is discarded)          q  stop and save
One press moves 1 cm; a held key repeats up to the full 3 cm per step. Keep the terminal focused
when --render opens the MuJoCo viewer. Without a viewer the status line shows the TCP and cube.
Human teleop steps the env --hz times per second (10: a 100-step episode lasts 10 s), so people
can follow; the scripted expert runs as fast as it can unless --render is on.

The vision env renders offscreen: set MUJOCO_GL=egl on machines without a display.
"""
from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from collections.abc import Mapping
from typing import NamedTuple

import franka_sim  # noqa: F401  (registers the environments)
import gymnasium as gym
import numpy as np
from absl import app, flags
from franka_sim.experts import PickCubeExpert
from tqdm import tqdm

from serl_launcher.data.rlds import RLDSWriter, transitions_to_episode
from serl_launcher.utils import launcher

STATE_ENV, VISION_ENV = "PandaPickCube-v0", "PandaPickCubeVision-v0"
DATASET_NAMES = {STATE_ENV: "panda_pick_cube_flat_state", VISION_ENV: "panda_pick_cube_vision"}
TELEOPS = ("keyboard", "spacemouse", "scripted")
KEY_STEP = 1.0 / 3.0  # action units per key press: 1 cm of the env's 3 cm per unit
MOVE_KEYS = {"w": (0, 1.0), "s": (0, -1.0), "a": (1, 1.0), "d": (1, -1.0), "r": (2, 1.0), "f": (2, -1.0)}
SPACEMOUSE_DEADZONE = 0.1  # |axis| below this is noise from a puck at rest


class DemoError(Exception):
    """A problem the operator can fix (bad directory, missing device or terminal): no traceback."""


class Command(NamedTuple):
    """One step of teleoperation: the action, and whether to end the attempt or the whole session."""

    action: np.ndarray
    end_episode: bool = False
    quit: bool = False


class Summary(NamedTuple):
    successes: int
    attempts: int
    transitions: int
    stopped_by_operator: bool


# -- teleoperation ---------------------------------------------------------------------------------
def keys_to_command(keys: str, gripper_closed: bool) -> Command:
    """The command for the keys pressed during one step (see the module docstring for the map).

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


class ScriptedTeleop:
    """franka_sim's PickCubeExpert with Gaussian action noise; in the vision env it is handed the
    cube position, which the camera observations hide."""

    def __init__(self, env: gym.Env, noise: float, seed: int):
        self._env = env
        self._expert = PickCubeExpert(env.unwrapped.observation_space, noise_std=noise, seed=seed)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def reset(self) -> None:
        """Nothing to reset: the expert is a function of the observation."""

    def act(self, obs) -> Command:
        if isinstance(obs, Mapping) and "block_pos" not in obs["state"]:
            obs = {"state": {**obs["state"], "block_pos": self._env.unwrapped.block_pos}}
        return Command(self._expert.act(obs))


class KeyboardTeleop:
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


class SpaceMouseTeleop:
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

    def __enter__(self):
        return self

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


# -- recording --------------------------------------------------------------------------------------
def make_env(env_id: str, render: bool) -> gym.Env:
    """The env exactly as the training example builds it (launcher.make_env): state observations
    flattened, vision ones kept as dicts."""
    if env_id not in DATASET_NAMES:
        raise DemoError(f"--env must be one of {sorted(DATASET_NAMES)}, got {env_id!r}")
    return launcher.make_env(env_id, render_mode="human" if render else None)


def observation_layout(env: gym.Env) -> str:
    """Human-readable layout of the recorded observations, stored with every episode."""
    flat = isinstance(env, gym.wrappers.FlattenObservation)
    leaves = _leaves(env.env.observation_space if flat else env.observation_space)
    if not flat:
        return "dict, stored nested at these paths: " + ", ".join(
            f"{path} {box.dtype} {box.shape}" for path, box in leaves)
    parts, start = [], 0
    for path, box in leaves:
        size = gym.spaces.flatdim(box)
        parts.append(f"{path}[{start}:{start + size}]")
        start += size
    return f"FlattenObservation float32 ({start},): " + ", ".join(parts)


def _leaves(space: gym.Space, prefix: str = "") -> list:
    """(path, Box) in the order gymnasium's flatten concatenates them."""
    if isinstance(space, gym.spaces.Dict):
        return [leaf for key, sub in space.spaces.items() for leaf in _leaves(sub, f"{prefix}{key}/")]
    return [(prefix.rstrip("/"), space)]


def split_slash_keys(tree):
    """RLDS feature paths are '/'-joined, so the writer refuses '/' inside a key: the vision env's
    state key "panda/tcp_pos" is stored as "panda" -> "tcp_pos", which keeps the on-disk path
    observation/state/panda/tcp_pos identical to the env's key path."""
    if not isinstance(tree, Mapping):
        return tree
    nested = {}
    for key, value in tree.items():
        *parents, leaf = key.split("/")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = split_slash_keys(value)
    return nested


def make_teleop(name: str, env: gym.Env, noise: float, seed: int):
    if name == "scripted":
        return ScriptedTeleop(env, noise, seed)
    if noise:
        raise DemoError("--noise only applies to --teleop scripted")
    if name == "keyboard":
        return KeyboardTeleop()
    if name == "spacemouse":
        return SpaceMouseTeleop()
    raise DemoError(f"--teleop must be one of {TELEOPS}, got {name!r}")


def record_demos(env_id: str, teleop: str, output_dir: str, successes_needed: int, seed: int = 0,
                 noise: float = 0.0, render: bool = False, hz: float = 10.0,
                 max_attempts: int | None = None) -> Summary:
    """Runs attempts until `successes_needed` succeed (or the operator stops, or `max_attempts`) and
    writes the successful ones to a new RLDS dataset at `output_dir`; writes nothing if none did."""
    if os.path.exists(output_dir):
        raise DemoError(f"{output_dir} already exists: record into a new directory (or delete it first)")
    if successes_needed < 1:
        raise DemoError(f"--successes_needed must be >= 1, got {successes_needed}")
    if noise < 0:
        raise DemoError(f"--noise must be >= 0, got {noise}")
    if hz <= 0:
        raise DemoError(f"--hz must be positive, got {hz}")

    env = make_env(env_id, render)
    human = teleop != "scripted"
    period = 1.0 / hz if human or render else 0.0
    metadata = {
        "env_id": np.array(env_id.encode()),
        "observation_layout": np.array(observation_layout(env).encode()),
        "teleop": np.array(f"{teleop} noise_std={noise}".encode() if teleop == "scripted" else teleop.encode()),
    }
    successes = attempts = transitions = 0
    stopped = False
    try:
        with make_teleop(teleop, env, noise, seed) as operator, \
                RLDSWriter(output_dir, name=DATASET_NAMES[env_id]) as writer, \
                tqdm(total=successes_needed, desc="successes", unit="demo") as progress:
            try:
                while successes < successes_needed and (max_attempts is None or attempts < max_attempts):
                    operator.reset()
                    episode, success, stopped = _attempt(env, operator, seed if attempts == 0 else None,
                                                         period, progress if human else None)
                    if stopped:  # the attempt under way when the operator quit does not count
                        break
                    attempts += 1
                    if success:
                        steps = transitions_to_episode(episode)
                        steps["observation"] = split_slash_keys(steps["observation"])
                        steps["episode_metadata"] = {**metadata, "attempt": np.int64(attempts - 1)}
                        writer.add_episode(steps)
                        successes += 1
                        transitions += len(episode)
                        progress.update()
                    progress.set_postfix_str(f"attempts={attempts}")
            except KeyboardInterrupt:
                stopped = True
    finally:
        env.close()
        if os.path.isdir(output_dir) and not os.listdir(output_dir):
            os.rmdir(output_dir)  # no successful episode: leave no empty dataset behind
    return Summary(successes, attempts, transitions, stopped)


def _attempt(env: gym.Env, operator, seed: int | None, period: float, status: tqdm | None) -> tuple:
    """One episode -> (its transitions, whether it succeeded, whether the operator quit)."""
    obs, _ = env.reset(seed=seed)
    episode, tick = [], time.monotonic()
    while True:
        command = operator.act(obs)
        if command.quit or command.end_episode:
            return episode, False, command.quit
        next_obs, reward, terminated, truncated, info = env.step(command.action)
        episode.append({
            "observations": obs, "actions": command.action, "next_observations": next_obs,
            "rewards": np.float32(reward), "masks": np.float32(not terminated), "dones": terminated or truncated,
        })
        obs = next_obs
        if status is not None:
            status.set_postfix_str(_status(env, obs, len(episode), reward, info))
        if terminated or truncated:
            return episode, bool(info["success"]), False
        tick += period
        time.sleep(max(0.0, tick - time.monotonic()))


def _status(env: gym.Env, obs, step: int, reward: float, info: dict) -> str:
    state = (gym.spaces.unflatten(env.env.observation_space, obs) if isinstance(env, gym.wrappers.FlattenObservation)
             else obs)["state"]
    tcp, cube = state["panda/tcp_pos"], env.unwrapped.block_pos
    return (f"step {step} tcp {np.round(tcp, 3)} cube {np.round(cube, 3)} gripper "
            f"{state['panda/gripper_pos'][0]:.2f}{' grasp' if info['grasp'] else ''} reward {reward:.2f}")


# -- command line -----------------------------------------------------------------------------------
FLAGS = flags.FLAGS


def define_flags() -> None:
    """Called from __main__ only, so that importing this file (tests) defines no global flags."""
    flags.DEFINE_enum("env", STATE_ENV, sorted(DATASET_NAMES), "Environment to record in.")
    flags.DEFINE_enum("teleop", None, TELEOPS, "Who drives: keyboard (default with a terminal), spacemouse, "
                      "or the scripted expert (default without one).")
    flags.DEFINE_integer("successes_needed", 20, "Successful episodes to record.")
    flags.DEFINE_string("output_dir", None, "New dataset directory "
                        "(default runs/demos/<env>_<successes_needed>_demos_<timestamp>).")
    flags.DEFINE_integer("seed", 0, "Seeds the env's cube placements and the scripted expert's noise.")
    flags.DEFINE_float("noise", 0.0, "Std of Gaussian noise on the scripted expert's motion (action units).")
    flags.DEFINE_bool("render", False, "Show the MuJoCo viewer (needs a display).")
    flags.DEFINE_float("hz", 10.0, "Env steps per second of wall-clock time for human teleop and --render.")
    flags.DEFINE_integer("max_attempts", None, "Give up after this many attempts (default: never).")


def main(argv) -> None:
    del argv
    teleop = FLAGS.teleop or ("keyboard" if sys.stdin.isatty() else "scripted")
    output_dir = FLAGS.output_dir or os.path.join(
        "runs", "demos", f"{FLAGS.env}_{FLAGS.successes_needed}_demos_{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    try:
        summary = record_demos(FLAGS.env, teleop, output_dir, FLAGS.successes_needed, FLAGS.seed, FLAGS.noise,
                               FLAGS.render, FLAGS.hz, FLAGS.max_attempts)
    except DemoError as error:
        sys.exit(f"record_demo: {error}")
    if not summary.successes:
        sys.exit(f"record_demo: no successful episode in {summary.attempts} attempts; nothing written")
    print(f"Saved the {summary.successes} successful of {summary.attempts} attempts ({summary.transitions} "
          f"transitions, teleop {teleop}) to {output_dir}\n"
          f"Train with them: pass --preload_rlds_path={output_dir} to the learner, or load them yourself with\n"
          f"  serl_launcher.data.rlds.episodes_to_transitions(read_rlds_dataset({output_dir!r}))")
    if summary.successes < FLAGS.successes_needed and not summary.stopped_by_operator:
        sys.exit(f"record_demo: only {summary.successes} of the {FLAGS.successes_needed} successes needed "
                 f"in {summary.attempts} attempts (--max_attempts)")


if __name__ == "__main__":
    define_flags()
    app.run(main)
