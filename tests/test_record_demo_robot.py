"""examples/record_demo.py on the robot env (franka_env:FrankaReach-v0) against franky-sim: the
scripted reach expert's demos round-trip through RLDS into the robot learner's demo buffer, a
SpaceMouse (a stand-in device: there is no real one here) drives the recording loop through the
intervention mapping, Ctrl-C stops the arm, and the robot flags' guards."""
import os
import signal
import sys

import gymnasium as gym
import numpy as np
import pytest

import franka_env
from franka_env import ControlConfig, FrankaEnv
from franka_env.envs import reach_spaces
from franka_env.intervention import TeleopReading
from serl_launcher.data.rlds import read_rlds_dataset
from tests.helpers import import_example
from tests.test_franka_env_sim import FAST_RESET, HOME_TCP

rd = import_example("record_demo")
teleop = import_example("record_demo_teleop")

pytestmark = pytest.mark.timeout(120, method="thread")  # libfranka calls cannot be interrupted by signals

REACH = "franka_env:FrankaReach-v0"
HOME = HOME_TCP[:3, 3]
REACH_DIM = 26  # FrankaReach-v0's state dict, flattened


def _robot(sim, **task):
    """env_kwargs for record_demos: franky-sim, fast resets, and the reach task's arguments."""
    return {"robot_ip": sim.ip, "realtime_ignore": True, "control": ControlConfig(reset_dynamics_factor=FAST_RESET),
            **task}


def _state(flat_observations):
    """FrankaEnv's dict states of stored (flattened) observations."""
    space = reach_spaces()[0]
    return [gym.spaces.unflatten(space, obs)["state"] for obs in flat_observations]


def test_scripted_reach_demos_load_into_the_robot_learners_demo_buffer(franky_sim, tmp_path):
    from serl_launcher.runtime.config import LearnerConfig
    from serl_launcher.runtime.learner import make_buffers
    from serl_launcher.utils.launcher import agent_spaces

    out = tmp_path / "reach"
    targets = {"target_low": HOME + [-0.04, -0.04, -0.04], "target_high": HOME + [0.04, 0.04, 0.0]}
    summary = rd.record_demos(REACH, "scripted", str(out), successes_needed=2, seed=0,
                              env_kwargs=_robot(franky_sim, **targets))
    assert summary.successes == summary.attempts == 2 and not summary.stopped_by_operator

    episodes = list(read_rlds_dataset(str(out)))
    assert len(episodes) == 2
    for episode in episodes:
        obs, n = episode["observation"], len(episode["is_first"])
        assert obs.shape == (n, REACH_DIM) and obs.dtype == np.float32
        assert episode["action"].shape == (n, 4) and np.all(np.abs(episode["action"]) <= 1.0)
        assert np.all(episode["action"][:-1, 3] == -1.0)  # the expert keeps the gripper open
        assert episode["is_terminal"][-1] and episode["is_terminal"].sum() == 1
        states = _state(obs)
        target = states[0]["target_pos"]
        assert all(np.array_equal(s["target_pos"], target) for s in states)
        distances = [np.linalg.norm(s["tcp_pose"][:3] - target) for s in states]
        assert distances[-1] < 0.02 < distances[0]  # reached (ReachTask's success distance) from afar
        np.testing.assert_allclose(episode["reward"][:-1], -np.array(distances[1:]), atol=1e-5)
        metadata = episode["episode_metadata"]
        assert metadata["env_id"] == REACH.encode() and metadata["teleop"] == b"scripted noise_std=0.0"
        assert metadata["observation_layout"].startswith(b"FlattenObservation float32 (26,)")
        assert b"state/target_pos[" in metadata["observation_layout"]
    first_targets = [_state(e["observation"][:1])[0]["target_pos"] for e in episodes]
    assert not np.allclose(*first_targets)  # the seeded resets sampled two targets

    # What examples/async_sac_franka's learner does with --preload_rlds_path DIR --demo_ratio 0.5.
    config = LearnerConfig(demos_path=str(out), demo_ratio=0.5, replay_buffer_capacity=100, demo_buffer_capacity=10)
    _, demos = make_buffers(config, *agent_spaces(*reach_spaces()))
    assert len(demos) == summary.transitions == sum(len(e["is_first"]) - 1 for e in episodes)
    batch = demos.sample(4)
    assert batch["observations"].shape == batch["next_observations"].shape == (4, REACH_DIM)
    assert batch["actions"].shape == (4, 4)


class Puck:
    """Stands in for franka_env's SpaceMouse: at rest for `idle` reads, then pushed away from the
    operator; `interrupt_at` sends the process a SIGINT (Ctrl-C) from that read on."""

    def __init__(self, idle=0, interrupt_at=None):
        self.idle, self.interrupt_at, self.reads, self.closed = idle, interrupt_at, 0, False

    def read(self):
        self.reads += 1
        if self.interrupt_at is not None and self.reads >= self.interrupt_at:
            signal.raise_signal(signal.SIGINT)
        away = 0.0 if self.reads <= self.idle else 1.0
        return TeleopReading(np.array([0.0, away, 0.0, 0.0, 0.0, 0.0]), (False, False))

    def close(self):
        self.closed = True


def test_a_spacemouse_drives_the_recording_loop_through_the_intervention_mapping(franky_sim, tmp_path, monkeypatch):
    puck = Puck(idle=3)
    monkeypatch.setattr(franka_env, "SpaceMouse", lambda: puck)
    out = tmp_path / "spacemouse"
    target = HOME + [0.04, 0.0, 0.0]  # straight ahead of an operator behind the robot
    summary = rd.record_demos(REACH, "spacemouse", str(out), successes_needed=1, seed=0,
                              env_kwargs=_robot(franky_sim, target_low=target, target_high=target))
    assert summary.successes == summary.attempts == 1 and puck.closed

    (episode,) = read_rlds_dataset(str(out))
    actions = episode["action"][:-1]
    assert len(actions) == puck.reads
    np.testing.assert_array_equal(actions[:3], np.zeros((3, 4)))  # at rest: hold still, gripper as it is
    np.testing.assert_allclose(actions[3:], np.tile([1.0, 0.0, 0.0, 0.0], (len(actions) - 3, 1)), atol=1e-6)  # +x
    assert episode["episode_metadata"]["teleop"] == b"spacemouse"
    final = _state(episode["observation"][-1:])[0]["tcp_pose"][:3]
    assert np.linalg.norm(final - target) < 0.02


def test_ctrl_c_stops_the_arm_then_ends_the_session(franky_sim, tmp_path, monkeypatch):
    stops = []
    original_stop = FrankaEnv.stop
    monkeypatch.setattr(FrankaEnv, "stop", lambda env: (stops.append(env), original_stop(env)))
    puck = Puck(interrupt_at=5)
    monkeypatch.setattr(franka_env, "SpaceMouse", lambda: puck)
    out = tmp_path / "interrupted"
    handler = signal.getsignal(signal.SIGINT)
    summary = rd.record_demos(REACH, "spacemouse", str(out), successes_needed=1, env_kwargs=_robot(franky_sim))
    assert summary == rd.Summary(successes=0, attempts=0, transitions=0, stopped_by_operator=True)
    assert len(stops) == 1 and puck.closed  # the signal handler stopped the arm before interrupting
    assert not out.exists()
    assert signal.getsignal(signal.SIGINT) is handler  # restored


@pytest.mark.parametrize("env_id, robot_ip, realtime_ignore, match", [
    ("PandaPickCube-v0", "172.16.0.2", False, "--robot_ip and --realtime_ignore are for franka_env envs"),
    ("PandaPickCube-v0", None, True, "--robot_ip and --realtime_ignore are for franka_env envs"),
    (REACH, None, True, "give its address with --robot_ip"),
])
def test_robot_flags_go_with_robot_envs_only(env_id, robot_ip, realtime_ignore, match):
    with pytest.raises(rd.DemoError, match=match):
        rd.robot_env_kwargs(env_id, robot_ip, realtime_ignore)


def test_robot_flag_values_reach_the_env():
    assert rd.robot_env_kwargs(REACH, "172.16.0.2", True) == {"robot_ip": "172.16.0.2", "realtime_ignore": True}
    assert rd.robot_env_kwargs("PandaPickCube-v0", None, False) == {}


@pytest.mark.parametrize("kwargs, match", [
    ({"hz": 10.0}, "own control rate"),
    ({"render": True}, "no viewer"),
    ({"teleop": "scripted", "operator_yaw": 1.0}, "--operator_yaw only applies"),
    ({"env_id": "franka_env:NoSuchTask-v0"}, "a franka_env id such as"),
    ({"env_id": "Pendulum-v1"}, "neither one of .* nor a franka_env robot env"),
    ({"env_kwargs": {}}, "robot_ip"),  # the env's own TypeError, without a traceback
    ({"env_kwargs": {"robot_ip": "127.0.0.254", "realtime_ignore": True}}, "127.0.0.254"),  # no arm there
])
@pytest.mark.filterwarnings("ignore:.*precision lowered")  # Pendulum-v1's own space
def test_clear_errors_before_recording_on_the_robot(tmp_path, kwargs, match):
    args = {"env_id": REACH, "teleop": "spacemouse", "output_dir": str(tmp_path / "none"), "successes_needed": 1,
            **kwargs}
    with pytest.raises(rd.DemoError, match=match):
        rd.record_demos(**args)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("name, match", [("keyboard", "needs a terminal"),
                                         ("spacemouse", "SpaceMouse not found|SpaceMouse needs pyspacemouse")])
def test_robot_devices_fail_clearly_without_a_terminal_or_a_device(name, match, monkeypatch):
    with open(os.devnull) as null, pytest.raises(rd.DemoError, match=f"--teleop {name}: .*({match})"):
        monkeypatch.setattr(sys, "stdin", null)  # as from a service, or `< /dev/null`
        teleop._open_robot_device(name)


@pytest.mark.parametrize("env_id, flat, name", [
    ("PandaPickCube-v0", True, "panda_pick_cube_flat_state"),
    ("PandaPickCubeVision-v0", False, "panda_pick_cube_vision"),
    (REACH, True, "franka_reach_flat_state"),
    ("franka_env:FrankaPegInsertion-v0", True, "franka_peg_insertion_flat_state"),
])
def test_dataset_names_follow_the_env_id(env_id, flat, name):
    assert rd.dataset_name(env_id, flat) == name
