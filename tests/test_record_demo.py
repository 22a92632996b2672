"""examples/record_demo.py: scripted recording to RLDS, the shipped demos/ dataset, the CLI's guards
and the teleop mappings (the terminal and the SpaceMouse themselves are not exercised)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from franka_sim.pick_cube import SUCCESS_LIFT
from serl_launcher.data.rlds import episodes_to_transitions, read_rlds_dataset
from tests.helpers import import_example

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "record_demo.py"
SHIPPED = ROOT / "demos" / "pick_cube_20_scripted"
STATE_LEAVES = {"state/block_offset": (3,), "state/block_pos": (3,), "state/panda/gripper_pos": (1,),
                "state/panda/tcp_pos": (3,), "state/panda/tcp_vel": (3,)}


rd = import_example("record_demo")
teleop = import_example("record_demo_teleop")
DICT_SPACE = gym.make("PandaPickCube-v0").observation_space  # what FlattenObservation flattens


def _unflatten(flat):
    return gym.spaces.unflatten(DICT_SPACE, flat)["state"]


def _check_successful_state_episode(episode):
    """A successful PandaPickCube-v0 episode in the final-observation layout, with flat observations."""
    obs, n = episode["observation"], len(episode["is_first"])
    assert obs.shape == (n, 13) and obs.dtype == np.float32
    assert episode["action"].shape == (n, 4) and np.all(np.abs(episode["action"]) <= 1.0)
    assert episode["is_terminal"][-1] and episode["is_terminal"].sum() == 1
    assert np.all(episode["discount"][:-2] == 1.0) and episode["discount"][-2] == 0.0  # the success step's mask
    first, last = _unflatten(obs[0]), _unflatten(obs[-1])
    lift = last["block_pos"][2] - first["block_pos"][2]  # the cube rests where it was at reset
    assert lift >= SUCCESS_LIFT - 1e-6
    assert np.linalg.norm(last["block_pos"] - last["panda/tcp_pos"]) < 0.03  # still in the gripper
    assert episode["reward"][-2] > -0.31  # the success step: 0.7 for the lift, most of 0.3 for closeness
    assert episode["reward"][-1] == 0.0  # the final-observation step carries no reward


def test_scripted_recording_round_trip(tmp_path):
    out = tmp_path / "demos"
    summary = rd.record_demos("PandaPickCube-v0", "scripted", str(out), successes_needed=3, seed=0, noise=0.2)
    episodes = list(read_rlds_dataset(str(out)))
    assert len(episodes) == summary.successes == 3
    for episode in episodes:
        _check_successful_state_episode(episode)
        metadata = episode["episode_metadata"]
        assert metadata["env_id"] == b"PandaPickCube-v0" and metadata["teleop"] == b"scripted noise_std=0.2"
    assert [e["episode_metadata"]["attempt"] for e in episodes] == [0, 1, 2]

    transitions = list(episodes_to_transitions(episodes))
    assert len(transitions) == summary.transitions == sum(len(e["is_first"]) - 1 for e in episodes)
    assert all(t["observations"].shape == t["next_observations"].shape == (13,) for t in transitions)
    assert sum(t["masks"] == 0 for t in transitions) == 3 and sum(t["dones"] for t in transitions) == 3

    assert json.loads((out / "dataset_info.json").read_text())["name"] == "panda_pick_cube_flat_state"


def test_observation_layout_matches_flatten_observation():
    """The layout stored with the demos must say where gymnasium's FlattenObservation puts each key."""
    env = rd.make_env("PandaPickCube-v0", render=False)
    layout = rd.observation_layout(env)
    assert layout.startswith("FlattenObservation float32 (13,)")
    sample = env.env.observation_space.sample()
    flat = gym.spaces.flatten(env.env.observation_space, sample)
    for path in STATE_LEAVES:
        start, stop = map(int, layout.split(f"{path}[")[1].split("]")[0].split(":"))
        np.testing.assert_array_equal(flat[start:stop], sample["state"][path.split("/", 1)[1]], err_msg=path)


def test_same_seed_same_demos_other_seed_other_demos(tmp_path):
    def record(name, seed):
        rd.record_demos("PandaPickCube-v0", "scripted", str(tmp_path / name), successes_needed=2, seed=seed,
                        noise=0.3)
        return [e["action"] for e in read_rlds_dataset(str(tmp_path / name))]

    first, again, other = record("a", 0), record("b", 0), record("c", 1)
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    assert not np.array_equal(first[0][:5], other[0][:5])


def test_failed_attempts_are_dropped(tmp_path):
    """Heavy noise makes the expert fail most attempts: only the successes reach the dataset."""
    out = tmp_path / "noisy"
    summary = rd.record_demos("PandaPickCube-v0", "scripted", str(out), successes_needed=6, seed=1, noise=1.0,
                              max_attempts=6)
    assert summary.attempts == 6 and 0 < summary.successes < summary.attempts
    episodes = list(read_rlds_dataset(str(out)))
    assert len(episodes) == summary.successes
    for episode in episodes:
        _check_successful_state_episode(episode)


class _GivesUp:
    """A teleop that abandons (or quits) every attempt before its first step."""

    def __init__(self, quit):
        self.quit = quit

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def reset(self):
        pass

    def act(self, obs):
        return teleop.Command(np.zeros(4, np.float32), end_episode=True, quit=self.quit)


@pytest.mark.parametrize("quit", [False, True])
def test_no_success_leaves_no_directory(tmp_path, monkeypatch, quit):
    monkeypatch.setattr(rd, "make_teleop", lambda *args: _GivesUp(quit))
    summary = rd.record_demos("PandaPickCube-v0", "keyboard", str(tmp_path / "none"), successes_needed=1,
                              hz=1000.0, max_attempts=2)
    assert summary == rd.Summary(successes=0, attempts=0 if quit else 2, transitions=0, stopped_by_operator=quit)
    assert not (tmp_path / "none").exists()


def test_vision_env_keeps_dict_observations(tmp_path):
    out = tmp_path / "vision"
    rd.record_demos("PandaPickCubeVision-v0", "scripted", str(out), successes_needed=1, seed=0)
    (episode,) = read_rlds_dataset(str(out))
    obs, n = episode["observation"], len(episode["is_first"])
    assert obs["images"]["front"].shape == obs["images"]["wrist"].shape == (n, 128, 128, 3)
    assert obs["images"]["front"].dtype == np.uint8
    state = obs["state"]["panda"]  # the env's "panda/tcp_pos" key, stored at the same path state/panda/tcp_pos
    assert state["tcp_pos"].shape == (n, 3) and state["gripper_pos"].shape == (n, 1)
    assert "block_pos" not in obs["state"]  # the expert's privileged cube position is not recorded
    assert episode["is_terminal"][-1]
    assert episode["episode_metadata"]["observation_layout"].startswith(b"dict")

    # The pixel learner loads them: nested "panda" -> "tcp_pos" joins back into the env's key.
    from serl_launcher.runtime.config import LearnerConfig
    from serl_launcher.runtime.learner import make_buffers
    from serl_launcher.utils.launcher import make_env

    env = make_env("PandaPickCubeVision-v0")
    _, demos = make_buffers(LearnerConfig(demos_path=str(out), demo_ratio=0.5, replay_buffer_capacity=100,
                                           demo_buffer_capacity=10), env.observation_space, env.action_space)
    assert len(demos) == n - 1
    batch = demos.sample(4)
    assert batch["observations"]["state"]["panda/tcp_pos"].shape == (4, 3)
    assert batch["next_observations"]["images"]["wrist"].shape == (4, 128, 128, 3)


def test_split_slash_keys():
    tree = {"state": {"panda/tcp_pos": 1, "panda/tcp_vel": 2, "block_pos": 3}, "images": {"front": 4}}
    assert rd.split_slash_keys(tree) == {
        "state": {"panda": {"tcp_pos": 1, "tcp_vel": 2}, "block_pos": 3}, "images": {"front": 4}}


def test_shipped_demos_plug_into_the_state_learners_replay_buffer():
    from serl_launcher.data.replay_buffer import ReplayBuffer
    from serl_launcher.utils.launcher import make_env

    episodes = list(read_rlds_dataset(str(SHIPPED)))
    assert len(episodes) == 20
    for episode in episodes:
        _check_successful_state_episode(episode)
        assert episode["episode_metadata"]["env_id"] == b"PandaPickCube-v0"
    starts = np.array([_unflatten(e["observation"][0])["block_pos"] for e in episodes])
    assert len(np.unique(starts.round(3), axis=0)) == 20  # twenty different cube placements

    env = make_env("PandaPickCube-v0")  # the learner's env
    buffer = ReplayBuffer(env.observation_space, env.action_space, capacity=2_000)
    count = 0
    for transition in episodes_to_transitions(episodes):
        assert transition["observations"].shape == (13,) and transition["actions"].shape == (4,)
        buffer.insert(transition)
        count += 1
    assert len(buffer) == count == sum(len(e["is_first"]) - 1 for e in episodes)


def test_demos_of_another_observation_layout_are_refused_by_name():
    from serl_launcher.runtime.config import LearnerConfig
    from serl_launcher.runtime.learner import make_buffers
    from serl_launcher.utils.launcher import make_env

    serl_env = make_env("PandaPickCube-v0", block_offset=False)  # SERL's 10 floats; the shipped demos hold 13
    with pytest.raises(ValueError, match=r"pick_cube_20_scripted do not fit .*\(760, 10\).*other env options"):
        make_buffers(LearnerConfig(demos_path=str(SHIPPED), demo_ratio=0.5, replay_buffer_capacity=100),
                     serl_env.observation_space, serl_env.action_space)


def _run_cli(*args, stdin=subprocess.DEVNULL):
    env = {**os.environ, "MUJOCO_GL": "egl"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], stdin=stdin, capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_defaults_to_scripted_without_a_terminal_and_says_how_to_use_the_demos(tmp_path):
    out = tmp_path / "cli"
    result = _run_cli("--successes_needed", "1", "--output_dir", str(out))
    assert result.returncode == 0, result.stderr
    assert f"--preload_rlds_path={out}" in result.stdout and "teleop scripted" in result.stdout
    assert len(list(read_rlds_dataset(str(out)))) == 1


def test_cli_refuses_an_existing_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = _run_cli("--teleop", "scripted", "--output_dir", str(tmp_path))
    assert result.returncode != 0
    assert "already exists" in result.stderr and "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["precious.txt"]


def test_cli_keyboard_without_a_terminal_is_a_clear_error(tmp_path):
    result = _run_cli("--teleop", "keyboard", "--output_dir", str(tmp_path / "kb"))
    assert result.returncode != 0 and "interactive terminal" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "kb").exists()


def test_spacemouse_without_pyspacemouse_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspacemouse", None)  # makes `import pyspacemouse` fail
    with pytest.raises(rd.DemoError, match="pip install pyspacemouse"):
        teleop.SpaceMouseTeleop()


@pytest.mark.parametrize(
    "keys, closed, action, end, quit",
    [
        ("", False, [0, 0, 0, -1], False, False),
        ("w", False, [1 / 3, 0, 0, -1], False, False),
        ("s", False, [-1 / 3, 0, 0, -1], False, False),
        ("a", False, [0, 1 / 3, 0, -1], False, False),
        ("d", False, [0, -1 / 3, 0, -1], False, False),
        ("r", True, [0, 0, 1 / 3, 1], False, False),
        ("f", True, [0, 0, -1 / 3, 1], False, False),
        ("wwwww", False, [1, 0, 0, -1], False, False),  # a held key repeats, clipped to the full step
        ("wsad", False, [0, 0, 0, -1], False, False),
        (" ", False, [0, 0, 0, 1], False, False),
        (" ", True, [0, 0, 0, -1], False, False),
        ("  ", True, [0, 0, 0, 1], False, False),
        ("\n", False, [0, 0, 0, -1], True, False),
        ("\r", True, [0, 0, 0, 1], True, False),
        ("q", False, [0, 0, 0, -1], False, True),
        ("\x1b[A\x1b[D", False, [0, 0, 0, -1], False, False),  # arrow keys are not a/d moves
    ],
)
def test_keys_to_command(keys, closed, action, end, quit):
    command = teleop.keys_to_command(keys, closed)
    np.testing.assert_allclose(command.action, action, atol=1e-7)
    assert command.action.dtype == np.float32
    assert (command.end_episode, command.quit) == (end, quit)


def test_key_presses_can_pick_the_cube():
    """A person's loop, reduced to rules: the key map's directions and 1 cm steps suffice to grasp."""
    env = rd.make_env("PandaPickCube-v0", render=False)
    obs, _ = env.reset(seed=3)
    closed = False
    for _ in range(100):
        state = _unflatten(obs)
        to_cube = state["block_pos"] - state["panda/tcp_pos"]
        if closed and state["panda/gripper_pos"][0] > 0.3:  # the fingers are on the cube
            keys = "rrr"
        else:
            hover = 0.05 if np.linalg.norm(to_cube[:2]) > 0.01 else 0.0
            target = to_cube + [0.0, 0.0, hover]
            keys = "".join((plus if n > 0 else minus) * abs(n) for (plus, minus), n in
                           zip(["ws", "ad", "rf"], np.clip(np.round(target / 0.01), -3, 3).astype(int)))
            keys += " " if np.linalg.norm(to_cube) < 0.01 else ""
        command = teleop.keys_to_command(keys, closed)
        closed = bool(command.action[3] > 0)
        obs, _, terminated, truncated, info = env.step(command.action)
        if terminated or truncated:
            break
    assert info["success"]


def test_spacemouse_to_action():
    np.testing.assert_allclose(teleop.spacemouse_to_action(0.0, 0.8, 0.0, False), [0.8, 0, 0, -1])  # away: +x
    np.testing.assert_allclose(teleop.spacemouse_to_action(0.5, 0.0, -0.3, True), [0, -0.5, -0.3, 1])  # right: -y
    np.testing.assert_allclose(teleop.spacemouse_to_action(0.05, -0.05, 0.02, False), [0, 0, 0, -1])  # dead zone
