"""FrankaEnv: a gymnasium env that drives a real Franka arm (or franky-sim) at a fixed rate.

Each step: read the arm, turn the action into a TCP velocity (clipped by safety.py), send it as a
franky velocity motion that replaces the running one and that the arm holds for at most
`command_timeout` (so it stops by itself if the actor stalls), set the gripper, sleep to the end
of the control period (RateKeeper), read the arm again and score the step with the task.

Action, Box(-1, 1) float32: a[:3] TCP velocity in the base frame, `action_scale` m/s per unit;
with `rotation_scale` set, a[3:6] TCP angular velocity about the base axes, `rotation_scale`
rad/s per unit (otherwise the orientation is held at the episode's start orientation); a[-1]
gripper, > +threshold closes, < -threshold opens, in between keeps (GripperHysteresis).

Observation: {"state": {"tcp_pose" (7: xyz + quaternion xyzw), "tcp_vel" (6: linear, angular),
"gripper_pose" (1: 0 open .. 1 closed), "tcp_force" (3), "tcp_torque" (3), + the task's entries},
"images": {camera: (h, w, 3) uint8}} (images only with cameras); float32, base frame throughout.

Episode ends: the task's success (terminated); a safety stop (external force or torque above the
limits: the arm is stopped, truncated, info["safety_stop"]); an arm error such as a reflex
(recovered with libfranka's automatic recovery, truncated, info["robot_error"]). The actor never
sees an exception from the arm during step(); reset() raises RobotError when the arm cannot be
made ready. Every step's info has "success" and "control": {"period_ms": the control period that
just ended, "slack_ms": how long before its deadline the step was ready to sleep (the loop's
headroom; negative: late), "missed_deadlines": count since the env was made}.
What is and is not guaranteed: docs/robot.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from scipy.spatial.transform import Rotation

from franka_env.arm import ArmState, FrankaArm, RobotError
from franka_env.cameras import CameraError, CameraRig
from franka_env.gripper import GripperError, GripperHysteresis
from franka_env.poses import as_pose, rotation_error, yaw_rotated
from franka_env.rate import RateKeeper
from franka_env.safety import SafetyConfig, clip_angular_velocity, clip_linear_velocity
from franka_env.tasks import Task

# Gripper pointing straight down, TCP at about (0.46, 0, 0.40) m on an FR3 / Panda with the Franka Hand.
HOME_JOINTS = (0.0, -0.3, 0.0, -2.2, 0.0, 1.9, np.pi / 4)
ORIENTATION_HOLD_MAX_RATE = 0.2  # rad/s: the translation-only orientation hold never turns faster
GRIPPER_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ControlConfig:
    """How FrankaEnv drives the arm. The defaults are deliberately slow for a first run on a real arm.

    control_dt             control period (s): 0.02 is 50 Hz
    action_scale           TCP speed (m/s) per unit action: 0.05 -> at most 5 cm/s per axis
    rotation_scale         TCP angular speed (rad/s) per unit action; None: 4-dim actions, no rotation
    command_timeout        how long (s) the arm keeps a velocity command when no next one comes;
                           it then brakes to rest (the stall watchdog)
    dynamics_factor        franky relative dynamics factor of the velocity motions (scales the
                           arm's velocity, acceleration and jerk limits)
    home_joints            joint pose (rad) every reset moves to first
    reset_dynamics_factor  dynamics factor of the reset moves
    random_reset_xy        the start position is shifted by up to this (m) in x and y (SERL's RANDOM_RESET)
    random_reset_yaw       ... and turned by up to this (rad) about the base z axis
    orientation_gain       translation-only: angular velocity (rad/s) per rad of orientation error
    gripper_threshold      |a[-1]| above which the gripper command changes state
    gripper_speed / force  finger speed (m/s) and grasp force (N)
    reset_timeout          a reset move taking longer (s) is stopped and the reset fails
    """

    control_dt: float = 0.02
    action_scale: float = 0.05
    rotation_scale: float | None = None
    command_timeout: float = 0.1
    dynamics_factor: float = 0.1
    home_joints: tuple[float, ...] = HOME_JOINTS
    reset_dynamics_factor: float = 0.2
    random_reset_xy: float = 0.0
    random_reset_yaw: float = 0.0
    orientation_gain: float = 5.0
    gripper_threshold: float = 0.5
    gripper_speed: float = 0.1
    gripper_force: float = 20.0
    reset_timeout: float = 30.0

    def __post_init__(self):
        positive = ("control_dt", "action_scale", "command_timeout", "dynamics_factor", "reset_dynamics_factor",
                    "orientation_gain", "gripper_speed", "gripper_force", "reset_timeout")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.rotation_scale is not None and not self.rotation_scale > 0:
            raise ValueError(f"rotation_scale must be positive or None, got {self.rotation_scale}")
        if self.command_timeout < self.control_dt:
            raise ValueError(f"command_timeout ({self.command_timeout} s) must be at least control_dt "
                             f"({self.control_dt} s), or the arm would stop between two steps")
        for name in ("dynamics_factor", "reset_dynamics_factor"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if len(self.home_joints) != 7:
            raise ValueError(f"home_joints must have 7 values, got {self.home_joints}")
        if self.random_reset_xy < 0 or self.random_reset_yaw < 0:
            raise ValueError("random_reset_xy and random_reset_yaw must be >= 0")


class FrankaEnv(gym.Env):
    """A Franka arm + hand through franky. `realtime_ignore=True` is for simulators only (see FrankaArm)."""

    metadata = {"render_modes": []}

    def __init__(self, task: Task, robot_ip: str, *, control: ControlConfig = ControlConfig(),
                 safety: SafetyConfig = SafetyConfig(), cameras: CameraRig | None = None,
                 realtime_ignore: bool = False):
        self.task, self.control, self.safety, self.cameras = task, control, safety, cameras
        self._low, self._high = np.asarray(safety.workspace_low), np.asarray(safety.workspace_high)
        self.observation_space, self.action_space = self.spaces(task, control, cameras)

        self._arm = FrankaArm(robot_ip, safety, realtime_ignore=realtime_ignore,
                              gripper_speed=control.gripper_speed, gripper_force=control.gripper_force)
        max_speed, max_rate = self._arm.velocity_limits(control.dynamics_factor)
        if control.action_scale * np.sqrt(3) > max_speed or (control.rotation_scale or 0) * np.sqrt(3) > max_rate:
            self._arm.close()
            raise ValueError(f"action_scale / rotation_scale exceed the arm's limits at dynamics_factor "
                             f"{control.dynamics_factor}: {max_speed:.3f} m/s and {max_rate:.3f} rad/s for the "
                             f"full 3-axis action")
        self._braking = self._arm.braking(control.dynamics_factor)
        self._rate = RateKeeper(control.control_dt)
        self._hysteresis = GripperHysteresis(control.gripper_threshold)
        self._reference_quat: np.ndarray | None = None  # TCP orientation at the home joints (rotation limits)
        self._hold_quat: np.ndarray | None = None  # orientation held without rotation actions
        self._last_state: ArmState | None = None
        self._ready = False  # False until reset() and after an episode ended
        self._closed = False

    @staticmethod
    def spaces(task: Task, control: ControlConfig = ControlConfig(),
               cameras: CameraRig | None = None) -> tuple[spaces.Dict, spaces.Box]:
        """(observation_space, action_space) of an env with this task and settings, without an arm:
        what a learner on another machine needs to build its agent and replay buffer."""
        n_action = 7 if control.rotation_scale is not None else 4
        vec = lambda n: spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32)  # noqa: E731
        state = {"tcp_pose": vec(7), "tcp_vel": vec(6), "gripper_pose": vec(1), "tcp_force": vec(3),
                 "tcp_torque": vec(3), **task.observation_space}
        observation = {"state": spaces.Dict(state)}
        if cameras is not None:
            observation["images"] = cameras.observation_space
        return spaces.Dict(observation), spaces.Box(-1.0, 1.0, shape=(n_action,), dtype=np.float32)

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._ready = False
        try:
            self._go_to_start()
        except (*self._arm.errors, GripperError, RobotError) as error:
            self._arm.recover()  # raises RobotError if the arm cannot be recovered
            try:
                self._go_to_start()
            except (*self._arm.errors, GripperError, RobotError) as second:
                raise RobotError(f"reset failed twice: {type(error).__name__}: {error}; then "
                                 f"{type(second).__name__}: {second}") from second
        self._last_state = self._arm.read()
        self._rate.start()
        self._ready = True
        return self._observation(self._last_state), {"success": False}

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be {self.action_space.shape[0]} finite floats in [-1, 1], got {action!r}")
        if not self._ready:
            raise RuntimeError("call reset() first: the episode has not started or has ended")
        action = np.clip(action, -1.0, 1.0)
        try:
            if not self._arm.force_stop.is_set():  # the force reaction stopped the arm: do not move it again
                state = self._arm.read()
                self._arm.command_velocity(self._twist(action, state), self.control.command_timeout,
                                           self.control.dynamics_factor)
                self._arm.gripper.set_closed(self._hysteresis.update(action[-1]))
            period = self._rate.wait()
            self._arm.poll()
            state = self._arm.read()
        except (*self._arm.errors, GripperError) as error:
            return self._end_on_error(error)
        self._last_state = state
        stop_reason = self._limit_exceeded(state)
        if stop_reason is not None:
            self._arm.stop()
        observation = self._observation(state)
        reward, success = self.task.evaluate(state)
        info = {"success": success, "control": self._control_info(period)}
        if stop_reason is not None:
            info["safety_stop"] = stop_reason
        self._ready = not (success or stop_reason)
        return observation, float(reward), success, stop_reason is not None, info

    def close(self):
        if self._closed:
            return
        self._closed = True
        self._ready = False
        self._arm.close()
        if self.cameras is not None:
            self.cameras.close()

    # -- extra API ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stops the arm now and ends the episode (the next step() raises until reset()). Safe to
        call from a signal handler in the main thread (see franka_env.shutdown)."""
        self._ready = False
        self._arm.stop()

    def read_state(self) -> ArmState:
        """The arm's current state (e.g. to measure a task's target pose after guiding the arm there)."""
        return self._arm.read()

    def control_stats(self) -> dict:
        """Timing of the control loop: periods (ms, p50 / p99 / max), jitter, missed deadlines."""
        return self._rate.stats()

    # -- helpers ---------------------------------------------------------------------------------
    def _go_to_start(self) -> None:
        c = self.control
        self._arm.settle(timeout=c.command_timeout + 1.0)
        if self._arm.has_errors:
            self._arm.recover()
        self._arm.force_stop.clear()
        self._hysteresis.closed = False
        self._arm.gripper.set_closed(False)
        self._arm.move_joints(c.home_joints, c.reset_dynamics_factor, c.reset_timeout)
        home = self._arm.read().tcp_pose
        if self._reference_quat is None:
            if np.any(home[:3] < self._low) or np.any(home[:3] > self._high):
                raise ValueError(f"the TCP at home_joints, {np.round(home[:3], 3)} m, is outside the workspace "
                                 f"{self.safety.workspace_low}..{self.safety.workspace_high}: change one of them")
            self._reference_quat = home[3:].copy()
        start = self._start_pose(self.task.reset(self.np_random, home.copy()))
        if not np.allclose(start, home, atol=1e-4):
            self._arm.move_to_pose(start, c.reset_dynamics_factor, c.reset_timeout)
        self._arm.gripper.wait_until_applied(GRIPPER_TIMEOUT_S)
        self._arm.wait_until_still(timeout=1.0)
        self._hold_quat = start[3:]

    def _start_pose(self, task_pose) -> np.ndarray:
        """The task's start pose with the random reset offsets, position kept in the workspace."""
        start = as_pose(task_pose)
        c = self.control
        start[:2] += self.np_random.uniform(-c.random_reset_xy, c.random_reset_xy, size=2)
        start[3:] = yaw_rotated(start[3:], self.np_random.uniform(-c.random_reset_yaw, c.random_reset_yaw))
        start[:3] = np.clip(start[:3], self._low, self._high)
        error = rotation_error(start[3:], self._reference_quat)
        if np.any(np.abs(error) > self.safety.rotation_limit):
            raise ValueError(f"the start pose's orientation is outside the rotation limits: {error} rad from "
                             f"the home orientation, limits {self.safety.rotation_limit} (check the task's reset "
                             "pose and random_reset_yaw)")
        return start

    def _twist(self, action: np.ndarray, state: ArmState) -> np.ndarray:
        c = self.control
        linear = action[:3] * c.action_scale
        if c.rotation_scale is not None:
            angular = action[3:6] * c.rotation_scale
        else:
            error = (Rotation.from_quat(self._hold_quat) * Rotation.from_quat(state.tcp_pose[3:]).inv()).as_rotvec()
            angular = c.orientation_gain * error
            rate = np.linalg.norm(angular)
            if rate > ORIENTATION_HOLD_MAX_RATE:
                angular *= ORIENTATION_HOLD_MAX_RATE / rate
        linear_braking, angular_braking = self._braking
        linear = clip_linear_velocity(state.tcp_pose[:3], linear, self._low, self._high, c.command_timeout,
                                      linear_braking)
        angular = clip_angular_velocity(state.tcp_pose[3:], self._reference_quat, angular, self.safety.rotation_limit,
                                        c.command_timeout, angular_braking)
        return np.concatenate([linear, angular])

    def _limit_exceeded(self, state: ArmState) -> str | None:
        force, torque = np.linalg.norm(state.wrench[:3]), np.linalg.norm(state.wrench[3:])
        if self._arm.force_stop.is_set():
            return (f"external force above {self.safety.max_force} N: stopped in the real-time loop "
                    f"(now {force:.1f} N)")
        if force > self.safety.max_force:
            return f"external force {force:.1f} N above {self.safety.max_force} N"
        if torque > self.safety.max_torque:
            return f"external torque {torque:.2f} Nm above {self.safety.max_torque} Nm"
        return None

    def _end_on_error(self, error: Exception):
        """A reflex or libfranka error: recover, end the episode (truncated), report what happened."""
        self._ready = False
        info = {"success": False, "control": self._control_info(None),
                "robot_error": f"{type(error).__name__}: {error}"}
        state = self._last_state
        try:
            self._arm.recover()
            state = self._arm.read()
        except (*self._arm.errors, GripperError, RobotError) as recovery_error:
            info["robot_error"] += f"; recovery failed: {recovery_error}"
        reward, success = self.task.evaluate(state)
        info["success"] = success
        return self._observation(state), float(reward), success, True, info

    def _control_info(self, period: float | None) -> dict:
        if period is None:  # the step ended early on an error
            return {"period_ms": None, "slack_ms": None, "missed_deadlines": self._rate.missed_deadlines}
        return {"period_ms": period * 1e3, "slack_ms": self._rate.last_slack * 1e3,
                "missed_deadlines": self._rate.missed_deadlines}

    def _observation(self, state: ArmState) -> dict:
        f32 = lambda x: np.asarray(x, dtype=np.float32)  # noqa: E731  (always a fresh array)
        observation = {"state": {
            "tcp_pose": f32(state.tcp_pose), "tcp_vel": f32(state.tcp_vel),
            "gripper_pose": f32([state.gripper_closure]), "tcp_force": f32(state.wrench[:3]),
            "tcp_torque": f32(state.wrench[3:]), **self.task.observe(state)}}
        if self.cameras is not None:
            try:
                observation["images"] = self.cameras.read()
            except CameraError:
                self.stop()  # no moving on without sight
                raise
        return observation
