"""Constructors behind the gymnasium ids registered in franka_env/__init__.py."""
from __future__ import annotations

from franka_env.env import FrankaEnv
from franka_env.tasks import PoseThresholdTask, ReachTask


def make_reach_env(robot_ip: str, *, target_low=(0.40, -0.10, 0.25), target_high=(0.56, 0.10, 0.40),
                   success_distance: float = 0.02, **env_kwargs) -> FrankaEnv:
    """FrankaReach-v0: ReachTask; `env_kwargs` go to FrankaEnv (control, safety, cameras, realtime_ignore)."""
    return FrankaEnv(ReachTask(target_low, target_high, success_distance), robot_ip, **env_kwargs)


def reach_spaces(control=None, cameras=None):
    """FrankaReach-v0's (observation_space, action_space), without connecting to an arm (for a learner)."""
    return FrankaEnv.spaces(ReachTask(), **({"control": control} if control else {}), cameras=cameras)


def make_pose_task_env(robot_ip: str, target_pose, *, position_threshold=(0.01, 0.01, 0.01),
                       rotation_threshold=(0.2, 0.2, 0.2), reset_offset=(0.0, 0.0, 0.1), **env_kwargs) -> FrankaEnv:
    """FrankaPegInsertion-v0: PoseThresholdTask around `target_pose` (xyz + quaternion xyzw, base frame)."""
    task = PoseThresholdTask(target_pose, position_threshold, rotation_threshold, reset_offset)
    return FrankaEnv(task, robot_ip, **env_kwargs)
