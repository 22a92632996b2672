"""Tests of the franka_sim environments, robot model, controller and scripted expert."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported: headless rendering

import itertools
import subprocess
import sys

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import franka_sim
from franka_sim import PandaPickCubeEnv
from franka_sim.experts import PickCubeExpert
from franka_sim.pick_cube import CUBE_SAMPLING, SUCCESS_LIFT, WORKSPACE

# Franka's published modified-DH table of the Panda: (a, d, alpha) per joint, then the flange.
PANDA_DH = [
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -np.pi / 2),
    (0.0, 0.316, np.pi / 2),
    (0.0825, 0.0, np.pi / 2),
    (-0.0825, 0.384, -np.pi / 2),
    (0.0, 0.0, np.pi / 2),
    (0.088, 0.0, np.pi / 2),
    (0.0, 0.107, 0.0),
]


def dh_transform(a, d, alpha, theta):
    ca, sa, ct, st = np.cos(alpha), np.sin(alpha), np.cos(theta), np.sin(theta)
    return np.array([[ct, -st, 0, a], [st * ca, ct * ca, -sa, -d * sa], [st * sa, ct * sa, ca, d * ca], [0, 0, 0, 1]])


@pytest.fixture
def env():
    env = gym.make("PandaPickCube-v0")
    yield env
    env.close()


def rollout(env, seed, n_steps, action_seed=0):
    rng = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    traj = [obs]
    for _ in range(n_steps):
        obs, reward, *_ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        traj.append((obs, reward))
    return traj


def test_model_follows_panda_dh_kinematics():
    env = PandaPickCubeEnv()
    m, d = env.model, env.data
    hand = m.body("hand").id
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = rng.uniform(m.jnt_range[:7, 0], m.jnt_range[:7, 1])
        d.qpos[:7] = q
        mujoco.mj_kinematics(m, d)
        pose = np.eye(4)
        for i, (a, dd, alpha) in enumerate(PANDA_DH):
            pose = pose @ dh_transform(a, dd, alpha, q[i] if i < 7 else 0.0)
        np.testing.assert_allclose(d.xpos[hand], pose[:3, 3], atol=1e-9)
        rz = dh_transform(0, 0, 0, -np.pi / 4)[:3, :3]  # the hand is mounted at -45 deg on the flange
        np.testing.assert_allclose(d.xmat[hand].reshape(3, 3), pose[:3, :3] @ rz, atol=1e-6)
    np.testing.assert_allclose(m.jnt_range[3], [-3.0718, -0.0698])
    np.testing.assert_allclose(m.jnt_range[5], [-0.0175, 3.7525])


@pytest.mark.filterwarnings("ignore:.*infinity", "ignore:.*not having a spec")
@pytest.mark.parametrize("image_obs", [False, True])
def test_gymnasium_check_env(image_obs):
    env = PandaPickCubeEnv(render_mode="rgb_array", image_obs=image_obs)
    check_env(env)
    env.close()


def test_state_observation_layout_and_flat_variant(env):
    obs, info = env.reset(seed=0)
    assert env.spec.max_episode_steps == 100
    assert env.action_space == gym.spaces.Box(-1, 1, (4,), np.float32)
    shapes = {k: v.shape for k, v in obs["state"].items()}
    assert shapes == {"panda/tcp_pos": (3,), "panda/tcp_vel": (3,), "panda/gripper_pos": (1,), "block_pos": (3,),
                      "block_offset": (3,)}
    assert all(v.dtype == np.float32 for v in obs["state"].values())
    assert info == {"success": False, "grasp": False}
    flat = gym.wrappers.FlattenObservation(env)
    flat_obs, _ = flat.reset(seed=0)
    assert flat.observation_space.shape == (13,) and flat_obs.dtype == np.float32
    np.testing.assert_array_equal(np.sort(flat_obs), np.sort(np.concatenate(list(obs["state"].values()))))


def test_block_offset_observation_is_cube_minus_tcp_in_10_cm_units():
    env = gym.make("PandaPickCube-v0")
    obs, _ = env.reset(seed=3)
    for _ in range(20):
        state = obs["state"]
        np.testing.assert_allclose(state["block_offset"], (state["block_pos"] - state["panda/tcp_pos"]) / 0.1,
                                   atol=1e-6)
        assert state["block_offset"].dtype == np.float32
        obs, *_ = env.step(np.array([0.5, -0.3, -0.8, 1.0]))
    assert np.linalg.norm(obs["state"]["block_offset"]) > 0
    flat = gym.wrappers.FlattenObservation(env)
    assert flat.observation_space.shape == (13,) and flat.observation_space.contains(flat.reset(seed=3)[0])
    env.close()


def test_serl_observation_without_block_offset():
    env = gym.make("PandaPickCube-v0", block_offset=False)
    obs, _ = env.reset(seed=0)
    assert sorted(obs["state"]) == ["block_pos", "panda/gripper_pos", "panda/tcp_pos", "panda/tcp_vel"]
    assert gym.wrappers.FlattenObservation(env).observation_space.shape == (10,)
    assert "block_offset" not in gym.make("PandaPickCubeVision-v0").observation_space["state"].spaces


def test_same_seed_same_trajectory(env):
    other = gym.make("PandaPickCube-v0")
    first, second = rollout(env, seed=7, n_steps=40), rollout(other, seed=7, n_steps=40)
    for (obs_a, rew_a), (obs_b, rew_b) in zip(first[1:], second[1:]):
        for key in obs_a["state"]:
            np.testing.assert_array_equal(obs_a["state"][key], obs_b["state"][key])
        assert rew_a == rew_b
    different = rollout(other, seed=8, n_steps=0)
    assert not np.array_equal(first[0]["state"]["block_pos"], different[0]["state"]["block_pos"])
    other.close()


def test_reset_samples_cube_uniformly_in_region(env):
    cubes = np.array([env.reset(seed=s)[0]["state"]["block_pos"] for s in range(200)])
    assert np.all(cubes[:, :2] >= CUBE_SAMPLING[0]) and np.all(cubes[:, :2] <= CUBE_SAMPLING[1])
    np.testing.assert_allclose(cubes[:, 2], 0.02, atol=1e-6)  # resting on the table
    span = CUBE_SAMPLING[1] - CUBE_SAMPLING[0]
    np.testing.assert_allclose(cubes[:, :2].std(0), span / np.sqrt(12), rtol=0.2)  # uniform's std


def test_episode_is_truncated_after_100_steps(env):
    env.reset(seed=0)
    for step in range(1, 101):
        _, reward, terminated, truncated, info = env.step(np.zeros(4, np.float32))
        assert not terminated and not info["success"]
        assert -1.0 <= reward <= 0.0
        assert truncated == (step == 100)


REWARDS = {
    "shaped": lambda d, grasp, lifted: 0.3 * np.exp(-20 * d) + 0.7 * lifted - 1,
    "staged": lambda d, grasp, lifted: 0.2 * (1 - np.tanh(5 * d)) + 0.1 * grasp + 0.7 * lifted - 1,
}


@pytest.mark.parametrize("reward_type", sorted(REWARDS))
def test_reward_formula_and_success_termination(reward_type):
    env = gym.make("PandaPickCube-v0", reward_type=reward_type)
    expert = PickCubeExpert()
    obs, _ = env.reset(seed=3)
    rest_z = obs["state"]["block_pos"][2]
    grasped = False
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        tcp, cube = obs["state"]["panda/tcp_pos"], obs["state"]["block_pos"]
        lifted = np.clip((cube[2] - rest_z) / SUCCESS_LIFT, 0, 1)
        expected = REWARDS[reward_type](np.linalg.norm(cube - tcp), info["grasp"], lifted)
        assert reward == pytest.approx(expected, abs=1e-5)
        assert info["success"] == terminated == (cube[2] - rest_z >= SUCCESS_LIFT - 1e-6)
        grasped |= info["grasp"]
        if terminated or truncated:
            break
    env.close()
    assert terminated and grasped
    assert reward > -0.1  # near the maximum at success


def test_unknown_reward_type_is_refused():
    with pytest.raises(ValueError, match="reward_type"):
        PandaPickCubeEnv(reward_type="sparse")


def test_action_moves_tcp_in_commanded_direction(env):
    obs, _ = env.reset(seed=0)
    for axis in range(3):
        start = obs["state"]["panda/tcp_pos"].copy()
        action = np.zeros(4, np.float32)
        action[axis] = -0.5
        for _ in range(4):
            obs, *_ = env.step(action)
        moved = obs["state"]["panda/tcp_pos"] - start
        assert moved[axis] < -0.02  # 4 steps x 1.5 cm commanded
        assert np.abs(np.delete(moved, axis)).max() < 0.3 * abs(moved[axis])
    before = obs["state"]["panda/gripper_pos"][0]
    for _ in range(10):
        obs, *_ = env.step(np.array([0, 0, 0, 1], np.float32))
    assert before < 0.05 and obs["state"]["panda/gripper_pos"][0] > 0.95  # closes fully on air


def test_workspace_clip_holds(env):
    """Full-speed pushes towards every face and corner of the workspace box reach its boundary
    and stop there (within 5 mm: the arm brakes at its torque limits), fingertips above the table."""
    u = env.unwrapped
    directions = [np.eye(3)[i] * sign for i in range(3) for sign in (-1, 1)]
    directions += [np.array(corner, float) for corner in itertools.product((-1, 1), repeat=3)]
    for direction in directions:
        env.reset(seed=0)
        for _ in range(40):
            obs, *_ = env.step(np.r_[direction, -1].astype(np.float32))
            tcp = obs["state"]["panda/tcp_pos"]
            assert np.all(tcp >= WORKSPACE[0] - 0.005) and np.all(tcp <= WORKSPACE[1] + 0.005), (direction, tcp)
            fingers = [u.model.geom(f).id for f in ("left_finger", "right_finger")]
            assert u.data.geom_xpos[fingers, 2].min() - 0.027 > 0.0  # finger boxes are 2 x 0.027 m long
        face = np.where(direction > 0, WORKSPACE[1], WORKSPACE[0])
        pushed = direction != 0
        np.testing.assert_allclose(tcp[pushed], face[pushed], atol=0.01)  # it did get there


def test_scripted_expert_success_rate():
    env = gym.make("PandaPickCube-v0")
    expert = PickCubeExpert()
    successes = 0
    for seed in range(50):
        obs, _ = env.reset(seed=seed)
        for _ in range(100):
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            if terminated or truncated:
                break
        successes += info["success"]
    env.close()
    assert successes >= 48  # >= 95%


def test_expert_accepts_flat_observations_and_is_deterministic(env):
    flat_env = gym.wrappers.FlattenObservation(gym.make("PandaPickCube-v0"))
    expert = PickCubeExpert(flat_env.unwrapped.observation_space)
    obs, _ = env.reset(seed=5)
    flat_obs, _ = flat_env.reset(seed=5)
    for _ in range(30):
        action = expert.act(obs)
        np.testing.assert_array_equal(action, expert.act(flat_obs))
        np.testing.assert_array_equal(action, expert.act(obs))
        assert action.dtype == np.float32 and np.all(np.abs(action) <= 1)
        obs, *_ = env.step(action)
        flat_obs, *_ = flat_env.step(action)
    noisy_a, noisy_b = PickCubeExpert(noise_std=0.3, seed=1), PickCubeExpert(noise_std=0.3, seed=1)
    with pytest.raises(ValueError, match="observation_space"):
        PickCubeExpert().act(flat_obs)
    np.testing.assert_array_equal(noisy_a.act(obs), noisy_b.act(obs))
    assert not np.array_equal(noisy_a.act(obs), expert.act(obs))
    flat_env.close()


def test_vision_env_images():
    env = gym.make("PandaPickCubeVision-v0")
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state", "images"}
    assert set(obs["state"]) == {"panda/tcp_pos", "panda/tcp_vel", "panda/gripper_pos"}
    for image in obs["images"].values():
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert image.std() > 10  # a scene, not a blank frame
    assert not np.array_equal(obs["images"]["front"], obs["images"]["wrist"])
    moved = obs
    for _ in range(8):
        moved, *_ = env.step(np.array([0.5, 0.5, -1, -1], np.float32))
    for cam in ("front", "wrist"):
        diff = np.abs(moved["images"][cam].astype(int) - obs["images"][cam].astype(int))
        assert (diff.max(-1) > 30).mean() > 0.01, cam
    env.close()


def test_expert_solves_vision_env_with_privileged_cube_position():
    env = gym.make("PandaPickCubeVision-v0")
    expert = PickCubeExpert()
    for seed in range(2):
        obs, _ = env.reset(seed=seed)
        for _ in range(100):
            state = {"state": {**obs["state"], "block_pos": env.unwrapped.block_pos}}
            obs, _, terminated, truncated, info = env.step(expert.act(state))
            if terminated or truncated:
                break
        assert info["success"]
    env.close()


def test_rgb_render_size_and_options():
    env = gym.make("PandaPickCube-v0", render_mode="rgb_array", render_size=96, render_camera="front")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8
    env.close()
    overview = gym.make("PandaPickCube-v0", render_mode="rgb_array")  # videos: the whole arm, 480 x 480
    overview.reset(seed=0)
    assert overview.render().shape == (480, 480, 3)
    overview.close()
    with pytest.raises(ValueError, match="not a camera"):
        gym.make("PandaPickCube-v0", render_mode="rgb_array", render_camera="nope")


def test_headless_rendering_picks_egl_by_itself():
    """MUJOCO_GL unset on a machine without a display: importing franka_sim selects EGL."""
    code = ("import gymnasium as gym, franka_sim, os\n"
            "env = gym.make('PandaPickCube-v0', render_mode='rgb_array', render_size=32)\n"
            "env.reset(seed=0)\n"
            "print(os.environ['MUJOCO_GL'], env.render().shape)\n"
            "env.close()\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, timeout=120)
    assert "egl (32, 32, 3)" in result.stdout, result.stderr


def test_state_env_needs_no_opengl():
    """With no usable GL backend (GLFW and no display), the state env still builds and steps; only
    an actual render request fails."""
    code = (
        "import numpy as np, gymnasium as gym, franka_sim\n"
        "env = gym.make('PandaPickCube-v0', render_mode='rgb_array')\n"
        "env.reset(seed=0)\n"
        "for _ in range(5): env.step(np.zeros(4, np.float32))\n"
        "gym.make('PandaPickCubeVision-v0')\n"
        "print('STEPPED')\n"
        "env.render()\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    clean["MUJOCO_GL"] = "glfw"
    result = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, timeout=120)
    assert "STEPPED" in result.stdout, result.stderr
    assert result.returncode != 0  # rendering itself does need GL


def test_control_and_physics_dt():
    env = PandaPickCubeEnv(control_dt=0.04, physics_dt=0.004)
    env.reset(seed=0)
    env.step(np.zeros(4))
    assert env.data.time == pytest.approx(0.04)
    assert env.model.opt.timestep == 0.004 and env.metadata["render_fps"] == 25


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"control_dt": 0.015}, "whole multiple"),
        ({"physics_dt": 0.0}, "positive"),
        ({"render_mode": "video"}, "render_mode"),
        ({"image_size": 0}, "image size"),
        ({"action_scale": -1.0}, "action_scale"),
        ({"image_obs": True, "block_offset": True}, "privileged"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PandaPickCubeEnv(**kwargs)


def test_bad_actions_and_observations(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="4 finite floats"):
        env.unwrapped.step(np.zeros(3))
    with pytest.raises(ValueError, match="4 finite floats"):
        env.unwrapped.step(np.array([0, np.nan, 0, 0]))
    expert = PickCubeExpert(env.unwrapped.observation_space)
    with pytest.raises(ValueError, match="shape"):
        expert.act(np.zeros(7))
    with pytest.raises(ValueError, match="block_pos"):
        expert.act({"state": {"panda/tcp_pos": np.zeros(3), "panda/gripper_pos": np.zeros(1)}})


@pytest.mark.skipif(bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")), reason="a display exists")
def test_human_render_without_display_is_a_clear_error():
    env = gym.make("PandaPickCube-v0", render_mode="human")
    with pytest.raises(RuntimeError, match="needs a display"):
        env.reset(seed=0)


def test_package_registers_both_envs():
    registered = set(gym.registry)
    assert {"PandaPickCube-v0", "PandaPickCubeVision-v0"} <= registered
    assert franka_sim.PandaPickCubeEnv is PandaPickCubeEnv
