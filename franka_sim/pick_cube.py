"""PandaPickCube: a Franka Panda with a parallel gripper lifts a 4 cm cube off a table.

Action, Box(-1, 1, (4,)) float32:
    a[:3]  requested TCP displacement over the next step, `action_scale` (3 cm) per unit, world
           frame. The target tcp + displacement is clipped to WORKSPACE, and the controller
           (franka_sim.controller) moves towards it at up to 1.5 m/s, slower where the joints'
           speed limits bind. There is no hidden target: a zero action stops the arm.
    a[3]   gripper: > 0 closes the fingers (20 N each at most), <= 0 opens them.

Observation (float32), a nested dict (SERL's layout):
    state/panda/tcp_pos (3,)     tool centre point between the finger pads, metres
    state/panda/tcp_vel (3,)     its linear velocity, m/s
    state/panda/gripper_pos (1,) finger closure, measured (SERL reports the command): 0 = open
                                 (8 cm), ~0.5 = holding the 4 cm cube, 1 = closed on nothing
    state/block_pos (3,)         cube centre (state env only)
    state/block_offset (3,)      cube centre minus TCP, in units of 10 cm (state env only; SERL's env
                                 has no such key: block_offset=False leaves it out). The policy would
                                 otherwise have to compute this difference of two ~0.4 m inputs: from
                                 scratch, with it, SAC lifts the cube in 90% of evaluations after
                                 15-19k env steps; without it, not once in 25k (README, Benchmarks).
    images/front, images/wrist   (image_size, image_size, 3) uint8 (vision env only)
`gymnasium.wrappers.FlattenObservation` turns the state env's dict into a (13,) vector ((10,) without
block_offset).

Rendering: render_mode="rgb_array" renders the `render_camera` ("overview": the whole arm and the
workspace; also "front", "wrist") at `render_size` pixels (480), for videos; "human" opens a viewer.

Reward, in [-1, 0], lift = cube height above its resting height, d = |tcp - cube| (m):
    reward_type="shaped" (default): 0.3 * exp(-20 d) + 0.7 * clip(lift / 0.1, 0, 1) - 1.
        SERL's shaped reward (closeness plus lift) shifted by -1 so that every step costs
        something: with termination on success, a positive per-step reward would teach the agent
        to hover just below the success height.
    reward_type="staged": 0.2 * (1 - tanh(5 d)) + 0.1 * grasp + 0.7 * clip(lift / 0.1, 0, 1) - 1.
        Stages as in robosuite's Lift (reach, grasp, lift) with a wider reach basin: the reach
        term still pulls from 30 cm away (0.02 there, 0.0007 for "shaped"), where the cube starts.
Success: lift >= 0.1 m (cube centre 10 cm above where it rested after reset). The step that
    reaches it has info["success"] = True and terminated = True. info["grasp"] is True while
    both fingers touch the cube. Episodes are truncated after 100 steps by TimeLimit.
"""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from franka_sim.controller import CartesianController
from franka_sim.rendering import HumanViewer, OffscreenCameras

SCENE_XML = Path(__file__).parent / "assets" / "pick_cube.xml"
ARM_JOINTS = [f"joint{i}" for i in range(1, 8)]
FINGERS = ["left_finger", "right_finger"]
# Gripper pointing straight down, fingers closing along world y; TCP at about (0.4, 0, 0.25).
HOME_QPOS = np.array([0.0, -0.34, 0.0, -2.65, 0.0, 2.31, np.pi / 4])
GRIPPER_DOWN = np.diag([1.0, -1.0, -1.0])
WORKSPACE = np.array([[0.25, -0.3, 0.015], [0.65, 0.3, 0.4]])  # TCP target box, metres
CUBE_SAMPLING = np.array([[0.3, -0.25], [0.55, 0.25]])  # cube centre xy, uniform
FINGER_OPEN = 0.04  # metres per finger
SUCCESS_LIFT = 0.1  # metres
OFFSET_UNIT = np.float32(0.1)  # metres per unit of the block_offset observation
ACTION_SCALE = 0.03  # metres of TCP displacement per unit action per step (1.5 m/s at most)
REWARD_TYPES = ("shaped", "staged")


class PandaPickCubeEnv(gym.Env):
    """Pick-cube task; `image_obs=True` gives the vision variant (cameras replace the cube position)."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 50}

    def __init__(
        self,
        render_mode: str | None = None,
        image_obs: bool = False,
        image_size: int = 128,
        render_camera: str = "overview",
        render_size: int = 480,
        shadows: bool = False,
        multisamples: int = 0,
        control_dt: float = 0.02,
        physics_dt: float = 0.002,
        action_scale: float = ACTION_SCALE,
        reward_type: str = "shaped",
        block_offset: bool | None = None,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            modes = self.metadata["render_modes"]
            raise ValueError(f"render_mode must be None or one of {modes}, got {render_mode!r}")
        if physics_dt <= 0 or control_dt <= 0:
            raise ValueError(f"control_dt and physics_dt must be positive, got {control_dt}, {physics_dt}")
        n_substeps = round(control_dt / physics_dt)
        if n_substeps < 1 or abs(n_substeps * physics_dt - control_dt) > 1e-9:
            raise ValueError(f"control_dt ({control_dt}) must be a whole multiple of physics_dt ({physics_dt})")
        if action_scale <= 0:
            raise ValueError(f"action_scale must be positive, got {action_scale}")
        if reward_type not in REWARD_TYPES:
            raise ValueError(f"reward_type must be one of {REWARD_TYPES}, got {reward_type!r}")
        if block_offset and image_obs:
            raise ValueError("block_offset is privileged state: the vision env observes the cube through its cameras")
        block_offset = not image_obs if block_offset is None else block_offset

        self.render_mode = render_mode
        self.image_obs = image_obs
        self.control_dt = control_dt
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / control_dt))}
        self._n_substeps = n_substeps
        self._action_scale = action_scale
        self.reward_type = reward_type
        self.block_offset = block_offset

        self.model = mujoco.MjModel.from_xml_path(str(SCENE_XML))
        self.model.opt.timestep = physics_dt
        self.data = mujoco.MjData(self.model)
        self.controller = CartesianController(
            self.model, self.data, site="tcp", joints=ARM_JOINTS, actuators=ARM_JOINTS,
            home_qpos=HOME_QPOS, target_rotation=GRIPPER_DOWN, workspace=WORKSPACE, control_dt=control_dt,
        )
        self._cameras = OffscreenCameras(self.model, image_size, shadows, multisamples)
        if render_camera not in {m_cam.name for m_cam in map(self.model.camera, range(self.model.ncam))}:
            raise ValueError(f"render_camera {render_camera!r} is not a camera of the scene")
        self._render_camera = render_camera
        self._video = OffscreenCameras(self.model, render_size, shadows=True, multisamples=4)
        self._viewer = HumanViewer(self.model, self.data) if render_mode == "human" else None

        m = self.model
        self._finger_qpos = np.array([m.joint(f).qposadr[0] for f in FINGERS])
        self._finger_ctrl = np.array([m.actuator(f).id for f in FINGERS])
        self._arm_qpos = np.array([m.joint(j).qposadr[0] for j in ARM_JOINTS])
        self._cube_qpos = m.joint("cube").qposadr[0]
        self._cube_body = m.body("cube").id
        self._cube_half = float(m.geom("cube").size[2])
        self._tcp_site = m.site("tcp").id
        self._cube_geom = m.geom("cube").id
        self._finger_geoms = {m.geom(f).id for f in FINGERS}
        self._site_vel = np.zeros(6)
        self._rest_z = self._cube_half

        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        vec = lambda n: spaces.Box(-np.inf, np.inf, shape=(n,), dtype=np.float32)  # noqa: E731
        state = {"panda/tcp_pos": vec(3), "panda/tcp_vel": vec(3), "panda/gripper_pos": vec(1)}
        if image_obs:
            img = spaces.Box(0, 255, shape=(image_size, image_size, 3), dtype=np.uint8)
            images = spaces.Dict({"front": img, "wrist": img})
            self.observation_space = spaces.Dict({"state": spaces.Dict(state), "images": images})
        else:
            state["block_pos"] = vec(3)
            if block_offset:
                state["block_offset"] = vec(3)
            self.observation_space = spaces.Dict({"state": spaces.Dict(state)})

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[self._arm_qpos] = HOME_QPOS
        d.qpos[self._finger_qpos] = FINGER_OPEN
        d.ctrl[self._finger_ctrl] = FINGER_OPEN
        cube_xy = self.np_random.uniform(*CUBE_SAMPLING)
        d.qpos[self._cube_qpos : self._cube_qpos + 3] = (*cube_xy, self._cube_half)
        mujoco.mj_forward(m, d)
        self.controller.reset()
        self._rest_z = float(d.xpos[self._cube_body, 2])
        if self.render_mode == "human":
            self.render()
        return self._observation(), {"success": False, "grasp": False}

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (4,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be 4 finite floats in [-1, 1], got {action!r}")
        action = np.clip(action, -1.0, 1.0)
        self.controller.command(action[:3] * self._action_scale)
        self.data.ctrl[self._finger_ctrl] = 0.0 if action[3] > 0 else FINGER_OPEN
        mujoco.mj_step(self.model, self.data, nstep=self._n_substeps)
        # Refresh kinematics, velocities and contacts so observations match the new state.
        mujoco.mj_forward(self.model, self.data)

        tcp = self.data.site_xpos[self._tcp_site]
        cube = self.data.xpos[self._cube_body]
        lift = cube[2] - self._rest_z
        success = bool(lift >= SUCCESS_LIFT)
        grasp = self._grasping()
        reward = self._reward(float(np.linalg.norm(cube - tcp)), grasp, lift)
        if self.render_mode == "human":
            self.render()
        return self._observation(), reward, success, False, {"success": success, "grasp": grasp}

    def render(self):
        if self.render_mode == "rgb_array":
            return self._video.render(self.data, self._render_camera)
        if self.render_mode == "human":
            self._viewer.sync()
        return None

    def close(self):
        self._cameras.close()
        self._video.close()
        if self._viewer is not None:
            self._viewer.close()

    @property
    def block_pos(self) -> np.ndarray:
        """Cube centre, float32: privileged state for scripted demonstrations in the vision env."""
        return self.data.xpos[self._cube_body].astype(np.float32)

    # -- helpers -------------------------------------------------------------------------------
    def _reward(self, distance: float, grasp: bool, lift: float) -> float:
        lifted = float(np.clip(lift / SUCCESS_LIFT, 0.0, 1.0))
        if self.reward_type == "staged":
            return 0.2 * (1.0 - np.tanh(5.0 * distance)) + 0.1 * grasp + 0.7 * lifted - 1.0
        return 0.3 * np.exp(-20.0 * distance) + 0.7 * lifted - 1.0

    def _observation(self) -> dict:
        d = self.data
        mujoco.mj_objectVelocity(self.model, d, mujoco.mjtObj.mjOBJ_SITE, self._tcp_site, self._site_vel, 0)  # world
        opening = d.qpos[self._finger_qpos].sum() / (2 * FINGER_OPEN)
        state = {
            "panda/tcp_pos": d.site_xpos[self._tcp_site].astype(np.float32),
            "panda/tcp_vel": self._site_vel[3:].astype(np.float32),
            "panda/gripper_pos": np.array([np.clip(1.0 - opening, 0.0, 1.0)], dtype=np.float32),
        }
        if not self.image_obs:
            state["block_pos"] = self.block_pos
            if self.block_offset:
                state["block_offset"] = (state["block_pos"] - state["panda/tcp_pos"]) / OFFSET_UNIT
            return {"state": state}
        images = {cam: self._cameras.render(d, cam) for cam in ("front", "wrist")}
        return {"state": state, "images": images}

    def _grasping(self) -> bool:
        """Both fingers touch the cube."""
        touching = set()
        for g1, g2 in self.data.contact.geom[: self.data.ncon]:
            if g1 == self._cube_geom or g2 == self._cube_geom:
                touching.update((g1, g2))
        return self._finger_geoms <= touching
