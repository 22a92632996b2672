"""Learner throughput (SACAgent.update_high_utd calls/s) and actor latency, compared with SERL.

Configuration: `make_sac_agent`'s default (obs 10, action 4, actor and critic MLPs [256, 256]
tanh + LayerNorm, critic ensemble 10 with the target a min over 2 subsampled members), batch
2048 = 256 x 8, utd_ratio 8. Measured in steady state, after compilation:
  1. update_high_utd calls/s with the batch already on the device (and critic gradient steps/s:
     8 per call);
  2. calls/s including sampling 2048 transitions from a ReplayBuffer of random transitions and
     the copy to the device, both as `jax.device_put(buffer.sample(2048))` before each call and
     through `buffer.get_iterator(2048)` (sampled and copied ahead by a background thread);
  3. the same as 1. for plain SAC (ensemble 2, no subsampling);
  4. sample_actions latency for one observation, including `np.asarray(jax.device_get(...))`.
The throughput repeats of 1-3 are interleaved, so that load from other processes affects them
alike; each figure is a median over repeats. SERL's figures are constants from
../shared/baselines.md, measured there on a machine like this one (2 cores), not in this run.

    python benchmarks/learner_throughput.py            # ~1 minute
    python benchmarks/learner_throughput.py --quick    # ~20 s
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import gymnasium as gym
import jax
import numpy as np

from serl_launcher.data.replay_buffer import ReplayBuffer
from serl_launcher.utils.launcher import make_sac_agent

OBS_DIM, ACTION_DIM = 10, 4
BATCH_SIZE, UTD_RATIO = 2048, 8
# SERL on a machine like this one (../shared/baselines.md).
SERL_CALLS_PER_S = {10: 3.9, 2: 15.7}
SERL_SAMPLE_ACTIONS_US = {"p50": 139.0, "p99": 201.0}


def random_transitions(n: int, rng: np.random.Generator) -> dict:
    return {
        "observations": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        "next_observations": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, ACTION_DIM)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "masks": (rng.uniform(size=n) > 0.05).astype(np.float32),
        "dones": rng.uniform(size=n) < 0.05,
    }


def filled_replay_buffer(size: int, seed: int) -> ReplayBuffer:
    observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
    buffer = ReplayBuffer(observation_space, action_space, capacity=size, seed=seed)
    buffer.batch_insert(random_transitions(size, np.random.default_rng(seed)))
    return buffer


def make_agent(ensemble_size: int):
    return make_sac_agent(0, np.zeros(OBS_DIM, np.float32), np.zeros(ACTION_DIM, np.float32),
                          critic_ensemble_size=ensemble_size,
                          critic_subsample_size=2 if ensemble_size > 2 else None)


class UpdateLoop:
    """A learner's loop: `agent.update_high_utd(next_batch())`, timed in repeats of `calls` calls."""

    def __init__(self, agent, next_batch):
        self.agent, self.next_batch = agent, next_batch
        start = time.perf_counter()
        self._step()
        jax.block_until_ready(self.agent.state)
        self.first_call_s = time.perf_counter() - start  # tracing + compilation + one call
        self._step()  # a second call: allocations and caches warm
        jax.block_until_ready(self.agent.state)
        self.calls_per_s: list[float] = []

    def _step(self) -> None:
        self.agent, _ = self.agent.update_high_utd(self.next_batch(), utd_ratio=UTD_RATIO)

    def repeat(self, calls: int) -> None:
        start = time.perf_counter()
        for _ in range(calls):
            self._step()
        jax.block_until_ready(self.agent.state)
        self.calls_per_s.append(calls / (time.perf_counter() - start))

    @property
    def median(self) -> float:
        return statistics.median(self.calls_per_s)


def sample_actions_latency_us(agent, calls: int, seed: int) -> dict:
    """Latency of one `sample_actions` call for a single observation, copied back to numpy."""
    rng = np.random.default_rng(seed)
    observations = rng.normal(size=(calls, OBS_DIM)).astype(np.float32)
    keys = list(jax.random.split(jax.random.PRNGKey(seed), calls))
    for i in range(min(calls, 100)):  # compile and warm up
        np.asarray(jax.device_get(agent.sample_actions(observations[i], seed=keys[i])))
    latencies = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        np.asarray(jax.device_get(agent.sample_actions(observations[i], seed=keys[i])))
        latencies[i] = time.perf_counter() - start
    return {"p50": np.percentile(latencies, 50) * 1e6, "p99": np.percentile(latencies, 99) * 1e6,
            "max": latencies.max() * 1e6}


def print_throughput(label: str, loop: UpdateLoop) -> None:
    rate, serl = loop.median, SERL_CALLS_PER_S[loop.agent.config.critic_def.members]
    spread = f"{min(loop.calls_per_s):.2f}-{max(loop.calls_per_s):.2f}"
    print(f"  {label:<46s} {rate:7.2f} {1e3 / rate:8.1f} {rate * UTD_RATIO:14.0f} {spread:>13s}   "
          f"{rate / serl:.2f}x ({serl} calls/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls per repeat, a smaller buffer")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved throughput repeats (>= 5)")
    parser.add_argument("--calls", type=int, default=None, help="update_high_utd calls per repeat (default 10, quick 3)")
    parser.add_argument("--buffer-size", type=int, default=None, help="replay buffer size (default 200000, quick 20000)")
    parser.add_argument("--latency-calls", type=int, default=None, help="sample_actions calls (default 2000, quick 500)")
    args = parser.parse_args()
    calls = args.calls or (3 if args.quick else 10)
    buffer_size = args.buffer_size or (20_000 if args.quick else 200_000)
    latency_calls = args.latency_calls or (500 if args.quick else 2000)
    if args.repeats < 5 or min(calls, buffer_size, latency_calls) < 1:
        parser.error("--repeats must be >= 5, and --calls, --buffer-size, --latency-calls >= 1")

    print(__doc__.splitlines()[0])
    print(f"make_sac_agent defaults, obs {OBS_DIM}, action {ACTION_DIM}, batch {BATCH_SIZE} = "
          f"{BATCH_SIZE // UTD_RATIO} x {UTD_RATIO}, jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"{os.cpu_count()} CPUs")
    load_at_start = os.getloadavg()
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*load_at_start))

    buffer = filled_replay_buffer(buffer_size, seed=0)
    on_device = jax.device_put(random_transitions(BATCH_SIZE, np.random.default_rng(1)))
    agent = make_agent(10)
    loops = {
        "ensemble 10, batch on device": UpdateLoop(agent, lambda: on_device),
        "ensemble 10, device_put(buffer.sample(2048))": UpdateLoop(
            agent, lambda: jax.device_put(buffer.sample(BATCH_SIZE))),
    }
    iterator = buffer.get_iterator(BATCH_SIZE)
    loops["ensemble 10, buffer.get_iterator(2048)"] = UpdateLoop(agent, lambda: next(iterator))
    loops["ensemble 2 (plain SAC), batch on device"] = UpdateLoop(make_agent(2), lambda: on_device)
    for _ in range(args.repeats):
        for loop in loops.values():
            loop.repeat(calls)
    iterator.close()
    latency = sample_actions_latency_us(agent, latency_calls, seed=2)

    print(f"\nupdate_high_utd, median of {args.repeats} interleaved repeats x {calls} calls:")
    print(f"  {'':<46s} {'calls/s':>7s} {'ms/call':>8s} {'critic steps/s':>14s} {'calls/s range':>13s}   vs SERL")
    for label, loop in loops.items():
        print_throughput(label, loop)
    first_10 = next(iter(loops.values())).first_call_s
    first_2 = loops["ensemble 2 (plain SAC), batch on device"].first_call_s
    print(f"  first call including compilation: {first_10:.1f} s (ensemble 10), {first_2:.1f} s (ensemble 2); "
          f"SERL ~4 s")
    print(f"\nsample_actions, one observation, incl. np.asarray(jax.device_get(...)), {latency_calls} calls:")
    print(f"  p50 {latency['p50']:.0f} us, p99 {latency['p99']:.0f} us, max {latency['max']:.0f} us   "
          f"(SERL p50 {SERL_SAMPLE_ACTIONS_US['p50']:.0f} us, p99 {SERL_SAMPLE_ACTIONS_US['p99']:.0f} us: "
          f"{SERL_SAMPLE_ACTIONS_US['p50'] / latency['p50']:.1f}x and "
          f"{SERL_SAMPLE_ACTIONS_US['p99'] / latency['p99']:.1f}x faster)")
    print("\nSERL figures: ../shared/baselines.md, measured on a machine like this one (2 cores), not in this run.")
    load_at_end = os.getloadavg()
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*load_at_end))
    if load_at_start[0] > 1 or load_at_end[0] > os.cpu_count() + 1:  # this run alone adds ~2 by its end
        print("  (other processes were using the CPUs: expect lower figures than on an idle machine)")


if __name__ == "__main__":
    main()
