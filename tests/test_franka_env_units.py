"""franka_env's logic without a robot: rate keeping, safety clipping, gripper hysteresis and its
worker threads, tasks and their scripted experts, poses, cameras, teleoperation devices and the
intervention wrapper, signal handling. The same code against franky-sim: tests/test_franka_env_sim.py."""
import itertools
import os
import signal
import sys
import threading
import time

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from franka_env import arm as arm_module
from franka_env.arm import ArmState
from franka_env.cameras import (BackgroundCapture, Camera, CameraError, CameraRig, Frame, MujocoCamera,
                                RealSenseCamera, StaleFrameError, fit_image)
from franka_env.env import ControlConfig, FrankaEnv
from franka_env.experts import ReachExpert, scripted_expert
from franka_env.gripper import GripperController, GripperError, GripperHysteresis
from franka_env.intervention import KeyboardTeleop, SpaceMouse, SpaceMouseIntervention, TeleopReading
from franka_env.poses import as_pose, rotation_error, yaw_rotated
from franka_env.rate import RateKeeper
from franka_env.safety import SafetyConfig, clip_angular_velocity, clip_linear_velocity, safe_speed
from franka_env.shutdown import stop_on_signals
from franka_env.tasks import PoseThresholdTask, ReachTask

DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # xyzw: gripper pointing down


def arm_state(position, quat=DOWN):
    return ArmState(np.concatenate([position, quat]), np.zeros(6), np.zeros(6), np.zeros(7), 0.0)


# -- rate keeping -------------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_keeper_sleeps_to_each_deadline_and_counts_missed_ones():
    clock = FakeClock()
    rate = RateKeeper(0.02, clock=clock, sleep=clock.sleep)
    rate.start()
    clock.now += 0.005  # the loop's own work
    assert rate.wait() == pytest.approx(0.02) and clock.sleeps[-1] == pytest.approx(0.015)
    assert rate.last_slack == pytest.approx(0.015)
    clock.now += 0.03  # a slow policy: the deadline has passed
    assert rate.wait() == pytest.approx(0.03) and rate.missed_deadlines == 1
    assert len(clock.sleeps) == 1  # no sleep after a miss
    clock.now += 0.001  # the schedule restarted at the miss, not catching up with short periods
    assert rate.wait() == pytest.approx(0.02) and clock.sleeps[-1] == pytest.approx(0.019)
    stats = rate.stats()
    assert stats["ticks"] == 3 and stats["missed_deadlines"] == 1
    assert stats["period_ms_p50"] == pytest.approx(20.0) and stats["period_ms_max"] == pytest.approx(30.0)
    assert stats["slack_ms_p50"] == pytest.approx(15.0) and stats["slack_ms_p1"] < -9.0  # the miss: 10 ms late
    rate.start()  # a new episode keeps the counters
    assert rate.stats()["missed_deadlines"] == 1


def test_rate_keeper_with_the_real_clock_and_its_errors():
    rate = RateKeeper(0.01)
    with pytest.raises(RuntimeError, match="start"):
        rate.wait()
    rate.start()
    begin = time.perf_counter()
    for _ in range(20):
        rate.wait()
    assert 0.19 < time.perf_counter() - begin < 0.3
    with pytest.raises(ValueError, match="positive"):
        RateKeeper(0.0)


# -- safety ---------------------------------------------------------------------------------------
def test_safe_speed_brakes_exactly_at_the_limit():
    horizon, deceleration = 0.1, 0.65
    for room in (0.0, 0.001, 0.01, 0.2):
        v = safe_speed(np.array(room), horizon, deceleration)
        assert v * horizon + v**2 / (2 * deceleration) == pytest.approx(room, abs=1e-12)
    assert safe_speed(np.array(-0.01), horizon, deceleration) == 0.0


def test_linear_clip_keeps_a_point_mass_in_the_box():
    """A point that moves at the clipped command for `horizon`, then brakes, never leaves the box;
    beyond a face it may only move back."""
    low, high, horizon, decel = np.array([0.3, -0.2, 0.1]), np.array([0.6, 0.2, 0.5]), 0.1, 0.65
    rng = np.random.default_rng(0)
    for _ in range(2000):
        position = rng.uniform(low, high)
        velocity = clip_linear_velocity(position, rng.uniform(-0.2, 0.2, 3), low, high, horizon, decel)
        stop = position + velocity * horizon + np.sign(velocity) * velocity**2 / (2 * decel)
        assert np.all(stop >= low - 1e-12) and np.all(stop <= high + 1e-12)
    outside = np.array([0.7, 0.0, 0.05])  # beyond +x and -z
    v = clip_linear_velocity(outside, np.array([0.1, 0.1, -0.1]), low, high, horizon, decel)
    assert v[0] == 0 and v[2] == 0 and v[1] == pytest.approx(0.1)
    v = clip_linear_velocity(outside, np.array([-0.1, 0.0, 0.1]), low, high, horizon, decel)
    np.testing.assert_allclose(v, [-0.1, 0.0, 0.1])


def test_angular_clip_bounds_rotation_about_each_reference_axis():
    limit, horizon, decel = np.array([0.3, 0.3, 0.6]), 0.1, 1.25
    reference = Rotation.from_quat(DOWN)
    for axis, sign in itertools.product(range(3), (-1, 1)):  # one axis at a time: exact
        rotation = reference
        for _ in range(400):
            omega = reference.apply(np.eye(3)[axis] * sign * 0.5)  # push about a reference axis, in the base frame
            omega = clip_angular_velocity(rotation.as_quat(), DOWN, omega, limit, horizon, decel)
            rotation = Rotation.from_rotvec(omega * 0.02) * rotation
            error = rotation_error(rotation.as_quat(), DOWN)
            assert abs(error[axis]) <= limit[axis] + 1e-9
        assert abs(error[axis]) > limit[axis] - 0.01  # it got there
    beyond = (reference * Rotation.from_rotvec([0.4, 0, 0])).as_quat()  # 0.1 rad past the x limit
    outward, inward = reference.apply([0.2, 0, 0]), reference.apply([-0.2, 0, 0])
    np.testing.assert_allclose(clip_angular_velocity(beyond, DOWN, outward, limit, horizon, decel), 0, atol=1e-12)
    np.testing.assert_allclose(clip_angular_velocity(beyond, DOWN, inward, limit, horizon, decel), inward)


@pytest.mark.parametrize("kwargs, match", [
    ({"workspace_low": (0.5, 0, 0), "workspace_high": (0.4, 1, 1)}, "workspace_low"),
    ({"rotation_limit": (0.3, 0.3)}, "rotation_limit"),
    ({"rotation_limit": (0.3, 0.3, 4.0)}, "rotation_limit"),
    ({"max_force": 0}, "max_force"),
    ({"collision_torque": -1}, "collision_torque"),
])
def test_safety_config_rejects_bad_limits(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SafetyConfig(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"control_dt": 0}, "control_dt"),
    ({"action_scale": -0.1}, "action_scale"),
    ({"rotation_scale": 0.0}, "rotation_scale"),
    ({"command_timeout": 0.01}, "command_timeout"),
    ({"dynamics_factor": 1.5}, "dynamics_factor"),
    ({"home_joints": (0.0,) * 6}, "home_joints"),
    ({"random_reset_xy": -0.1}, "random_reset"),
])
def test_control_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ControlConfig(**kwargs)


# -- gripper --------------------------------------------------------------------------------------
def test_gripper_hysteresis_changes_state_only_beyond_the_threshold():
    h = GripperHysteresis(0.5)
    assert [h.update(a) for a in (0.0, 0.4, 0.6, 0.0, -0.4, 0.3, -0.6, 0.2)] == [
        False, False, True, True, True, True, False, False]
    with pytest.raises(ValueError):
        GripperHysteresis(1.0)


class FakeGripper:
    """franky.Gripper's blocking API: commands take `duration` seconds."""

    def __init__(self, duration=0.0, max_width=0.08, fail=None):
        self.width, self.max_width, self.duration, self.fail = max_width, max_width, duration, fail
        self.commands = []

    def grasp(self, width, speed, force, epsilon_inner, epsilon_outer):
        self._run("grasp", 0.0)

    def open(self, speed):
        self._run("open", self.max_width)

    def _run(self, name, width):
        self.commands.append(name)
        if self.fail:
            raise self.fail
        time.sleep(self.duration)
        self.width = width

    @property
    def state(self):
        time.sleep(0.001)
        return type("GripperState", (), {"width": self.width, "max_width": self.max_width})()


def test_gripper_controller_never_blocks_and_applies_the_latest_wish():
    fake = FakeGripper(duration=0.3)
    controller = GripperController(fake, read_period=0.005)
    try:
        time.sleep(0.05)
        assert fake.commands == []  # nothing moves until asked
        start = time.perf_counter()
        controller.set_closed(True)
        controller.set_closed(False)
        controller.set_closed(True)
        assert time.perf_counter() - start < 0.01
        controller.wait_until_applied(timeout=2.0)
        assert fake.commands[0] == "grasp" and fake.commands[-1] == "grasp" and len(fake.commands) <= 3
        assert controller.closure() == pytest.approx(1.0)  # a width read after the grasp ended
        controller.set_closed(False)
        with pytest.raises(GripperError, match="did not reach its open state"):
            controller.wait_until_applied(timeout=0.05)
        controller.wait_until_applied(timeout=2.0)
        assert controller.closure() == pytest.approx(0.0)
    finally:
        controller.close()


def test_gripper_controller_reports_failures():
    controller = GripperController(FakeGripper(fail=RuntimeError("finger blocked")), read_period=0.005)
    try:
        controller.set_closed(True)
        with pytest.raises(GripperError, match="finger blocked"):
            controller.wait_until_applied(timeout=2.0)
        with pytest.raises(GripperError, match="finger blocked"):
            controller.closure()
    finally:
        controller.close()
    unhomed = GripperController(FakeGripper(max_width=0.0), read_period=0.005)
    try:
        time.sleep(0.05)
        with pytest.raises(GripperError, match="home it"):
            unhomed.closure()
    finally:
        unhomed.close()


# -- poses and tasks ------------------------------------------------------------------------------
def test_pose_helpers():
    np.testing.assert_allclose(as_pose([1, 2, 3, 0, 0, 0, 1.02])[3:], [0, 0, 0, 1])  # rounding in a measured pose
    for bad in ([0] * 6, [0, 0, 0, 0, 0, 0, 2], [np.nan, 0, 0, 1, 0, 0, 0]):
        with pytest.raises(ValueError):
            as_pose(bad)
    turned = (Rotation.from_quat(DOWN) * Rotation.from_rotvec([0.2, 0, 0])).as_quat()  # about the reference's own x
    np.testing.assert_allclose(rotation_error(turned, DOWN), [0.2, 0, 0], atol=1e-12)
    yawed = yaw_rotated(DOWN, 0.3)  # about base z, which is the downward reference's -z
    np.testing.assert_allclose(rotation_error(yawed, DOWN), [0, 0, -0.3], atol=1e-12)


def test_reach_task_samples_targets_and_scores_distance():
    task = ReachTask(target_low=(0.4, -0.1, 0.2), target_high=(0.5, 0.1, 0.3), success_distance=0.02)
    home = np.r_[0.45, 0.0, 0.4, DOWN]
    targets = []
    for seed in range(50):
        assert task.reset(np.random.default_rng(seed), home) is home
        targets.append(task.observe(arm_state(home[:3]))["target_pos"])
    targets = np.array(targets)
    assert targets.dtype == np.float32 and np.all(targets >= [0.4, -0.1, 0.2]) and np.all(targets <= [0.5, 0.1, 0.3])
    assert len(np.unique(targets[:, 0])) == 50
    task.reset(np.random.default_rng(3), home)
    first = task.observe(arm_state(home[:3]))["target_pos"]
    task.reset(np.random.default_rng(3), home)
    np.testing.assert_array_equal(first, task.observe(arm_state(home[:3]))["target_pos"])
    offset = task.observe(arm_state(task.target + [0.03, -0.01, 0.0]))["target_offset"]
    assert offset.dtype == np.float32
    np.testing.assert_allclose(offset, [-0.3, 0.1, 0.0], atol=1e-6)  # towards the target, in units of 10 cm
    reward, success = task.evaluate(arm_state(task.target + [0.03, 0.0, 0.04]))
    assert reward == pytest.approx(-0.05) and not success
    reward, success = task.evaluate(arm_state(task.target + [0.0, 0.015, 0.0]))
    assert reward == pytest.approx(-0.015) and success
    with pytest.raises(ValueError):
        ReachTask(target_low=(0.5, 0, 0), target_high=(0.4, 0, 0))


def test_pose_threshold_task_is_serls_binary_pose_reward():
    target = np.r_[0.5, 0.1, 0.2, DOWN]
    task = PoseThresholdTask(target, position_threshold=(0.01, 0.01, 0.005), rotation_threshold=(0.1, 0.1, 0.2),
                             reset_offset=(0, 0, 0.1))
    np.testing.assert_allclose(task.reset(np.random.default_rng(0), np.zeros(7)), np.r_[0.5, 0.1, 0.3, DOWN])
    assert task.observe(arm_state(target[:3])) == {}
    assert task.evaluate(arm_state(target[:3] + [0.009, -0.009, 0.004])) == (1.0, True)
    assert task.evaluate(arm_state(target[:3] + [0.0, 0.0, 0.006])) == (0.0, False)
    yawed = (Rotation.from_quat(DOWN) * Rotation.from_rotvec([0, 0, 0.15])).as_quat()
    tilted = (Rotation.from_quat(DOWN) * Rotation.from_rotvec([0.15, 0, 0])).as_quat()
    assert task.evaluate(arm_state(target[:3], yawed)) == (1.0, True)
    assert task.evaluate(arm_state(target[:3], tilted)) == (0.0, False)
    with pytest.raises(ValueError):
        PoseThresholdTask(target, position_threshold=(0.01, 0.01))


def _reach_observation(tcp, target):
    return {"state": {"tcp_pose": np.r_[tcp, DOWN].astype(np.float32), "target_pos": np.asarray(target, np.float32)}}


def test_reach_expert_is_a_clipped_p_controller_toward_the_target():
    expert = ReachExpert(FrankaEnv.spaces(ReachTask())[1])
    action = expert.act(_reach_observation([0.45, 0.0, 0.40], [0.46, -0.005, 0.30]))
    assert action.dtype == np.float32 and action.shape == (4,)
    np.testing.assert_allclose(action, [0.4, -0.2, -1.0, -1.0], atol=1e-5)  # 40 per metre, z clipped, gripper open
    rotating = ReachExpert(FrankaEnv.spaces(ReachTask(), ControlConfig(rotation_scale=0.3))[1])
    np.testing.assert_allclose(rotating.act(_reach_observation([0.45, 0, 0.4], [0.45, 0.01, 0.4])),
                               [0, 0.4, 0, 0, 0, 0, -1.0], atol=1e-5)  # no rotation
    for bad in ({"gain": 0.0}, {"noise_std": -0.1}):
        with pytest.raises(ValueError):
            ReachExpert(FrankaEnv.spaces(ReachTask())[1], **bad)
    with pytest.raises(ValueError, match="shape"):
        ReachExpert(gym.spaces.Box(-1, 1, (3,), np.float32))


def test_reach_expert_reaches_targets_at_the_envs_speed_and_noise_is_seeded():
    """Integrates the expert's velocities as FrankaEnv commands them (action_scale m/s, 50 Hz):
    every sampled target is reached within ReachTask's success distance well inside 300 steps."""
    control, task = ControlConfig(), ReachTask()
    for seed in range(5):
        expert = ReachExpert(FrankaEnv.spaces(task)[1], noise_std=0.3, seed=seed)
        tcp = np.array([0.46, 0.0, 0.40])  # about the home pose
        task.reset(np.random.default_rng(seed), np.r_[tcp, DOWN])
        for step in range(300):
            action = expert.act(_reach_observation(tcp, task.target))
            assert np.all(np.abs(action) <= 1.0)
            tcp = tcp + action[:3] * control.action_scale * control.control_dt
            if task.evaluate(arm_state(tcp))[1]:
                break
        assert step < 150, (seed, step)
    noisy = [ReachExpert(FrankaEnv.spaces(task)[1], noise_std=0.3, seed=s).act(_reach_observation(tcp, tcp))
             for s in (0, 0, 1)]
    np.testing.assert_array_equal(noisy[0], noisy[1])
    assert not np.array_equal(noisy[0], noisy[2])


def test_scripted_expert_picks_the_tasks_expert():
    action_space = FrankaEnv.spaces(ReachTask())[1]
    assert isinstance(scripted_expert(ReachTask(), action_space), ReachExpert)
    with pytest.raises(ValueError, match="no scripted expert for PoseThresholdTask.*ReachTask"):
        scripted_expert(PoseThresholdTask(np.r_[0.5, 0.0, 0.2, DOWN]), action_space)


# -- cameras --------------------------------------------------------------------------------------
class StaticCamera(Camera):
    def __init__(self, name, image, age=0.0, clock=time.monotonic):
        self.name, self.image, self.age, self.clock = name, image, age, clock
        self.closed = False

    def read(self):
        return Frame(self.image, self.clock() - self.age)

    def close(self):
        self.closed = True


def quadrants(height=120, width=160):
    """Four flat colours, so crops and resizes can be checked exactly."""
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2, : width // 2] = (255, 0, 0)
    image[: height // 2, width // 2:] = (0, 255, 0)
    image[height // 2:, : width // 2] = (0, 0, 255)
    image[height // 2:, width // 2:] = (255, 255, 255)
    return image


def test_fit_image_crops_then_resizes():
    image = quadrants()
    out = fit_image(image, (30, 40))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[5, 5], (255, 0, 0))
    np.testing.assert_array_equal(out[25, 35], (255, 255, 255))
    top_right = fit_image(image, (16, 16), crop=(0, 80, 60, 80))  # exactly the green quadrant
    assert np.all(top_right == (0, 255, 0))
    np.testing.assert_array_equal(fit_image(image, (120, 160)), image)
    with pytest.raises(CameraError, match="does not fit"):
        fit_image(image, (16, 16), crop=(100, 0, 40, 40))
    with pytest.raises(CameraError, match="uint8"):
        fit_image(image.astype(np.float32), (16, 16))


def test_camera_rig_refuses_stale_frames():
    clock = FakeClock()
    fresh, old = StaticCamera("wrist", quadrants(), 0.01, clock), StaticCamera("front", quadrants(), 0.5, clock)
    rig = CameraRig([fresh], size=(32, 32), max_age=0.1, clock=clock)
    images = rig.read()
    assert set(images) == {"wrist"} and images["wrist"].shape == (32, 32, 3)
    assert images["wrist"] in rig.observation_space["wrist"]
    stale = CameraRig([fresh, old], size=(32, 32), max_age=0.1, clock=clock)
    with pytest.raises(StaleFrameError, match="'front'.*500 ms old"):
        stale.read()
    stale.close()
    assert fresh.closed and old.closed
    with pytest.raises(ValueError, match="unknown cameras"):
        CameraRig([fresh], crops={"side": (0, 0, 1, 1)})
    with pytest.raises(ValueError, match="unique"):
        CameraRig([fresh, fresh])


def test_background_capture_keeps_the_newest_frame_and_reports_failures():
    counter = itertools.count()
    gate = threading.Event()

    def grab():
        gate.wait(1.0)
        n = next(counter)
        if n == 5:
            raise OSError("USB reset")
        time.sleep(0.005)
        return np.full((2, 2, 3), n, np.uint8)

    capture = BackgroundCapture(grab, "test")
    with pytest.raises(CameraError, match="no frame"):
        capture.latest()
    gate.set()
    time.sleep(0.2)
    with pytest.raises(CameraError, match="USB reset"):
        capture.latest()
    capture.close()

    steady = BackgroundCapture(lambda: (time.sleep(0.005), np.zeros((2, 2, 3), np.uint8))[1], "steady")
    time.sleep(0.05)
    first = steady.latest()
    time.sleep(0.05)
    assert steady.latest().timestamp > first.timestamp
    steady.close()


def test_mujoco_camera_renders_a_scene():
    from franka_sim.pick_cube import SCENE_XML

    model = mujoco.MjModel.from_xml_path(str(SCENE_XML))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    camera = MujocoCamera("front", model, data, "front", height=48, width=64)
    before = time.monotonic()
    frame = camera.read()
    assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8 and frame.image.std() > 10
    assert before <= frame.timestamp <= time.monotonic()
    camera.close()


def test_optional_device_libraries_fail_with_install_hints(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)
    with pytest.raises(ImportError, match="pip install pyrealsense2"):
        RealSenseCamera("wrist")
    monkeypatch.setitem(sys.modules, "pyspacemouse", None)
    with pytest.raises(ImportError, match=r"pip install -e '.\[robot\]'.*hidapi"):
        SpaceMouse()
    monkeypatch.setitem(sys.modules, "franky", None)
    with pytest.raises(ImportError, match=r"franky-control.*pip install -e '.\[robot\]'"):
        arm_module.import_franky()


# -- teleoperation --------------------------------------------------------------------------------
def test_spacemouse_without_a_device_is_a_clear_error():
    """The real pyspacemouse (robot-test extra) where no SpaceMouse is plugged in, as on CI."""
    try:
        device = SpaceMouse()
    except RuntimeError as error:
        assert "hidapi" in str(error) and "/dev/hidraw" in str(error)
    else:  # a machine with a SpaceMouse: opening it is the right outcome
        device.close()
    with pytest.raises(RuntimeError, match="SpaceMouse not found.*does not exist"):
        SpaceMouse(path="/nonexistent/hidraw0")


class RecordingEnv(gym.Env):
    """Stands in for FrankaEnv: records the actions it is given."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, n_action=4):
        self.action_space = gym.spaces.Box(-1, 1, (n_action,), np.float32)
        self.actions = []

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.actions.append(np.asarray(action))
        return np.zeros(1, np.float32), 0.0, False, False, {"success": False}


class FakeDevice:
    def __init__(self):
        self.reading = TeleopReading(np.zeros(6), ())
        self.closed = False

    def set(self, motion=(0,) * 6, buttons=()):
        self.reading = TeleopReading(np.asarray(motion, float), tuple(buttons))

    def read(self):
        return self.reading

    def close(self):
        self.closed = True


def test_intervention_overrides_the_policy_only_while_the_operator_acts():
    device, inner = FakeDevice(), RecordingEnv()
    env = SpaceMouseIntervention(inner, device, deadzone=0.1)
    policy = np.array([0.3, -0.3, 0.3, 1.0], np.float32)
    _, _, _, _, info = env.step(policy)
    assert info == {"success": False, "intervened": False}
    np.testing.assert_array_equal(inner.actions[-1], policy)
    device.set([0.05, -0.08, 0.0, 0.5, 0.0, 0.0])  # inside the dead zone; rotation ignored by a 4-dim env
    assert not env.step(policy)[4]["intervened"]
    device.set([0.5, 0.0, -0.7, 0, 0, 0])  # right and down, operator behind the base looking along +x
    _, _, _, _, info = env.step(policy)
    expected = np.array([0.0, -0.5, -0.7, 0.0], np.float32)  # right = -y; gripper 0 keeps its state
    assert info["intervened"] and info["intervene_action"].dtype == np.float32
    np.testing.assert_allclose(info["intervene_action"], expected, atol=1e-7)
    np.testing.assert_allclose(inner.actions[-1], expected, atol=1e-7)
    device.set(buttons=(True, False))  # close button alone is an intervention too
    np.testing.assert_allclose(env.step(policy)[4]["intervene_action"], [0, 0, 0, 1.0], atol=1e-7)
    device.set([0.0, 1.0, 0.0, 0, 0, 0], buttons=(False, True))  # away from the operator, open
    np.testing.assert_allclose(env.step(policy)[4]["intervene_action"], [1.0, 0, 0, -1.0], atol=1e-7)
    env.close()
    assert device.closed


def test_intervention_maps_operator_yaw_and_rotation():
    device, inner = FakeDevice(), RecordingEnv(n_action=7)
    env = SpaceMouseIntervention(inner, device, operator_yaw=np.pi / 2)  # operator faces +y
    device.set([0.0, 1.0, 0.0, 0.0, 0.0, 0.6])  # away, and turning counter-clockwise seen from above
    np.testing.assert_allclose(env.step(np.zeros(7, np.float32))[4]["intervene_action"],
                               [0, 1, 0, 0, 0, 0.6, 0], atol=1e-7)
    device.set([0.0, 0.0, 0.0, 0.5, 0.0, 0.0])  # rotation alone intervenes in a 7-dim env
    np.testing.assert_allclose(env.step(np.zeros(7, np.float32))[4]["intervene_action"],
                               [0, 0, 0, 0.5, 0, 0, 0], atol=1e-7)  # about the operator's right = base +x
    with pytest.raises(ValueError, match="deadzone"):
        SpaceMouseIntervention(inner, device, deadzone=1.0)


def test_keyboard_teleop_reads_a_terminal_and_holds_keys():
    master, slave = os.openpty()
    clock = FakeClock()
    keyboard = KeyboardTeleop(fd=slave, hold=0.3, clock=clock)
    try:
        os.write(master, b"wd")
        time.sleep(0.05)
        reading = keyboard.read()
        np.testing.assert_array_equal(reading.motion, [1, 1, 0, 0, 0, 0]) and not any(reading.buttons)
        clock.now += 0.2  # key repeat has not started yet: still held
        np.testing.assert_array_equal(keyboard.read().motion, [1, 1, 0, 0, 0, 0])
        os.write(master, b"fuc")
        time.sleep(0.05)
        reading = keyboard.read()
        np.testing.assert_array_equal(reading.motion, [1, 1, -1, 0, 0, 1])
        assert reading.buttons == (True, False)
        clock.now += 0.25  # w, d released 0.45 s ago; f, u, c 0.25 s ago
        np.testing.assert_array_equal(keyboard.read().motion, [0, 0, -1, 0, 0, 1])
        clock.now += 0.1
        reading = keyboard.read()
        assert not np.any(reading.motion) and not any(reading.buttons)
    finally:
        keyboard.close()
        os.close(master)
        os.close(slave)
    with pytest.raises(RuntimeError, match="tty"):
        read_end, write_end = os.pipe()
        try:
            KeyboardTeleop(fd=read_end)
        finally:
            os.close(read_end)
            os.close(write_end)


# -- signals --------------------------------------------------------------------------------------
class StoppableEnv(RecordingEnv):
    def __init__(self):
        super().__init__()
        self.stops = 0

    def stop(self):
        self.stops += 1


@pytest.mark.parametrize("signum, exception", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit)])
def test_stop_on_signals_stops_the_arm_before_interrupting(signum, exception):
    env = StoppableEnv()
    before = signal.getsignal(signum)
    with pytest.raises(exception) as raised:
        with stop_on_signals(env):
            os.kill(os.getpid(), signum)
            time.sleep(1.0)  # the handler interrupts this
    assert env.stops == 1
    if exception is SystemExit:
        assert raised.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signum) is before  # restored


def test_reach_observations_stand_in_has_frankareach_spaces_and_follows_the_expert():
    """benchmarks/reach_observations.py's kinematic stand-in: FrankaReach-v0's spaces, and the
    scripted expert reaches the target on it (so its ablation is about observations, not dynamics)."""
    from gymnasium.utils.env_checker import check_env

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    from reach_observations import KinematicReach

    observation_space, action_space = FrankaEnv.spaces(ReachTask())
    env = KinematicReach(offset_multiplier=1.0)
    assert env.observation_space == observation_space and env.action_space == action_space
    check_env(env, skip_render_check=True)
    assert "target_offset" not in KinematicReach(offset_multiplier=None).reset(seed=0)[0]["state"]
    obs, _ = env.reset(seed=1)
    np.testing.assert_allclose(obs["state"]["target_offset"],
                               (obs["state"]["target_pos"] - obs["state"]["tcp_pose"][:3]) / 0.1, atol=1e-5)
    expert = ReachExpert(action_space)
    for step in range(300):
        obs, reward, terminated, _, info = env.step(expert.act(obs))
        if terminated:
            break
    assert terminated and info["success"] and reward > -0.02
