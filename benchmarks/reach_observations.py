#!/usr/bin/env python3
"""Which position inputs let SAC learn FrankaReach-v0 quickly: a fast ablation on a kinematic stand-in.

FrankaReach-v0 runs in real time (50 Hz) against franky-sim, so comparing observation layouts there
costs 10-15 minutes a run. This script trains on a stand-in with FrankaReach-v0's observation and
action spaces and ReachTask's reward and success, whose TCP follows the commanded velocity with the
step response measured on franky-sim (5 cm/s reached within 5 steps of 20 ms), as fast as the CPU
allows. The agent and its settings are those of benchmarks/robot_loop.py (SAC, ensemble 2, discount
0.97, 1000 random steps, the UTD of 4.7 that run held). Variants of the task's observation:
    absolute     target_pos and the TCP pose only (FrankaReach-v0 before target_offset existed)
    offset_m     plus target - TCP in metres
    offset_10cm  plus target - TCP in units of 10 cm (FrankaReach-v0's target_offset)
Prints eval success (10 episodes) every --eval_period env steps and the first to reach 90%.

    python benchmarks/reach_observations.py                      # all three, 10k env steps each
    python benchmarks/reach_observations.py --variants absolute --steps 3000
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

from franka_env.arm import ArmState
from franka_env.env import ControlConfig, FrankaEnv
from franka_env.safety import SafetyConfig
from franka_env.tasks import ReachTask

VARIANTS = {"absolute": None, "offset_m": ReachTask.OFFSET_UNIT, "offset_10cm": 1.0}  # target_offset multiplier
CONTROL = ControlConfig()  # FrankaEnv's defaults: 50 Hz, 5 cm/s per unit action
VELOCITY_RESPONSE = 0.45  # fraction of the velocity error closed per step (franky-sim: 5 cm/s within 5 steps)
HOME = np.array([0.46, 0.0, 0.40, 1.0, 0.0, 0.0, 0.0])  # TCP pose at FrankaEnv's home joints, gripper down


class KinematicReach(gym.Env):
    """ReachTask on a point TCP that tracks the commanded velocity with franky-sim's step response."""

    def __init__(self, offset_multiplier: float | None):
        self.task, self.offset_multiplier = ReachTask(), offset_multiplier
        observation_space, self.action_space = FrankaEnv.spaces(self.task)
        state = dict(observation_space["state"].spaces)
        if offset_multiplier is None:
            del state["target_offset"]
        self.observation_space = gym.spaces.Dict({"state": gym.spaces.Dict(state)})
        safety = SafetyConfig()
        self._low, self._high = np.asarray(safety.workspace_low), np.asarray(safety.workspace_high)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pose, self.velocity = HOME.copy(), np.zeros(3)
        self.task.reset(self.np_random, HOME)
        return self._observation(), {"success": False}

    def step(self, action):
        target_velocity = np.clip(action[:3], -1, 1) * CONTROL.action_scale
        self.velocity += VELOCITY_RESPONSE * (target_velocity - self.velocity)
        self.pose[:3] = np.clip(self.pose[:3] + self.velocity * CONTROL.control_dt, self._low, self._high)
        reward, success = self.task.evaluate(self._arm_state())
        return self._observation(), reward, success, False, {"success": success}

    def _arm_state(self) -> ArmState:
        return ArmState(self.pose.copy(), np.r_[self.velocity, np.zeros(3)], np.zeros(6), np.zeros(7), 0.0)

    def _observation(self) -> dict:
        f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
        arm = self._arm_state()
        state = {"tcp_pose": f32(arm.tcp_pose), "tcp_vel": f32(arm.tcp_vel), "gripper_pose": f32([arm.gripper_closure]),
                 "tcp_force": f32(arm.wrench[:3]), "tcp_torque": f32(arm.wrench[3:]), **self.task.observe(arm)}
        if self.offset_multiplier is None:
            del state["target_offset"]
        else:
            state["target_offset"] = f32(state["target_offset"] * self.offset_multiplier)
        return {"state": state}


def train(variant: str, args) -> list[tuple[int, float]]:
    from serl_launcher.runtime import ActorConfig, LearnerConfig
    from serl_launcher.runtime.sync import run_sync
    from serl_launcher.utils.launcher import make_env, make_sac_agent

    env_id = f"KinematicReach-{variant}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=KinematicReach, max_episode_steps=300,
                     kwargs={"offset_multiplier": VARIANTS[variant]})
    env, eval_env = make_env(env_id, seed=args.seed), make_env(env_id, seed=args.seed + 1)
    agent = make_sac_agent(args.seed, env.observation_space.sample(), env.action_space.sample(), discount=0.97,
                           critic_ensemble_size=2, critic_subsample_size=None)
    curve, started = [], time.monotonic()

    def progress(env_steps, metrics):
        if "eval/success_rate" in metrics:
            curve.append((env_steps, metrics["eval/success_rate"]))
            print(f"  {variant:12s} {env_steps:>6} env steps, {(time.monotonic() - started) / 60:4.1f} min: "
                  f"eval success {metrics['eval/success_rate']:.1f}, return {metrics['eval/return']:.1f}", flush=True)

    run_sync(LearnerConfig(target_utd=4.7, training_starts=1000, seed=args.seed),
             ActorConfig(max_steps=args.steps, random_steps=1000, eval_period=args.eval_period, eval_episodes=10,
                         seed=args.seed),
             agent, env, eval_env, progress)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--eval_period", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    results = {variant: train(variant, args) for variant in args.variants}
    print(f"\n# {time.strftime('%Y-%m-%d %H:%M')}, seed {args.seed}: first evaluation at >= 90% success")
    for variant, curve in results.items():
        reached = [steps for steps, success in curve if success >= 0.9]
        best = max((success for _, success in curve), default=0.0)
        print(f"{variant:12s} " + (f"{reached[0]:>6} env steps" if reached else f"not within {args.steps} "
                                   f"env steps (best {best:.1f})"))


if __name__ == "__main__":
    main()
