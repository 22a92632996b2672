"""Record demonstrations by teleoperation and save the successful ones as an RLDS dataset, in
franka_sim's pick-cube envs or on the real arm (any registered franka_env id); or record a person
playing classic_envs' CarRacing, where every finished episode is kept.

    python examples/record_demo.py --teleop keyboard --render          # a person at a desktop
    python examples/record_demo.py --teleop spacemouse --render        # pip install pyspacemouse
    python examples/record_demo.py --teleop scripted --noise 0.2       # headless machines and CI
    python examples/record_demo.py --env franka_env:FrankaReach-v0 --robot_ip 172.16.0.2 --teleop spacemouse
    python examples/record_demo.py --env classic_envs:CarRacingPixels-v0 --successes_needed 20   # play

Each attempt is one episode of --env; only the attempts the env ends with info["success"] (cube
lifted, target reached) are kept, until --successes_needed of them are in --output_dir. Pressing q
(keyboard, franka_sim) or Ctrl-C stops early and keeps what was recorded. The learner loads the
result with `--preload_rlds_path DIR` (or `episodes_to_transitions(read_rlds_dataset(DIR))`).

Observations are stored exactly as the training examples see them (the env comes from the same
serl_launcher.utils.launcher.make_env), so the demos go into their replay buffers unchanged:
PandaPickCube-v0 through gymnasium's FlattenObservation, a float32 (13,) vector in the order
gymnasium flattens the sorted dict keys (block_offset, block_pos, panda/gripper_pos, panda/tcp_pos,
panda/tcp_vel);
PandaPickCubeVision-v0 as its dict (images + state), where RLDS's '/'-joined feature paths turn the
key "panda/tcp_pos" into nested "panda" -> "tcp_pos" (see split_slash_keys); FrankaReach-v0's state
dict flattened to (26,), as examples/async_sac_franka's actor stores it. Every episode's
episode_metadata/observation_layout spells the layout out, and the dataset's name says which it is.

Transitions are SAC's {observations, actions, next_observations, rewards, masks, dones}, written
with serl_launcher.data.rlds (RLDS's final-observation layout: N transitions are N + 1 steps).

franka_sim keyboard teleop reads the terminal in cbreak mode (keys arrive without Enter, Ctrl-C works):
    w / s  +x / -x (away from / back to the robot base)    a / d  +y / -y (left / right from behind it)
    r / f  up / down        space  open or close the gripper
    Enter  give up this attempt (it is discarded)          q  stop and save
One press moves 1 cm; a held key repeats up to the full 3 cm per step. Keep the terminal focused
when --render opens the MuJoCo viewer. Without a viewer the status line shows the TCP and cube.
Human teleop steps the env --hz times per second (10: a 100-step episode lasts 10 s), so people
can follow; the scripted expert runs as fast as it can unless --render is on.

The robot (franka_env ids, --robot_ip; --realtime_ignore for franky-sim only) steps at its own
control rate, 50 Hz, for people and the scripted expert alike (the env's rate keeper; no --hz).
The SpaceMouse and keyboard are franka_env's devices with the HIL intervention mapping (velocities
in the operator's frame, --operator_yaw; left button / c closes the gripper, right button / v
opens it); see record_demo_teleop.py. Attempts end on success or at the env's time limit (300
steps, 6 s, for FrankaReach-v0); Ctrl-C stops the arm first, then saves. `--teleop scripted` is
the task's expert from franka_env.experts (FrankaReach-v0 has one).

The vision env renders offscreen: set MUJOCO_GL=egl on machines without a display.

classic_envs:CarRacingPixels-v0 is a game (GAME_ENVS): it has no success signal, so every episode
that ends by itself (lap finished, car off the playfield, or the time limit: 1000 frames, 250 steps
of 4 frames) is kept, and --successes_needed counts those episodes. A person plays it in the game's
pygame window with the arrow keys (up gas, left / right steer, down or space brake; Esc gives up an
attempt, which is discarded; q or closing the window stops and saves): see
record_demo_car_racing.py. The game runs at its own 50 frames per second, 12.5 env steps per
second (no --hz); there is no scripted driver. Observations are stored as the pixel learner
(examples/async_drq_sim --env classic_envs:CarRacingPixels-v0) sees them: {"pixels": uint8
(4, 96, 96, 3)}, the last 4 frames; actions in the learner's [-1, 1] (make_env's RescaleAction:
no gas is -1, braking 0.6). Pretrain on them with the learner's --preload_rlds_path DIR
--pretrain_steps N.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import NamedTuple

import franka_sim  # noqa: F401  (registers the environments)
import gymnasium as gym
import numpy as np
from absl import app, flags
from record_demo_teleop import TELEOPS, DemoError, check_teleop, env_observation, make_teleop
from tqdm import tqdm

from serl_launcher.data.rlds import RLDSWriter, transitions_to_episode
from serl_launcher.utils import launcher

STATE_ENV, VISION_ENV = "PandaPickCube-v0", "PandaPickCubeVision-v0"
SIM_ENVS = (STATE_ENV, VISION_ENV)
GAME_ENVS = ("classic_envs:CarRacingPixels-v0",)  # no success signal: every finished episode is kept
DEFAULT_HZ = 10.0


class Summary(NamedTuple):
    successes: int
    attempts: int
    transitions: int
    stopped_by_operator: bool


# -- recording --------------------------------------------------------------------------------------
def env_kind(env_id: str) -> str:
    """"sim" (franka_sim's two envs), "game" (GAME_ENVS) or "robot": any other --env must be a
    franka_env robot env."""
    return "sim" if env_id in SIM_ENVS else "game" if env_id in GAME_ENVS else "robot"


def make_env(env_id: str, render: bool = False, env_kwargs: Mapping | None = None) -> gym.Env:
    """The env exactly as the training examples build it (launcher.make_env): state observations
    flattened, vision ones kept as dicts. A robot env connects to the arm (env_kwargs: robot_ip, ...);
    a game always opens its window, where the person plays."""
    kind = env_kind(env_id)
    if kind != "robot":
        human = render or kind == "game"
        return launcher.make_env(env_id, render_mode="human" if human else None, **(env_kwargs or {}))
    franka_env = _franka_env()
    if render:
        raise DemoError("--render is for franka_sim's envs; the robot env has no viewer")
    try:
        env = launcher.make_env(env_id, **(env_kwargs or {}))
    except gym.error.Error as error:
        raise DemoError(f"--env must be one of {SIM_ENVS + GAME_ENVS} or a franka_env id such as "
                        f"franka_env:FrankaReach-v0, got {env_id!r} ({error})") from error
    except (TypeError, ValueError, franka_env.RobotError) as error:  # bad arguments, no arm at robot_ip
        raise DemoError(f"{env_id}: {error}") from error
    if not isinstance(env.unwrapped, franka_env.FrankaEnv):
        env.close()
        raise DemoError(f"--env {env_id!r} is neither one of {SIM_ENVS + GAME_ENVS} nor a franka_env robot env")
    return env


def robot_env_kwargs(env_id: str, robot_ip: str | None, realtime_ignore: bool) -> dict:
    """The command line's arm arguments for make_env; only robot envs take them, and need robot_ip."""
    if env_kind(env_id) != "robot":
        if robot_ip or realtime_ignore:
            raise DemoError(f"--robot_ip and --realtime_ignore are for franka_env envs, not {env_id}")
        return {}
    if not robot_ip:
        raise DemoError(f"--env {env_id} drives an arm: give its address with --robot_ip")
    return {"robot_ip": robot_ip, "realtime_ignore": realtime_ignore}


def _franka_env():
    try:
        import franka_env
    except ImportError as error:
        raise DemoError(f"robot envs need franka_env's dependencies ({error}): pip install -e '.[robot]'") from error
    return franka_env


def dataset_name(env_id: str, flat: bool) -> str:
    """snake_case of the env's name, "_flat_state" added for flattened observations:
    PandaPickCube-v0 -> panda_pick_cube_flat_state, PandaPickCubeVision-v0 -> panda_pick_cube_vision."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", env_id.split(":")[-1].split("-v")[0]).lower()
    return f"{name}_flat_state" if flat else name


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


def record_demos(env_id: str, teleop: str, output_dir: str, successes_needed: int, seed: int = 0,
                 noise: float = 0.0, render: bool = False, hz: float | None = None,
                 max_attempts: int | None = None, env_kwargs: Mapping | None = None,
                 operator_yaw: float = 0.0) -> Summary:
    """Runs attempts until `successes_needed` succeed (or the operator stops, or `max_attempts`) and
    writes the successful ones to a new RLDS dataset at `output_dir`; writes nothing if none did.
    A game has no success signal: every finished attempt counts as one. `hz` paces franka_sim for
    people (default 10); robot and game keep their own rates. `env_kwargs` go to gymnasium.make
    (robot_ip, realtime_ignore, control, ... for a robot env; max_episode_steps, ...)."""
    if os.path.exists(output_dir):
        raise DemoError(f"{output_dir} already exists: record into a new directory (or delete it first)")
    if successes_needed < 1:
        raise DemoError(f"--successes_needed must be >= 1, got {successes_needed}")
    kind = env_kind(env_id)
    robot = kind == "robot"
    check_teleop(teleop, kind, noise, operator_yaw)
    if kind != "sim" and hz is not None:
        raise DemoError(f"--hz is for franka_sim's envs: {env_id} steps at its own control rate")
    hz = DEFAULT_HZ if hz is None else hz
    if hz <= 0:
        raise DemoError(f"--hz must be positive, got {hz}")

    env = make_env(env_id, render, env_kwargs)
    human = teleop != "scripted"
    period = 1.0 / hz if kind == "sim" and (human or render) else 0.0
    flat = isinstance(env, gym.wrappers.FlattenObservation)
    metadata = {
        "env_id": np.array(env_id.encode()),
        "observation_layout": np.array(observation_layout(env).encode()),
        "teleop": np.array(f"{teleop} noise_std={noise}".encode() if teleop == "scripted" else teleop.encode()),
    }
    # Ctrl-C / SIGTERM stop the arm before interrupting; failures to recover it end the session.
    stop_arm = _franka_env().stop_on_signals(env) if robot else contextlib.nullcontext()
    arm_errors = (_franka_env().RobotError,) if robot else ()
    successes = attempts = transitions = 0
    stopped = False
    try:
        with make_teleop(teleop, env, kind, noise, seed, operator_yaw) as operator, stop_arm, \
                RLDSWriter(output_dir, name=dataset_name(env_id, flat)) as writer, \
                tqdm(total=successes_needed, desc=_kept(kind) + " episodes", unit="demo") as progress:
            try:
                while successes < successes_needed and (max_attempts is None or attempts < max_attempts):
                    operator.reset()
                    episode, kept, stopped = _attempt(env, operator, seed if attempts == 0 else None, period,
                                                      progress if human else None, needs_success=kind != "game")
                    if stopped:  # the attempt under way when the operator quit does not count
                        break
                    attempts += 1
                    if kept:
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
            except arm_errors as error:
                raise DemoError(f"the arm failed ({error}); the {successes} successful attempts before it are "
                                f"kept in {output_dir}") from error
    finally:
        env.close()
        if os.path.isdir(output_dir) and not os.listdir(output_dir):
            os.rmdir(output_dir)  # no successful episode: leave no empty dataset behind
    return Summary(successes, attempts, transitions, stopped)


def _kept(kind: str) -> str:
    """What makes an episode worth keeping, for messages: a game has no success, only an end."""
    return "finished" if kind == "game" else "successful"


def _attempt(env: gym.Env, operator, seed: int | None, period: float, status: tqdm | None,
             needs_success: bool = True) -> tuple:
    """One episode -> (its transitions, whether to keep them, whether the operator quit). An attempt
    the operator gives up is never kept; one the env ends is kept if it succeeded or, without
    `needs_success` (a game), always."""
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
            return episode, not needs_success or bool(info["success"]), False
        tick += period
        time.sleep(max(0.0, tick - time.monotonic()))


def _status(env: gym.Env, obs, step: int, reward: float, info: dict) -> str:
    obs = env_observation(env, obs)
    if "state" not in obs:  # the game's pixels: its window shows the rest (the score)
        return f"step {step} reward {reward:.1f}"
    state = obs["state"]
    if "tcp_pose" in state:  # the robot: the TCP and the task's own entries (a reach target, ...)
        task = "".join(f" {key} {np.round(state[key], 3)}" for key in env.unwrapped.task.observation_space)
        return f"step {step} tcp {np.round(state['tcp_pose'][:3], 3)}{task} reward {reward:.3f}"
    tcp, cube = state["panda/tcp_pos"], env.unwrapped.block_pos
    return (f"step {step} tcp {np.round(tcp, 3)} cube {np.round(cube, 3)} gripper "
            f"{state['panda/gripper_pos'][0]:.2f}{' grasp' if info['grasp'] else ''} reward {reward:.2f}")


# -- command line -----------------------------------------------------------------------------------
FLAGS = flags.FLAGS


def define_flags() -> None:
    """Called from __main__ only, so that importing this file (tests) defines no global flags."""
    flags.DEFINE_string("env", STATE_ENV, f"Environment to record in: one of {SIM_ENVS} (franka_sim), a "
                        "franka_env id such as franka_env:FrankaReach-v0 (the arm; needs --robot_ip), or a "
                        f"game played in its window with the keyboard: {GAME_ENVS}.")
    flags.DEFINE_enum("teleop", None, TELEOPS, "Who drives: keyboard (default with a terminal, and for a "
                      "game), spacemouse, or the scripted expert (default without one).")
    flags.DEFINE_integer("successes_needed", 20, "Successful episodes to record. A game has no success "
                         "signal: every finished episode is kept, and this counts them.")
    flags.DEFINE_string("output_dir", None, "New dataset directory "
                        "(default runs/demos/<env>_<successes_needed>_demos_<timestamp>).")
    flags.DEFINE_integer("seed", 0, "Seeds the env's resets (cube placements, reach targets) and the expert's noise.")
    flags.DEFINE_float("noise", 0.0, "Std of Gaussian noise on the scripted expert's motion (action units).")
    flags.DEFINE_bool("render", False, "Show the MuJoCo viewer (franka_sim; needs a display).")
    flags.DEFINE_float("hz", None, f"franka_sim: env steps per second for human teleop and --render (default "
                       f"{DEFAULT_HZ:g}). Robot envs keep their own control rate.")
    flags.DEFINE_integer("max_attempts", None, "Give up after this many attempts (default: never).")
    flags.DEFINE_string("robot_ip", None, "Robot envs: the arm's (or franky-sim's) address.")
    flags.DEFINE_bool("realtime_ignore", False, "Robot envs: connect without a real-time kernel (simulators only).")
    flags.DEFINE_float("operator_yaw", 0.0, "Robot keyboard / spacemouse: the direction the operator faces, "
                       "radians from the base's x axis (0: standing behind the robot).")


def main(argv) -> None:
    del argv
    kind = env_kind(FLAGS.env)
    teleop = FLAGS.teleop or ("keyboard" if sys.stdin.isatty() or kind == "game" else "scripted")
    env_name = FLAGS.env.split(":")[-1]  # no "franka_env:" in the directory name
    output_dir = FLAGS.output_dir or os.path.join(
        "runs", "demos", f"{env_name}_{FLAGS.successes_needed}_demos_{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    try:
        env_kwargs = robot_env_kwargs(FLAGS.env, FLAGS.robot_ip, FLAGS.realtime_ignore)
        summary = record_demos(FLAGS.env, teleop, output_dir, FLAGS.successes_needed, FLAGS.seed, FLAGS.noise,
                               FLAGS.render, FLAGS.hz, FLAGS.max_attempts, env_kwargs, FLAGS.operator_yaw)
    except DemoError as error:
        sys.exit(f"record_demo: {error}")
    if not summary.successes:
        sys.exit(f"record_demo: no {_kept(kind)} episode in {summary.attempts} attempts; nothing written")
    print(f"Saved the {summary.successes} {_kept(kind)} of {summary.attempts} attempts ({summary.transitions} "
          f"transitions, teleop {teleop}) to {output_dir}\n"
          f"Train with them: pass --preload_rlds_path={output_dir} to the learner, or load them yourself with\n"
          f"  serl_launcher.data.rlds.episodes_to_transitions(read_rlds_dataset({output_dir!r}))")
    if summary.successes < FLAGS.successes_needed and not summary.stopped_by_operator:
        sys.exit(f"record_demo: only {summary.successes} of the {FLAGS.successes_needed} {_kept(kind)} episodes needed "
                 f"in {summary.attempts} attempts (--max_attempts)")


if __name__ == "__main__":
    define_flags()
    app.run(main)
