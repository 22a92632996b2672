"""Learner throughput (SACAgent.update_high_utd calls/s) and actor latency, ours vs SERL in the same run.

Configuration: SERL's `make_sac_agent` (obs 10, action 4, actor and critic MLPs [256, 256] tanh +
LayerNorm), batch 2048 = 256 x 8, utd_ratio 8, two critic setups:
  - ensemble 10, target a min over 2 subsampled members (SERL's default);
  - ensemble 2, no subsampling (plain SAC); SERL's agent built with SACAgent.create_states and
    the keyword arguments of its make_sac_agent except critic_ensemble_size=2,
    critic_subsample_size=None.
Ours: serl_launcher.utils.launcher.make_sac_agent(0, obs, act, critic_ensemble_size=...,
critic_subsample_size=..., **agent_kwargs). Each (round, setup, side) is a fresh process (see
same_run.py); both sides time the same way:
  1. first update_high_utd call, including tracing and compilation (blocked on the agent);
  2. one more call, then `--repeats` repeats of `--calls` calls, each call followed by
     jax.block_until_ready(agent) (as SERL's learner loop does), the batch already on the device;
     the process reports the median calls/s of its repeats;
  3. in the ensemble-10 process: sample_actions for one observation, converted with
     np.asarray(jax.device_get(...)) as SERL's actor does, `--latency_calls` calls after 100
     warm-up calls: p50 and p99.

    python benchmarks/learner_throughput.py                     # 5 rounds, ~5-10 minutes on 2 cores
    python benchmarks/learner_throughput.py --quick             # 2 rounds, smoke test
    python benchmarks/learner_throughput.py --ours_tree before=/tmp/old-checkout   # + an older commit

Rows of ours: the default agent (actor_loss_gradient "auto": the chunked dQ/da on CPU) and
"autodiff" (the plain autodiff actor loss), so the hand-written gradient is always judged against
autodiff in the same run; --variant adds more.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import same_run
from same_run import Figure, Group

OBS_DIM, ACTION_DIM = 10, 4
BATCH_SIZE, UTD_RATIO = 2048, 8
LATENCY_WARMUP = 100


def random_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "observations": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        "next_observations": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, ACTION_DIM)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "masks": (rng.uniform(size=n) > 0.05).astype(np.float32),
        "dones": rng.uniform(size=n) < 0.05,
    }


def _serl_agent(ensemble: int):
    """SERL's agent exactly as its make_sac_agent builds it (ensemble 10) or with a plain-SAC critic."""
    import flax.linen as nn
    import jax
    from serl_launcher.agents.continuous.sac import SACAgent
    from serl_launcher.utils.launcher import make_sac_agent

    obs, act = np.zeros(OBS_DIM, np.float32), np.zeros(ACTION_DIM, np.float32)
    if ensemble == 10:
        return make_sac_agent(0, obs, act)
    if ensemble != 2:
        raise ValueError("SERL's side is measured with ensemble 10 (its default) or 2 (plain SAC)")
    network_kwargs = {"activations": nn.tanh, "use_layer_norm": True, "hidden_dims": [256, 256]}
    return SACAgent.create_states(
        jax.random.PRNGKey(0), obs, act,
        policy_kwargs={"tanh_squash_distribution": True, "std_parameterization": "exp", "std_min": 1e-5, "std_max": 5},
        critic_network_kwargs=dict(network_kwargs), policy_network_kwargs=dict(network_kwargs),
        temperature_init=1e-2, discount=0.99, backup_entropy=False,
        critic_ensemble_size=2, critic_subsample_size=None,
    )


def _our_agent(ensemble: int, agent_kwargs: dict):
    from serl_launcher.utils.launcher import make_sac_agent

    kwargs = {"critic_ensemble_size": ensemble, "critic_subsample_size": 2 if ensemble > 2 else None,
              **agent_kwargs}
    return make_sac_agent(0, np.zeros(OBS_DIM, np.float32), np.zeros(ACTION_DIM, np.float32), **kwargs)


def role_learner(meter, side: str, ensemble: int, repeats: int, calls: int, latency_calls: int,
                 agent_kwargs: dict | None = None) -> dict:
    """One side's learner (and actor latency) in this fresh process."""
    import jax

    if side == "peer":
        if agent_kwargs:
            raise ValueError("agent_kwargs are for our agent only")
        agent = _serl_agent(ensemble)

        def sample(agent, obs, key):
            return agent.sample_actions(observations=obs, seed=key, argmax=False)
    else:
        agent = _our_agent(ensemble, agent_kwargs or {})

        def sample(agent, obs, key):
            return agent.sample_actions(obs, seed=key)

    batch = jax.block_until_ready(jax.device_put(random_batch(BATCH_SIZE, seed=1)))
    n_params = sum(x.size for x in jax.tree.leaves(agent.state.params))
    with meter:
        start = time.perf_counter()
        agent, _ = agent.update_high_utd(batch, utd_ratio=UTD_RATIO)
        jax.block_until_ready(agent)
        first_call_s = time.perf_counter() - start
        agent, _ = agent.update_high_utd(batch, utd_ratio=UTD_RATIO)
        jax.block_until_ready(agent)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                agent, _ = agent.update_high_utd(batch, utd_ratio=UTD_RATIO)
                jax.block_until_ready(agent)
            rates.append(calls / (time.perf_counter() - start))
    result = {
        "calls_per_s": statistics.median(rates),
        "calls_per_s_repeats": rates,
        "first_call_s": first_call_s,
        "params": int(n_params),
    }
    if latency_calls:
        rng = np.random.default_rng(2)
        observations = rng.normal(size=(LATENCY_WARMUP + latency_calls, OBS_DIM)).astype(np.float32)
        keys = list(jax.random.split(jax.random.PRNGKey(2), LATENCY_WARMUP + latency_calls))
        latencies = np.empty(latency_calls)
        with meter:
            for i in range(LATENCY_WARMUP):
                np.asarray(jax.device_get(sample(agent, observations[i], keys[i])))
            for i in range(latency_calls):
                j = LATENCY_WARMUP + i
                start = time.perf_counter()
                np.asarray(jax.device_get(sample(agent, observations[j], keys[j])))
                latencies[i] = time.perf_counter() - start
        result.update(sample_p50_us=float(np.percentile(latencies, 50) * 1e6),
                      sample_p99_us=float(np.percentile(latencies, 99) * 1e6),
                      sample_max_us=float(latencies.max() * 1e6))
    return result


def parse_variant(text: str) -> tuple[str, dict]:
    label, sep, kwargs = text.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"expected LABEL=JSON, got {text!r}")
    try:
        parsed = json.loads(kwargs)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{label}: invalid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"{label}: JSON must be an object of make_sac_agent kwargs")
    return label, parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    same_run.add_arguments(parser)
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per process (default 5, quick 2)")
    parser.add_argument("--calls", type=int, default=None, help="update_high_utd calls per repeat (default 6, quick 2)")
    parser.add_argument("--latency_calls", type=int, default=None,
                        help="sample_actions calls after warm-up (default 2000, quick 300)")
    parser.add_argument("--ensembles", type=int, nargs="+", default=[10, 2], choices=[10, 2],
                        help="critic ensemble sizes to measure (10: SERL's default, subsample 2; 2: plain SAC)")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[], metavar="LABEL=JSON",
                        help="an extra row of ours: make_sac_agent kwargs as a JSON object, e.g. "
                             "'chunked={\"actor_loss_gradient\": \"chunked\"}' (repeatable)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    calls = args.calls or (2 if args.quick else 6)
    latency_calls = args.latency_calls if args.latency_calls is not None else (300 if args.quick else 2000)
    if min(repeats, calls) < 1 or latency_calls < 0:
        parser.error("--repeats and --calls must be >= 1, --latency_calls >= 0")

    groups = []
    for ensemble in dict.fromkeys(args.ensembles):
        setup = "ens 10/2" if ensemble == 10 else "ens 2"
        figures = [Figure("calls_per_s", f"update_high_utd calls/s, {setup}", True, short="calls/s"),
                   Figure("first_call_s", f"first call incl. compile s, {setup}", False, short="first call s")]
        latency = latency_calls if ensemble == args.ensembles[0] else 0
        if latency:
            figures += [Figure("sample_p50_us", "sample_actions to numpy p50 us", False, ".0f", "sample_actions p50 us"),
                        Figure("sample_p99_us", "sample_actions to numpy p99 us", False, ".0f", "p99 us")]
        groups.append(Group(f"ensemble {ensemble}", "learner",
                            {"ensemble": ensemble, "repeats": repeats, "calls": calls, "latency_calls": latency},
                            tuple(figures)))
    default_variants = [("autodiff", {"actor_loss_gradient": "autodiff"})]
    variants = [(label, {"agent_kwargs": kwargs}) for label, kwargs in default_variants + args.variant]
    same_run.run(
        __doc__.splitlines()[0], "learner_throughput", groups, args, peer_name="SERL", variants=variants,
        notes=[f"obs {OBS_DIM}, action {ACTION_DIM}, batch {BATCH_SIZE} = {BATCH_SIZE // UTD_RATIO} x {UTD_RATIO}, "
               f"per process: first call, 1 warm call, {repeats} x {calls} blocked calls"
               + (f", {latency_calls} sample_actions calls" if latency_calls else "")],
    )


if __name__ == "__main__":
    main()
