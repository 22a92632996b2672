"""The arm and hand through franky (libfranka): the only module of franka_env that imports franky.

franky runs libfranka's 1 kHz real-time loop in C++; from Python a motion is replaced at any time
with `robot.move(motion, asynchronous=True)`. FrankaArm wraps what FrankaEnv needs: measured state
in the base frame, a velocity command that the arm holds for a bounded time and that stops at
once when the external force gets too high, interruptible blocking moves for resets, stop and
error recovery. Errors of the real-time loop surface as franky exceptions on the next call that
touches it (`poll`, `move`, ...); `FrankaArm.errors` lists the exception types that mean "the arm
refused or aborted", which the env turns into a clean episode end.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

import numpy as np

from franka_env.gripper import GripperController
from franka_env.safety import SafetyConfig

JOIN_POLL_S = 0.05  # blocking moves wait in slices this long so that Python signal handlers run
STOP_TIMEOUT_S = 2.0  # a stopped motion ends within this (it only has to brake)


class RobotError(RuntimeError):
    """The arm cannot be used: connection refused or lost, or automatic error recovery failed."""


class MotionError(RuntimeError):
    """franky's motion generator gave up on the running motion (its trajectory planner, e.g. "Motion
    planner failed with error code -110"). franky raises these as plain RuntimeError; FrankaArm
    re-raises them as this type, one of `FrankaArm.errors`, so the env ends the episode cleanly."""


def import_franky():
    try:
        import franky
    except ImportError as error:
        raise ImportError(
            f"franka_env needs franky-control to talk to a Franka arm ({error}): pip install -e '.[robot]'"
        ) from error
    return franky


@dataclass(frozen=True)
class ArmState:
    """One reading of the arm, base frame throughout.

    tcp_pose         (7,) TCP position (m) + orientation quaternion xyzw: libfranka's O_T_EE, the
                     end-effector frame configured in Desk (the Franka Hand's TCP between the fingertips)
    tcp_vel          (6,) measured TCP linear (m/s) and angular (rad/s) velocity: zero Jacobian @ dq
    wrench           (6,) estimated external force (N) and torque (Nm) on the TCP: O_F_ext_hat_K
    q                (7,) joint positions (rad)
    gripper_closure  0 fully open .. 1 fully closed (measured finger width)
    """

    tcp_pose: np.ndarray
    tcp_vel: np.ndarray
    wrench: np.ndarray
    q: np.ndarray
    gripper_closure: float


class FrankaArm:
    """A connected Franka arm and hand. `realtime_ignore=True` lets libfranka run without a
    real-time kernel: for simulators (franky-sim) only, never for a real arm."""

    def __init__(self, robot_ip: str, safety: SafetyConfig, *, realtime_ignore: bool = False,
                 gripper_speed: float = 0.1, gripper_force: float = 20.0):
        franky = import_franky()
        self._franky = franky
        self.errors = (franky.ControlException, franky.CommandException, franky.NetworkException,
                       franky.ProtocolException, franky.Exception, MotionError)
        kwargs = {"realtime_config": franky.RealtimeConfig.Ignore} if realtime_ignore else {}
        try:
            self._robot = franky.Robot(robot_ip, default_torque_threshold=safety.collision_torque,
                                       default_force_threshold=safety.collision_force, **kwargs)
            gripper = franky.Gripper(robot_ip)
        except (*self.errors, franky.RealtimeException, franky.IncompatibleVersionException) as error:
            hint = (" (no real-time kernel: run the actor on the robot's real-time PC, or pass "
                    "realtime_ignore=True for a simulator)" if isinstance(error, franky.RealtimeException) else "")
            raise RobotError(f"could not connect to the Franka arm at {robot_ip}: {error}{hint}") from error
        self.gripper = GripperController(gripper, speed=gripper_speed, force=gripper_force)
        force = franky.Measure
        self._force_condition = (force.FORCE_X**2 + force.FORCE_Y**2 + force.FORCE_Z**2) > safety.max_force**2
        self.force_stop = threading.Event()  # set from the real-time loop when the force reaction fires

    # -- reading ---------------------------------------------------------------------------------
    def read(self) -> ArmState:
        state = self._robot.state
        pose = state.O_T_EE
        jacobian = self._robot.model.zero_jacobian(self._franky.Frame.EndEffector, state)
        return ArmState(
            tcp_pose=np.concatenate([pose.translation, pose.quaternion]),
            tcp_vel=jacobian @ state.dq,
            wrench=np.array(state.O_F_ext_hat_K, dtype=np.float64),
            q=np.array(state.q, dtype=np.float64),
            gripper_closure=self.gripper.closure(),
        )

    def braking(self, dynamics_factor: float) -> tuple[float, float]:
        """Decelerations (m/s^2, rad/s^2) the safety clip assumes: half of franky's limits scaled by
        the motion's dynamics factor (the other half is margin for the jerk-limited ramp)."""
        return (self._robot.translation_acceleration_limit.get() * dynamics_factor / 2,
                self._robot.rotation_acceleration_limit.get() * dynamics_factor / 2)

    def velocity_limits(self, dynamics_factor: float) -> tuple[float, float]:
        """Largest TCP speeds (m/s, rad/s) franky allows a motion with this dynamics factor."""
        return (self._robot.translation_velocity_limit.get() * dynamics_factor,
                self._robot.rotation_velocity_limit.get() * dynamics_factor)

    # -- commanding ------------------------------------------------------------------------------
    def command_velocity(self, twist: np.ndarray, hold: float, dynamics_factor: float) -> None:
        """Replaces the running motion with a TCP velocity (base frame: linear m/s, angular rad/s)
        held for `hold` seconds, after which the arm brakes to rest unless another command came.
        An external force above SafetyConfig.max_force replaces it with a stop within one 1 kHz
        cycle and sets `force_stop`."""
        franky = self._franky
        motion = franky.CartesianVelocityMotion(
            franky.Twist(twist[:3], twist[3:]), duration=franky.Duration(max(1, round(hold * 1e3))),
            relative_dynamics_factor=dynamics_factor)
        reaction = franky.CartesianVelocityReaction(self._force_condition, franky.CartesianVelocityStopMotion())
        reaction.register_callback(lambda *_: self.force_stop.set())
        motion.add_reaction(reaction)
        with self._motion_errors():
            self._robot.move(motion, asynchronous=True)

    def poll(self) -> None:
        """Raises the error the real-time loop stored, if any (a reflex, a lost connection, a failed motion)."""
        with self._motion_errors():
            self._robot.poll_motion()

    def move_joints(self, q, dynamics_factor: float, timeout: float) -> None:
        self._move_blocking(self._franky.JointMotion(np.asarray(q, dtype=np.float64),
                                                     relative_dynamics_factor=dynamics_factor), timeout)

    def move_to_pose(self, pose: np.ndarray, dynamics_factor: float, timeout: float) -> None:
        franky = self._franky
        target = franky.Affine(np.asarray(pose[:3], dtype=np.float64), np.asarray(pose[3:], dtype=np.float64))
        self._move_blocking(franky.CartesianMotion(target, relative_dynamics_factor=dynamics_factor), timeout)

    def wait_until_still(self, timeout: float, speed: float = 0.002) -> None:
        """After a move: waits (at most `timeout`) until the TCP moves slower than `speed` (m/s).
        A motion ends when its *commanded* trajectory does; the arm follows a few ms later."""
        deadline = time.monotonic() + timeout
        while np.linalg.norm(self.read().tcp_vel[:3]) > speed and time.monotonic() < deadline:
            time.sleep(0.01)

    def settle(self, timeout: float) -> None:
        """Waits for the running motion (a held velocity command) to end; stops it past `timeout`."""
        if not self._join(timeout):
            self.stop()

    def stop(self) -> None:
        """Stops any motion now (libfranka's stop: the arm brakes) and waits until it has."""
        try:
            self._robot.stop()
        except self.errors:
            pass  # nothing was running, or the connection is gone: nothing left to stop
        try:
            self._robot.join_motion(timeout=STOP_TIMEOUT_S)
        except self.errors:
            pass  # the stop preempts the motion with a ControlException: expected

    @property
    def has_errors(self) -> bool:
        return self._robot.has_errors

    def recover(self) -> None:
        """libfranka's automatic error recovery (what Desk's "recover" does after a reflex)."""
        try:
            recovered = self._robot.recover_from_errors()
        except self.errors as error:
            raise RobotError(f"automatic error recovery failed: {type(error).__name__}: {error}") from error
        if not recovered:
            raise RobotError("automatic error recovery did not clear the arm's errors (check Desk: "
                             "the user stop may be engaged or the error needs manual recovery)")

    def close(self) -> None:
        self.stop()
        self.gripper.close()
        del self._robot  # franky's destructor closes the connection

    # -- helpers ---------------------------------------------------------------------------------
    def _move_blocking(self, motion, timeout: float) -> None:
        with self._motion_errors():
            self._robot.move(motion, asynchronous=True)
        if not self._join(timeout):
            self.stop()
            raise RobotError(f"{type(motion).__name__} did not finish within {timeout} s")

    def _join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._motion_errors():
            while not self._robot.join_motion(timeout=JOIN_POLL_S):
                if time.monotonic() > deadline:
                    return False
        return True

    @contextlib.contextmanager
    def _motion_errors(self):
        """franky's plain RuntimeErrors from a motion become MotionError (see there)."""
        try:
            yield
        except self.errors:
            raise
        except RuntimeError as error:
            raise MotionError(str(error)) from error
