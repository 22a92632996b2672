"""FrankaEnv's control loop at 50 Hz against franky-sim: how well it keeps time.

    python benchmarks/robot_env_loop.py [--steps 3000] [--policy_ms 0] [--robot_ip IP]

Starts franky-sim (a MuJoCo FR3 serving the libfranka protocol) on a loopback address, makes
`FrankaReach-v0` through gymnasium and steps it with a small random policy (uniform +-0.3 per axis,
i.e. up to 1.5 cm/s, gripper open), resetting when an episode ends (reset time is not counted).
`--policy_ms` spends that long per step before calling step(), like a policy's inference.
`--robot_ip` skips the simulator and drives the arm at that address instead (a real arm: the same
random policy inside the default workspace; keep the user stop at hand).

Prints: control period p50 / p99 / max, missed deadlines per 1000 steps, the slack (time left
before each deadline when the step was ready to sleep: the loop's headroom), and the wall time of
a step() call (which includes sleeping to the deadline) and of its work without the sleep. The
machines are shared: the load average is printed; with a load above ~2 on 2 cores the figures are
disturbed, and franky-sim's own Python 1 kHz loop then runs slower than real time.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np

import franka_env  # noqa: F401  (registers the envs)
from franka_env import ControlConfig


def start_franky_sim() -> tuple[subprocess.Popen, str]:
    executable = shutil.which("franky-sim") or os.path.join(os.path.dirname(sys.executable), "franky-sim")
    process = subprocess.Popen([executable, "-s", "mujoco"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in process.stdout:
        match = re.search(r"Connect to the server using '([\d.]+)'", line)
        if match:
            return process, match.group(1)
    raise RuntimeError("franky-sim exited before it was ready (pip install -e '.[robot-test]')")


def percentiles(values_ms) -> str:
    values = np.asarray(values_ms)
    return f"p50 {np.percentile(values, 50):.3f}  p99 {np.percentile(values, 99):.3f}  max {values.max():.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="env steps to time")
    parser.add_argument("--policy_ms", type=float, default=0.0, help="time spent 'thinking' before each step")
    parser.add_argument("--robot_ip", default=None, help="drive this arm instead of starting franky-sim")
    args = parser.parse_args()

    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print(f"load average (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}, cpus: {os.cpu_count()}")
    sim, ip = (None, args.robot_ip) if args.robot_ip else start_franky_sim()
    env = gym.make("franka_env:FrankaReach-v0", robot_ip=ip, realtime_ignore=sim is not None,
                   control=ControlConfig(reset_dynamics_factor=0.5 if sim else 0.2))
    rng = np.random.default_rng(0)
    step_ms, work_ms = [], []
    try:
        env.reset(seed=0)
        rate = env.unwrapped.control_stats
        for _ in range(args.steps):
            action = np.r_[rng.uniform(-0.3, 0.3, 3), -1.0].astype(np.float32)
            if args.policy_ms:
                time.sleep(args.policy_ms / 1e3)
            start = time.perf_counter()
            _, _, terminated, truncated, info = env.step(action)
            elapsed = (time.perf_counter() - start) * 1e3
            step_ms.append(elapsed)
            work_ms.append(elapsed - max(info["control"]["slack_ms"], 0.0))
            if terminated or truncated:
                env.reset()
        stats = rate()
    finally:
        env.close()
        if sim is not None:
            sim.terminate()
            sim.wait()

    print(f"target: {stats['target_period_ms']:.1f} ms period (50 Hz), {args.steps} steps, policy {args.policy_ms} ms")
    print(f"control period: p50 {stats['period_ms_p50']:.3f}  p99 {stats['period_ms_p99']:.3f}  "
          f"max {stats['period_ms_max']:.3f} ms  (jitter p99 {stats['jitter_ms_p99']:.3f} ms)")
    print(f"missed deadlines: {stats['missed_deadlines']} = {1000 * stats['missed_deadlines'] / stats['ticks']:.2f} "
          f"per 1000 steps")
    print(f"slack before the deadline: p50 {stats['slack_ms_p50']:.2f}  p1 {stats['slack_ms_p1']:.2f} ms")
    print(f"step() call, wall time incl. sleep to the deadline: {percentiles(step_ms)}")
    print(f"step() work without the sleep: {percentiles(work_ms)}")


if __name__ == "__main__":
    main()
