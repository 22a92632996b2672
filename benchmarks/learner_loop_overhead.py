"""Learner loop overhead: run_learner's updates/s over bare update_high_utd calls/s, in the same process.

The learner loop adds sampling (a prefetch thread), demo mixing, publishing the policy (at most every
publish_period_s, handed to the transport's publisher thread), metrics rows and the throttle bookkeeping around
`update_high_utd`. This measures what that costs: in one process, alternately,
  bare: `agent.update_high_utd(batch)` on a device-resident batch, back to back, blocked at the end
        of each window (as the loop's steady state, which never blocks per update);
  loop: `run_learner` on a replay buffer preloaded with the shipped demos (training_starts 0, no
        actor), its rate read from the metrics rows (learner/updates_per_s per log window).
Configuration: SERL's default agent (ensemble 10 / subsample 2, [256, 256]), batch 256 x 8.
Target: overhead under 5% on this CPU.

    python benchmarks/learner_loop_overhead.py            # 5 rounds of 40-update windows
    python benchmarks/learner_loop_overhead.py --quick
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMOS = os.path.join(REPO, "demos", "pick_cube_20_scripted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=40, help="updates per window")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 10 updates")
    parser.add_argument("--ensemble", type=int, default=10, choices=[10, 2])
    args = parser.parse_args()
    rounds, updates = (2, 10) if args.quick else (args.rounds, args.updates)

    from same_run import cpu_model, free_ports

    import franka_sim  # noqa: F401
    from serl_launcher.data.rlds import read_rlds_dataset, stack_transitions
    from serl_launcher.runtime import LearnerConfig, run_learner
    from serl_launcher.utils.launcher import make_env, make_sac_agent, make_trainer_config

    print(f"# {__doc__.splitlines()[0]}\n# {time.strftime('%Y-%m-%d %H:%M')} {cpu_model()}, "
          f"{os.cpu_count()} CPUs, jax {jax.__version__} on {jax.default_backend()}, python {platform.python_version()}")
    env = make_env("franka_sim:PandaPickCube-v0")
    subsample = 2 if args.ensemble == 10 else None

    def agent():
        return make_sac_agent(0, env.observation_space.sample(), env.action_space.sample(),
                              critic_ensemble_size=args.ensemble, critic_subsample_size=subsample)

    demos = stack_transitions(read_rlds_dataset(DEMOS))
    rng = np.random.default_rng(0)
    batch = jax.device_put({key: value[rng.integers(0, len(demos["rewards"]), 2048)] for key, value in demos.items()})
    bare_agent = agent()
    bare_agent, _ = bare_agent.update_high_utd(batch, utd_ratio=8)  # compile (shared with the loop's agent)
    jax.block_until_ready(bare_agent.state)

    def bare() -> float:
        nonlocal bare_agent
        start = time.perf_counter()
        for _ in range(updates):
            bare_agent, _ = bare_agent.update_high_utd(batch, utd_ratio=8)
        jax.block_until_ready(bare_agent.state)
        return updates / (time.perf_counter() - start)

    def loop() -> float:
        rates = []
        config = LearnerConfig(batch_size=256, utd_ratio=8, training_starts=0, max_steps=2 * updates,
                               demos_path=DEMOS, log_period=updates, replay_buffer_capacity=10_000)
        trainer = make_trainer_config(*free_ports(2), bind_address="127.0.0.1")
        run_learner(config, agent(), env.observation_space, env.action_space, trainer,
                    progress_fn=lambda steps, row: rates.append(row["learner/updates_per_s"])
                    if "learner/updates_per_s" in row else None, stop=threading.Event())
        return rates[-1]  # the second window: the first includes the loop's start

    results = []
    for round_ in range(rounds):
        b, lp = bare(), loop()
        results.append((b, lp))
        print(f"round {round_ + 1}: bare {b:.2f} updates/s, learner loop {lp:.2f} updates/s, "
              f"loop/bare {lp / b:.3f}  (load {os.getloadavg()[0]:.1f})", flush=True)
    ratios = [lp / b for b, lp in results]
    print(f"\nensemble {args.ensemble}, batch 256 x 8, {updates}-update windows, {rounds} rounds:")
    print(f"  bare update_high_utd   median {statistics.median(b for b, _ in results):.2f} updates/s")
    print(f"  run_learner loop       median {statistics.median(lp for _, lp in results):.2f} updates/s")
    print(f"  loop/bare              median {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}):"
          f" overhead {100 * (1 - statistics.median(ratios)):.1f}% (target < 5%)")


if __name__ == "__main__":
    main()
