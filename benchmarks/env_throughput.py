"""Throughput of the franka_sim environments: state env step() calls/s and vision env frames/s.

    MUJOCO_GL=egl python benchmarks/env_throughput.py [--steps 5000] [--repeats 5]

State env: random actions, no rendering, `gym.make("PandaPickCube-v0")` with its default
wrappers, resetting when an episode ends (reset time is measured, not counted in steps/s).
It is compared with SERL's franka_sim PandaPickCube-v0 under the same protocol, ~390 env
steps/s: the baseline in ../shared/baselines.md, measured on a machine like this one (2 cores).
The figure is a median over repeats; the machines are shared, so expect noise.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

import franka_sim  # noqa: E402,F401  (registers the environments)
import same_run  # noqa: E402  (header: date and CPU model)

SERL_STEPS_PER_S = 390.0  # ../shared/baselines.md, SERL franka_sim PandaPickCube-v0, random actions
TARGET_STEPS_PER_S = 2000.0


def run_env(env_id: str, n_steps: int, seed: int) -> tuple[float, list[float]]:
    """Returns (step() calls per second, reset durations in seconds)."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (n_steps, 4)).astype(np.float32)
    env.reset(seed=seed)
    env.step(actions[0])  # first step: lazy renderer creation, passive checker
    step_time, resets = 0.0, []
    for action in actions:
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        step_time += time.perf_counter() - start
        if terminated or truncated:
            start = time.perf_counter()
            env.reset()
            resets.append(time.perf_counter() - start)
    env.close()
    return n_steps / step_time, resets


def physics_steps_per_s(n: int = 20000) -> float:
    env = gym.make("PandaPickCube-v0").unwrapped
    env.reset(seed=0)
    start = time.perf_counter()
    mujoco.mj_step(env.model, env.data, nstep=n)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="state env steps per repeat")
    parser.add_argument("--vision-steps", type=int, default=300, help="vision env steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if min(args.steps, args.vision_steps, args.repeats) < 1:
        parser.error("--steps, --vision-steps and --repeats must be >= 1")

    same_run.print_header(__doc__.splitlines()[0], [
        "not a same-run comparison: SERL's franka_sim is not in the peer venv, its figure below is a constant "
        "from ../shared/baselines.md (another day, maybe another CPU); do not quote the ratio as a measurement"])
    state_runs = [run_env("PandaPickCube-v0", args.steps, seed=r) for r in range(args.repeats)]
    rates = [rate for rate, _ in state_runs]
    resets = [t for _, ts in state_runs for t in ts]
    vision_rates = [run_env("PandaPickCubeVision-v0", args.vision_steps, seed=r)[0] for r in range(args.repeats)]
    rate = statistics.median(rates)
    vision = statistics.median(vision_rates)

    print(f"PandaPickCube-v0 (state), random actions, {args.steps} steps x {args.repeats} repeats:")
    print(f"  env steps/s: median {rate:,.0f}  (min {min(rates):,.0f}, max {max(rates):,.0f})")
    print(f"  reset: median {statistics.median(resets) * 1e3:.2f} ms over {len(resets)} resets")
    print(f"  raw mj_step/s of the scene: {physics_steps_per_s():,.0f}")
    print(f"  vs SERL franka_sim baseline ({SERL_STEPS_PER_S:.0f} steps/s, ../shared/baselines.md, "
          f"measured on a machine like this): {rate / SERL_STEPS_PER_S:.1f}x")
    print(f"  target >= {TARGET_STEPS_PER_S:.0f} steps/s and >= 2x baseline: "
          f"{'met' if rate >= TARGET_STEPS_PER_S and rate >= 2 * SERL_STEPS_PER_S else 'NOT met'}")
    print(f"PandaPickCubeVision-v0, 2 cameras at 128x128, {args.vision_steps} steps x {args.repeats} repeats:")
    print(f"  env steps/s: median {vision:,.0f}  (min {min(vision_rates):,.0f}, max {max(vision_rates):,.0f})")
    print(f"  frames/s (2 images per step): {2 * vision:,.0f}")


if __name__ == "__main__":
    main()
