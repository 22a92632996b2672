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

Pixel rows (issue #14; `--pixel_encoders`, default small, resnet, resnet-pretrained): the DrQ agent of
each side's make_drq_agent on {"state": 7 floats, "front", "wrist": 128x128x3 uint8}, batch 1024 =
256 x 4, utd_ratio 4 (examples/async_drq_sim), timed the same way with 3 x 1 calls per process (a
call takes seconds to minutes on 2 cores), and sample_actions on one image observation. What SERL
can run of each encoder, and how, is in PEER_PIXEL_SUPPORT below and benchmarks/README.md.

Rows of ours: the default agent (actor_loss_gradient "auto": the chunked dQ/da on CPU) and
"autodiff" (the plain autodiff actor loss), so the hand-written gradient is always judged against
autodiff in the same run (--no_autodiff_row drops it); --variant adds more.

    python benchmarks/learner_throughput.py                     # 5 rounds; the pixel rows take hours on 2 cores
    python benchmarks/learner_throughput.py --pixel_encoders    # state rows only, ~5-10 minutes on 2 cores
    python benchmarks/learner_throughput.py --quick             # 2 rounds, smoke test (pixel batch 16 = 4 x 4)
    python benchmarks/learner_throughput.py --pixel_encoders --ours_tree before=/tmp/old-checkout  # + an older commit
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


def _time_updates(meter, agent, batch, utd_ratio: int, repeats: int, calls: int):
    """First call (compilation included), one warm call, then `repeats` x `calls` calls, each blocked on."""
    import jax

    with meter:
        start = time.perf_counter()
        agent, _ = agent.update_high_utd(batch, utd_ratio=utd_ratio)
        jax.block_until_ready(agent)
        first_call_s = time.perf_counter() - start
        agent, _ = agent.update_high_utd(batch, utd_ratio=utd_ratio)
        jax.block_until_ready(agent)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                agent, _ = agent.update_high_utd(batch, utd_ratio=utd_ratio)
                jax.block_until_ready(agent)
            rates.append(calls / (time.perf_counter() - start))
    return agent, {"calls_per_s": statistics.median(rates), "calls_per_s_repeats": rates,
                   "first_call_s": first_call_s}


def _time_sampling(meter, sample, agent, observations: list, warmup: int) -> dict:
    """sample_actions for one observation at a time, converted as SERL's actor does; after `warmup` calls."""
    import jax

    keys = list(jax.random.split(jax.random.PRNGKey(2), len(observations)))
    latencies = np.empty(len(observations) - warmup)
    with meter:
        for i in range(warmup):
            np.asarray(jax.device_get(sample(agent, observations[i], keys[i])))
        for i in range(warmup, len(observations)):
            start = time.perf_counter()
            np.asarray(jax.device_get(sample(agent, observations[i], keys[i])))
            latencies[i - warmup] = time.perf_counter() - start
    return {"sample_p50_us": float(np.percentile(latencies, 50) * 1e6),
            "sample_p99_us": float(np.percentile(latencies, 99) * 1e6),
            "sample_max_us": float(latencies.max() * 1e6)}


def _sampler(side: str):
    """How each side's actor calls its agent (SERL: keyword observations, argmax=False)."""
    if side == "peer":
        return lambda agent, obs, key: agent.sample_actions(observations=obs, seed=key, argmax=False)
    return lambda agent, obs, key: agent.sample_actions(obs, seed=key)


def role_learner(meter, side: str, ensemble: int, repeats: int, calls: int, latency_calls: int,
                 agent_kwargs: dict | None = None) -> dict:
    """One side's learner (and actor latency) in this fresh process."""
    import jax

    if side == "peer":
        if agent_kwargs:
            raise ValueError("agent_kwargs are for our agent only")
        agent = _serl_agent(ensemble)
    else:
        agent = _our_agent(ensemble, agent_kwargs or {})

    batch = jax.block_until_ready(jax.device_put(random_batch(BATCH_SIZE, seed=1)))
    n_params = sum(x.size for x in jax.tree.leaves(agent.state.params))
    agent, result = _time_updates(meter, agent, batch, UTD_RATIO, repeats, calls)
    result["params"] = int(n_params)
    if latency_calls:
        rng = np.random.default_rng(2)
        observations = list(rng.normal(size=(LATENCY_WARMUP + latency_calls, OBS_DIM)).astype(np.float32))
        result.update(_time_sampling(meter, _sampler(side), agent, observations, LATENCY_WARMUP))
    return result


# ------------------------------------------------------------------------ pixel agent
CAMERAS = ("front", "wrist")
IMAGE_SHAPE = (128, 128, 3)
PIXEL_STATE_DIM = 7
PIXEL_MINIBATCH, PIXEL_UTD = 256, 4  # examples/async_drq_sim: critic_actor_ratio 4, batch 256 per critic step
PIXEL_LATENCY_WARMUP = 20
# What SERL (rail-berkeley/serl @ cd5f7e7) can run of each encoder its make_drq_agent names:
#  - "small": its EncodingWrapper calls every encoder with `encode=...`, which SmallEncoder.__call__ does
#    not take: make_drq_agent(encoder_type="small") raises TypeError. Measured here with a shim that
#    accepts and ignores that argument (SERL always passes encode=True; nothing else changes).
#  - "resnet" (ResNet-10 from scratch): the same TypeError, and its ResNetEncoder defaults to
#    pre_pooling=True: it would return the gradient-stopped 4x4x512 feature map without pooling or
#    bottleneck, i.e. not a trainable encoder. Not measured on SERL's side.
#  - "resnet-pretrained" (frozen ResNet-10 + learned spatial embeddings + bottleneck): runs as
#    published; only its download of the ImageNet weights is skipped (no network here; the weights'
#    values do not change the work). Ours: the same encoder kind, from a weights file of random values.
PEER_PIXEL_SUPPORT = {
    "small": "shim: SmallEncoder accepts the `encode` argument it lacks (TypeError as published)",
    "resnet": None,
    "resnet-pretrained": "as published; the weights download skipped (random weights)",
}
PEER_NO_RESNET = ("SERL's make_drq_agent(encoder_type='resnet') raises TypeError (its ResNetEncoder takes no "
                  "`encode` argument) and would return a frozen, unpooled feature map: not comparable")


def pixel_observation_spec(side: str) -> dict:
    """name -> (shape, dtype) of one observation. SERL's envs are wrapped in ChunkingWrapper(obs_horizon=1),
    so its observations carry a leading history axis of 1 (its DrQ update crops with num_batch_dims=2
    and fails without it); ours take the env's observation as it is (examples/async_drq_sim)."""
    history = (1,) if side == "peer" else ()
    spec = {"state": (history + (PIXEL_STATE_DIM,), np.float32)}
    spec.update({camera: (history + IMAGE_SHAPE, np.uint8) for camera in CAMERAS})
    return spec


def random_pixel_observations(side: str, n: int, rng) -> dict:
    """n observations stacked: random uint8 camera frames and a float32 state vector."""
    return {name: (rng.integers(0, 256, size=(n,) + shape, dtype=np.uint8) if dtype == np.uint8
                   else rng.normal(size=(n,) + shape).astype(np.float32))
            for name, (shape, dtype) in pixel_observation_spec(side).items()}


def random_pixel_batch(side: str, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "observations": random_pixel_observations(side, n, rng),
        "next_observations": random_pixel_observations(side, n, rng),
        "actions": rng.uniform(-1, 1, size=(n, ACTION_DIM)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "masks": (rng.uniform(size=n) > 0.05).astype(np.float32),
        "dones": rng.uniform(size=n) < 0.05,
    }


def _serl_drq_agent(encoder: str):
    """SERL's DrQAgent from its make_drq_agent (ensemble 10 / subsample 2, discount 0.96)."""
    from serl_launcher.utils.launcher import make_drq_agent

    if PEER_PIXEL_SUPPORT.get(encoder) is None:
        raise ValueError(f"SERL's side is not measured with encoder {encoder!r}: {PEER_NO_RESNET}")
    if encoder == "small":
        import serl_launcher.vision.small_encoders as small_encoders

        published = small_encoders.SmallEncoder

        class SmallEncoder(published):  # the same module, calls, parameters: `encode` accepted, unused
            def __call__(self, observations, train=False, encode=True):
                return published.__call__(self, observations, train=train)

        small_encoders.SmallEncoder = SmallEncoder  # create_drq imports it from there when called
    if encoder == "resnet-pretrained":
        import serl_launcher.utils.train_utils as train_utils

        train_utils.load_resnet10_params = lambda agent, image_keys=(), public=True: agent
    sample = {name: np.zeros(shape, dtype) for name, (shape, dtype) in pixel_observation_spec("peer").items()}
    return make_drq_agent(0, sample, np.zeros(ACTION_DIM, np.float32), image_keys=CAMERAS, encoder_type=encoder)


def _our_drq_agent(encoder: str, agent_kwargs: dict):
    """Ours from make_drq_agent with SERL's settings (its defaults: ensemble 10 / subsample 2, discount 0.96)."""
    import tempfile

    import jax
    from serl_launcher.utils.launcher import make_drq_agent

    sample = {name: np.zeros(shape, dtype) for name, (shape, dtype) in pixel_observation_spec("ours").items()}
    kwargs = dict(agent_kwargs)
    if encoder == "resnet-pretrained" and "pretrained_weights" not in kwargs:
        from serl_launcher.vision.encoders import ResNet10Backbone
        from serl_launcher.vision.pretrained import save_backbone

        backbone = ResNet10Backbone().init(jax.random.PRNGKey(1), np.zeros((1,) + IMAGE_SHAPE, np.uint8))["params"]
        with tempfile.NamedTemporaryFile(suffix=".msgpack") as weights:
            save_backbone(weights.name, backbone)
            return make_drq_agent(0, sample, np.zeros(ACTION_DIM, np.float32), image_keys=CAMERAS,
                                  encoder_type=encoder, pretrained_weights=weights.name, **kwargs)
    return make_drq_agent(0, sample, np.zeros(ACTION_DIM, np.float32), image_keys=CAMERAS, encoder_type=encoder,
                          **kwargs)


def role_pixel_learner(meter, side: str, encoder: str, minibatch: int, utd_ratio: int, repeats: int, calls: int,
                       latency_calls: int, agent_kwargs: dict | None = None) -> dict:
    """One side's pixel learner (DrQ, 2 cameras + state) and its actor latency in this fresh process."""
    import jax

    if side == "peer":
        if agent_kwargs:
            raise ValueError("agent_kwargs are for our agent only")
        agent = _serl_drq_agent(encoder)
    else:
        agent = _our_drq_agent(encoder, agent_kwargs or {})
    batch = random_pixel_batch(side, minibatch * utd_ratio, seed=1)
    if side == "peer":  # SERL's replay buffers hand its DrQ FrozenDicts (its augmentation calls .copy(add_or_replace=))
        from flax.core import frozen_dict

        batch = frozen_dict.freeze(batch)
    batch = jax.block_until_ready(jax.device_put(batch))
    n_params = sum(x.size for x in jax.tree.leaves(agent.state.params))
    agent, result = _time_updates(meter, agent, batch, utd_ratio, repeats, calls)
    result["params"] = int(n_params)
    if latency_calls:
        stacked = random_pixel_observations(side, PIXEL_LATENCY_WARMUP + latency_calls, np.random.default_rng(2))
        observations = [{name: value[i] for name, value in stacked.items()}
                        for i in range(PIXEL_LATENCY_WARMUP + latency_calls)]
        result.update(_time_sampling(meter, _sampler(side), agent, observations, PIXEL_LATENCY_WARMUP))
    if side == "peer":
        result["note"] = PEER_PIXEL_SUPPORT[encoder]
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
    parser.add_argument("--ensembles", type=int, nargs="*", default=[10, 2], choices=[10, 2],
                        help="critic ensemble sizes to measure (10: SERL's default, subsample 2; 2: plain SAC); "
                             "none: state rows off")
    parser.add_argument("--pixel_encoders", nargs="*", default=list(PEER_PIXEL_SUPPORT), choices=list(PEER_PIXEL_SUPPORT),
                        help="pixel-agent rows (DrQ, 2 cameras 128x128x3 + state 7): image encoders to measure "
                             "(default all; none: pixel rows off)")
    parser.add_argument("--pixel_minibatch", type=int, default=None,
                        help=f"pixel rows: rows per critic step (default {PIXEL_MINIBATCH}; --quick 4, a smoke shape)")
    parser.add_argument("--pixel_utd", type=int, default=PIXEL_UTD, help=f"pixel rows: utd_ratio (default {PIXEL_UTD})")
    parser.add_argument("--pixel_repeats", type=int, default=3,
                        help="pixel rows: timed repeats per process (default 3; each a rate, the process reports the median)")
    parser.add_argument("--pixel_calls", type=int, default=1, help="pixel rows: update_high_utd calls per repeat (default 1)")
    parser.add_argument("--pixel_latency_calls", type=int, default=None,
                        help=f"pixel rows: sample_actions calls after {PIXEL_LATENCY_WARMUP} warm-up (default 500, quick 50)")
    parser.add_argument("--no_autodiff_row", action="store_true",
                        help="drop the default row of ours with actor_loss_gradient=autodiff")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[], metavar="LABEL=JSON",
                        help="an extra row of ours: make_sac_agent (and make_drq_agent) kwargs as a JSON object, e.g. "
                             "'chunked={\"actor_loss_gradient\": \"chunked\"}' (repeatable)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    calls = args.calls or (2 if args.quick else 6)
    latency_calls = args.latency_calls if args.latency_calls is not None else (300 if args.quick else 2000)
    minibatch = args.pixel_minibatch or (4 if args.quick else PIXEL_MINIBATCH)
    pixel_latency = args.pixel_latency_calls if args.pixel_latency_calls is not None else (50 if args.quick else 500)
    if min(repeats, calls, minibatch, args.pixel_utd, args.pixel_repeats, args.pixel_calls) < 1:
        parser.error("--repeats, --calls and the --pixel_ sizes must be >= 1")
    if latency_calls < 0 or pixel_latency < 0:
        parser.error("latency calls must be >= 0")
    if args.pixel_repeats * args.pixel_calls < 3:
        parser.error("pixel rows need at least 3 timed calls per process (--pixel_repeats x --pixel_calls)")
    if not args.ensembles and not args.pixel_encoders:
        parser.error("nothing to measure: give --ensembles and/or --pixel_encoders")

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
    for encoder in dict.fromkeys(args.pixel_encoders):
        setup = f"pixel {encoder}"
        figures = [Figure("calls_per_s", f"update_high_utd calls/s, {setup}", True, ".3f", short="calls/s"),
                   Figure("first_call_s", f"first call incl. compile s, {setup}", False, ".1f", short="first call s")]
        if pixel_latency:
            figures += [Figure("sample_p50_us", f"sample_actions to numpy p50 us, {setup}", False, ".0f",
                               "sample_actions p50 us"),
                        Figure("sample_p99_us", f"sample_actions to numpy p99 us, {setup}", False, ".0f", "p99 us")]
        groups.append(Group(setup, "pixel_learner",
                            {"encoder": encoder, "minibatch": minibatch, "utd_ratio": args.pixel_utd,
                             "repeats": args.pixel_repeats, "calls": args.pixel_calls, "latency_calls": pixel_latency},
                            tuple(figures), no_peer="" if PEER_PIXEL_SUPPORT[encoder] else PEER_NO_RESNET))
    default_variants = [] if args.no_autodiff_row else [("autodiff", {"actor_loss_gradient": "autodiff"})]
    variants = [(label, {"agent_kwargs": kwargs}) for label, kwargs in default_variants + args.variant]
    notes = []
    if args.ensembles:
        notes.append(f"state rows: obs {OBS_DIM}, action {ACTION_DIM}, batch {BATCH_SIZE} = {BATCH_SIZE // UTD_RATIO} x "
                     f"{UTD_RATIO}, per process: first call, 1 warm call, {repeats} x {calls} blocked calls"
                     + (f", {latency_calls} sample_actions calls" if latency_calls else ""))
    if args.pixel_encoders:
        smoke = "  !! SMOKE SHAPE (not the issue's batch)" if minibatch != PIXEL_MINIBATCH else ""
        notes.append(f"pixel rows: DrQ, cameras {' + '.join(CAMERAS)} {'x'.join(map(str, IMAGE_SHAPE))} uint8 + state "
                     f"{PIXEL_STATE_DIM}, action {ACTION_DIM}, ensemble 10 / subsample 2, batch "
                     f"{minibatch * args.pixel_utd} = {minibatch} x {args.pixel_utd}{smoke}; per process: first call, "
                     f"1 warm call, {args.pixel_repeats} x {args.pixel_calls} blocked calls"
                     + (f", {pixel_latency} sample_actions calls on one observation" if pixel_latency else ""))
        if same_run.contestants(args, "SERL")[0][0].side == "peer":  # the peer venv exists
            notes += [f"SERL {encoder}: {how or 'not measured: ' + PEER_NO_RESNET}"
                      for encoder, how in PEER_PIXEL_SUPPORT.items() if encoder in args.pixel_encoders]
    same_run.run(__doc__.splitlines()[0], "learner_throughput", groups, args, peer_name="SERL", variants=variants,
                 notes=notes)


if __name__ == "__main__":
    main()
