"""The real Franka robot: FrankaEnv on franky-control (libfranka), its safety limits, tasks and
their scripted experts (franka_env.experts), cameras and SpaceMouse intervention. Importing the
package registers the envs with gymnasium:

    FrankaReach-v0          ReachTask: move the TCP to a sampled target (runs against franky-sim)
    FrankaPegInsertion-v0   PoseThresholdTask: reach a measured target pose within thresholds
                            (SERL's peg insertion reward); needs `target_pose=`

    gym.make("franka_env:FrankaReach-v0", robot_ip="172.16.0.2")
    gym.make("franka_env:FrankaReach-v0", robot_ip="127.0.0.1", realtime_ignore=True)  # franky-sim

Talking to an arm needs the `robot` extra (pip install -e '.[robot]'); see docs/robot.md.
"""
from gymnasium.envs.registration import register

from franka_env.arm import ArmState, RobotError
from franka_env.cameras import CameraRig, Frame, MujocoCamera, RealSenseCamera, StaleFrameError
from franka_env.env import ControlConfig, FrankaEnv
from franka_env.intervention import KeyboardTeleop, SpaceMouse, SpaceMouseIntervention
from franka_env.safety import SafetyConfig
from franka_env.shutdown import stop_on_signals
from franka_env.tasks import PoseThresholdTask, ReachTask, Task

__all__ = [
    "ArmState", "CameraRig", "ControlConfig", "FrankaEnv", "Frame", "KeyboardTeleop", "MujocoCamera",
    "PoseThresholdTask", "ReachTask", "RealSenseCamera", "RobotError", "SafetyConfig", "SpaceMouse",
    "SpaceMouseIntervention", "StaleFrameError", "Task", "stop_on_signals",
]

register(id="FrankaReach-v0", entry_point="franka_env.envs:make_reach_env", max_episode_steps=300,
         nondeterministic=True)
register(id="FrankaPegInsertion-v0", entry_point="franka_env.envs:make_pose_task_env", max_episode_steps=500,
         nondeterministic=True)
