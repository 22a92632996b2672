#!/usr/bin/env python3
"""Candidates for the learner's next factor on CPU, against the current build, in the same run.

Each round runs every variant once, each in a fresh process (compile, 3 warm-up calls, then
--calls timed `update_high_utd` calls of learner_throughput.py's shape: ensemble 10 / subsample 2,
batch 256 x 8). Prints calls/s per round and each variant's median ratio to "fp32" with its range.
    fp32          the agent as it ships
    bf16_critic   the critic ensemble's matmuls in bfloat16 with float32 accumulation
                  (jnp.matmul(..., preferred_element_type=float32)); everything else float32
    xla_legacy    XLA_FLAGS=--xla_cpu_use_thunk_runtime=false (XLA:CPU's previous runtime)
    split2        each ensemble layer as 2 independent matmuls of 5 members (that XLA may run
                  concurrently, one per core) instead of one batched matmul of 10
    split2_st     split2 with XLA_FLAGS=--xla_cpu_multi_thread_eigen=false (each matmul on one thread)
A variant earns a place in the agent only if it pays here (and then leaves learning unaffected).

    python benchmarks/learner_cpu_variants.py --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

VARIANTS = {"fp32": {}, "bf16_critic": {}, "xla_legacy": {"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=false"},
            "split2": {}, "split2_st": {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}}


def child(variant: str, calls: int) -> None:
    import jax
    import jax.numpy as jnp

    if variant == "bf16_critic":
        from serl_launcher.networks import mlp

        def bf16_ensemble_dense(x, kernel, bias):
            if x.ndim == 2:
                x = jnp.broadcast_to(x, (kernel.shape[0],) + x.shape)
            product = jnp.matmul(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16),
                                 preferred_element_type=jnp.float32)
            return product + bias[:, None, :]

        mlp.ensemble_dense = bf16_ensemble_dense  # EnsembleDense looks it up at trace time
    if variant.startswith("split2"):
        from serl_launcher.networks import mlp

        shipped = mlp.ensemble_dense

        def split_ensemble_dense(x, kernel, bias):
            members = kernel.shape[0]
            if members < 4:  # the 2 target members stay one matmul
                return shipped(x, kernel, bias)
            half = members // 2
            parts = [shipped(x if x.ndim == 2 else x[lo:hi], kernel[lo:hi], bias[lo:hi])
                     for lo, hi in ((0, half), (half, members))]
            return jnp.concatenate(parts, axis=0)

        mlp.ensemble_dense = split_ensemble_dense
    import learner_throughput as shapes

    agent = shapes._our_agent(10, {})
    batch = jax.block_until_ready(jax.device_put(shapes.random_batch(shapes.BATCH_SIZE, seed=1)))
    for _ in range(3):
        agent, info = agent.update_high_utd(batch, utd_ratio=shapes.UTD_RATIO)
        jax.block_until_ready(info)
    started = time.perf_counter()
    for _ in range(calls):
        agent, info = agent.update_high_utd(batch, utd_ratio=shapes.UTD_RATIO)
        jax.block_until_ready(info)
    print(json.dumps({"calls_per_s": calls / (time.perf_counter() - started)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.calls)
    rates = {variant: [] for variant in VARIANTS}
    for round_index in range(args.rounds):
        for variant, env in VARIANTS.items():
            output = subprocess.run([sys.executable, __file__, "--child", variant, "--calls", str(args.calls)],
                                    env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
            rates[variant].append(json.loads(output.strip().splitlines()[-1])["calls_per_s"])
            print(f"round {round_index + 1}: {variant:12s} {rates[variant][-1]:.2f} calls/s", flush=True)
    print(f"\n# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, ensemble 10, batch 256 x 8")
    base = np.array(rates["fp32"])
    for variant, values in rates.items():
        ratios = np.array(values) / base
        print(f"{variant:12s} median {np.median(values):.2f} calls/s, {np.median(ratios):.2f}x fp32 "
              f"({ratios.min():.2f}-{ratios.max():.2f})")


if __name__ == "__main__":
    main()
