"""Cartesian end-effector control of the Panda, computed once per control step.

Running a Python operational-space controller at every physics substep is what makes SERL's
franka_sim slow (~390 env steps/s). Here the Cartesian law runs once per 50 Hz control step and
MuJoCo does the fast part in C: the requested displacement over one control period (and a
proportional law on the orientation error) gives a Cartesian velocity, damped least squares on
the site Jacobian (plus a null-space pull towards a home posture) turns it into joint velocities,
and the arm's `velocity` actuators track those over the physics substeps (their damping is
integrated implicitly, so high gains stay stable). Gravity is cancelled by the bodies' `gravcomp`.
Measured alternative: joint position targets held by PD actuators lagged and overshot by
centimetres; this cascade stops within a few millimetres even from full speed.
"""
from __future__ import annotations

import mujoco
import numpy as np


class CartesianController:
    """Moves a site by a commanded displacement per control step, keeping a fixed orientation.

    Each command asks for the site to reach `site + displacement` within one control step; that
    target is first clipped to the `workspace` box, so commands can never drive the site out
    of it, and the resulting speed is capped at `max_speed`. There is no hidden target state:
    what the arm does next depends only on the current state and the command.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        site: str,
        joints: list[str],
        actuators: list[str],
        home_qpos: np.ndarray,
        target_rotation: np.ndarray,
        workspace: np.ndarray,
        control_dt: float,
        max_speed: float = 1.5,
        orientation_gain: float = 25.0,
        damping: float = 0.02,
        nullspace_gain: float = 2.0,
        stop_time: float = 0.03,
    ):
        workspace = np.asarray(workspace, dtype=np.float64)
        if workspace.shape != (2, 3) or np.any(workspace[0] >= workspace[1]):
            raise ValueError(f"workspace must be [[xmin, ymin, zmin], [xmax, ymax, zmax]], min < max; got {workspace}")
        if not len(joints) == len(actuators) == len(home_qpos):
            raise ValueError("joints, actuators and home_qpos must have the same length")
        if control_dt <= 0:
            raise ValueError(f"control_dt must be positive, got {control_dt}")
        self._model, self._data = model, data
        self._site = model.site(site).id
        self._qpos_adr = np.array([model.joint(j).qposadr[0] for j in joints])
        self._dof_adr = np.array([model.joint(j).dofadr[0] for j in joints])
        self._ctrl_ids = np.array([model.actuator(a).id for a in actuators])
        self._speed_limit = model.actuator_ctrlrange[self._ctrl_ids, 1].copy()
        # Joint limits, shrunk by a small margin so a joint is treated as blocked just before it hits.
        self._qpos_range = model.jnt_range[[model.joint(j).id for j in joints]].T + [[0.01], [-0.01]]
        self._home = np.asarray(home_qpos, dtype=np.float64)
        self._rot_target = np.asarray(target_rotation, dtype=np.float64).reshape(3, 3)
        self._workspace = workspace
        self._control_dt, self._max_speed = control_dt, max_speed
        self._rot_gain = orientation_gain
        self._damping2 = damping**2
        self._null_gain = nullspace_gain
        self._stop_time = stop_time
        self._jac = np.zeros((6, model.nv))
        self._quat = np.zeros(4)
        self._rot_err = np.zeros(3)

    @property
    def site_pos(self) -> np.ndarray:
        return self._data.site_xpos[self._site]

    def reset(self) -> None:
        """Stops the arm's velocity actuators."""
        self._data.ctrl[self._ctrl_ids] = 0.0

    def command(self, displacement: np.ndarray) -> None:
        """Sets the joint velocities that move the site by `displacement` (m, world frame)."""
        jac = self._jac
        mujoco.mj_jacSite(self._model, self._data, jac[:3], jac[3:], self._site)
        jac = jac[:, self._dof_adr]
        # At its torque limits the arm needs tens of milliseconds to brake: clip where it would come
        # to rest, not where it is, so that a fast approach stops at the workspace boundary.
        coast = self.site_pos + self._stop_time * (jac[:3] @ self._data.qvel[self._dof_adr])
        twist = np.empty(6)
        twist[:3] = (np.clip(coast + displacement, *self._workspace) - coast) / self._control_dt
        speed = np.linalg.norm(twist[:3])
        if speed > self._max_speed:
            twist[:3] *= self._max_speed / speed
        twist[3:] = self._rot_gain * self._rotation_error()

        qpos = self._data.qpos[self._qpos_adr]
        posture = self._null_gain * (self._home - qpos)
        qvel = self._solve(jac, twist, posture)
        # A joint at a limit cannot follow its share of the motion: solve again without it, so
        # the other joints take over (this is what lets the arm reach close to its base).
        blocked = ((qpos <= self._qpos_range[0]) & (qvel < 0)) | ((qpos >= self._qpos_range[1]) & (qvel > 0))
        if blocked.any():
            free = ~blocked
            qvel[:] = 0.0
            qvel[free] = self._solve(jac[:, free], twist, posture[free])
        # Scale (rather than clip) to the joint speed limits so the Cartesian direction is kept.
        qvel *= min(1.0, float(np.min(self._speed_limit / (np.abs(qvel) + 1e-12))))
        self._data.ctrl[self._ctrl_ids] = qvel

    def _solve(self, jac: np.ndarray, twist: np.ndarray, posture: np.ndarray) -> np.ndarray:
        """Damped least squares, J^T (J J^T + lambda^2 I)^-1 twist, plus `posture` projected
        onto the Jacobian's null space (it uses the redundancy without disturbing the site)."""
        jjt = jac @ jac.T
        jjt[np.diag_indices(6)] += self._damping2
        jac_pinv = np.linalg.solve(jjt, jac).T
        return jac_pinv @ twist + posture - jac_pinv @ (jac @ posture)

    def _rotation_error(self) -> np.ndarray:
        """Axis-angle vector (world frame) rotating the site's frame onto the target frame."""
        r_err = self._rot_target @ self._data.site_xmat[self._site].reshape(3, 3).T
        mujoco.mju_mat2Quat(self._quat, r_err.ravel())
        mujoco.mju_quat2Vel(self._rot_err, self._quat, 1.0)
        return self._rot_err
