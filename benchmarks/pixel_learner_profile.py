"""Where the pixel learner's update_high_utd time goes (ours only; a profiling aid, not a comparison).

Times, each jitted alone and blocked on, in one process (median of --repeats after a compiling call):
  - update_high_utd as the library runs it (critic steps under lax.scan, then the actor step);
  - the same update with the critic steps unrolled (lax.scan(unroll=True)): identical arithmetic.
    On XLA:CPU the rolled loop is many times slower for conv encoders: inside the while loop the
    gradient convolutions keep their transposed forms (dim_labels f01b_i01o->01bf for dW,
    b01f_01oi->b01f for dX) instead of being rewritten into the b01f_01io->b01f form of the fast
    convolution path (`--hlo` prints the forms found in both);
  - pieces: augmentation (random shifts of the whole batch), one critic step on a minibatch, the
    critic's encoder forward, and forward + backward, on a minibatch, the ensemble heads alone
    (forward + backward from features), one actor + temperature step on the whole batch.
The foreign load (cores other processes used) is printed per line: on a busy machine, compare lines
of similar load only.

    python benchmarks/pixel_learner_profile.py --encoder small --minibatch 64
    python benchmarks/pixel_learner_profile.py --encoder resnet --minibatch 16 --hlo
"""
from __future__ import annotations

import argparse
import collections
import re
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's serl_launcher

import numpy as np


def _busy_s() -> float:
    fields = open("/proc/stat").readline().split()
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7)) / 100


def _own_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(label: str, fn, *args, repeats: int) -> float:
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times, busy0, own0, wall0 = [], _busy_s(), _own_s(), time.perf_counter()
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    wall = time.perf_counter() - wall0
    foreign = ((_busy_s() - busy0) - (_own_s() - own0)) / wall
    median = statistics.median(times)
    print(f"  {label:<52s} {median * 1e3:10.1f} ms   (first call {first:5.1f} s, foreign load {max(0, foreign):.2f} cores)")
    sys.stdout.flush()
    return median


def conv_forms(hlo: str) -> collections.Counter:
    """Convolution window / dimension-label forms in an optimized HLO text."""
    forms = re.findall(r"convolution\([^)]*\), window=\{([^}]*)\}, dim_labels=([^ ,]*)", hlo)
    return collections.Counter(f"{labels} {window}" for window, labels in forms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="small", choices=["small", "resnet", "resnet-pretrained"])
    parser.add_argument("--minibatch", type=int, default=64, help="rows per critic step (the issue's shape: 256)")
    parser.add_argument("--utd", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip_rolled", action="store_true", help="do not time the library's (rolled) update")
    parser.add_argument("--hlo", action="store_true", help="print the convolution forms of the rolled and unrolled update")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import jax
    import learner_throughput as lt
    from serl_launcher.agents.continuous import sac

    agent = lt._our_drq_agent(args.encoder, {})
    batch_size = args.minibatch * args.utd
    batch = jax.block_until_ready(jax.device_put(lt.random_pixel_batch("ours", batch_size, seed=1)))
    minibatch = jax.tree.map(lambda x: x[: args.minibatch], batch)
    critic_only, actor_only = frozenset({"critic"}), frozenset({"actor", "temperature"})

    def unrolled_update(agent, batch):
        batch = agent.augment_batch(batch, agent._augment_key())
        parts = jax.tree.map(lambda x: x.reshape((args.utd, args.minibatch) + x.shape[1:]), batch)
        agent, _ = jax.lax.scan(lambda a, m: sac._update(a, m, critic_only), agent, parts, unroll=True)
        return sac._update(agent, batch, actor_only)[0]

    def rolled_update(agent, batch):
        return agent.update_high_utd(batch, utd_ratio=args.utd)[0]

    nets, critic_params = agent.networks, agent.state.params["critic"]
    encode = jax.jit(lambda p, o: nets.critic_def.apply({"params": p}, o, method="encode"))
    encode_grad = jax.jit(jax.grad(lambda p, o: nets.critic_def.apply({"params": p}, o, method="encode").sum()))
    heads = {k: v for k, v in critic_params.items() if k != "encoder"}
    features = encode(critic_params, minibatch["observations"])
    heads_grad = jax.jit(jax.grad(
        lambda h, f, a: nets.critic_def.apply({"params": h}, f, a, method="q_values").sum()))

    print(f"pixel learner profile: encoder {args.encoder}, batch {batch_size} = {args.minibatch} x {args.utd}, "
          f"2 cameras 128x128x3 + state 7, ensemble 10 / subsample 2, jax {jax.__version__} "
          f"{jax.default_backend()}, median of {args.repeats}")
    if not args.skip_rolled:
        timed("update_high_utd (library: critic steps under lax.scan)", jax.jit(rolled_update), agent, batch,
              repeats=args.repeats)
    timed("the same, critic steps unrolled", jax.jit(unrolled_update), agent, batch, repeats=args.repeats)
    timed(f"augmentation of the batch ({batch_size} rows)",
          jax.jit(lambda a, b: a.augment_batch(b, a._augment_key())), agent, batch, repeats=args.repeats)
    timed(f"one critic step ({args.minibatch} rows, no augmentation)",
          jax.jit(lambda a, b: sac._update(a, b, critic_only)[0]), agent, minibatch, repeats=args.repeats)
    timed(f"  critic encoder forward ({args.minibatch} rows x 2 cameras)", encode, critic_params,
          minibatch["observations"], repeats=args.repeats)
    timed(f"  critic encoder forward + backward ({args.minibatch} rows)", encode_grad, critic_params,
          minibatch["observations"], repeats=args.repeats)
    timed(f"  ensemble heads forward + backward ({args.minibatch} rows, 10 members)", heads_grad, heads, features,
          minibatch["actions"], repeats=args.repeats)
    timed(f"actor + temperature step ({batch_size} rows)",
          jax.jit(lambda a, b: sac._update(a, b, actor_only)[0]), agent, batch, repeats=args.repeats)
    if args.hlo:
        for label, fn in (("rolled", rolled_update), ("unrolled", unrolled_update)):
            forms = conv_forms(jax.jit(fn).lower(agent, batch).compile().as_text())
            print(f"convolution forms, {label} update:")
            for form, count in sorted(forms.items()):
                print(f"  {count:4d} x {form}")


if __name__ == "__main__":
    main()
