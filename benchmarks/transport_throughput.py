"""Throughput and latency of serl_launcher.transport on loopback, compared with agentlace.

Measures, with the learner in this process and each actor in its own process:
  1. transitions/s delivered into the learner's store from 1 and from 4 actors
     (PandaPickCube-shaped transitions, QueuedDataStore(2000), update() every 30
     inserts), and the duration of each update() call;
  2. publish-to-callback latency of SERL SAC-sized params (~780k float32 params
     as a nested dict of jax arrays, ~3.1 MB), and the duration of the publish call
     (which only hands the params to the publisher thread).

The agentlace figures it compares with are constants from ../shared/baselines.md,
measured there on a machine like this one (2 cores, loopback), not in this run.

    python benchmarks/transport_throughput.py            # full run
    python benchmarks/transport_throughput.py --quick    # a few seconds
"""

import argparse
import multiprocessing as mp
import time

import numpy as np
from tqdm import tqdm

from serl_launcher.transport import DataStoreBase, QueuedDataStore, TrainerClient, TrainerConfig, TrainerServer
from serl_launcher.transport.sockets import free_ports

# agentlace on a machine like this one, loopback (../shared/baselines.md).
BASELINE = {
    "transitions_per_s": 4420.0,
    "update_p50_ms": 6.7,
    "update_p99_ms": 8.8,
    "publish_to_callback_p50_ms": 10.8,
    "publish_call_ms": 7.4,
}
UPDATE_EVERY = 30
ACTOR_QUEUE = 2000
HOST = "127.0.0.1"


class CountingStore(DataStoreBase):
    """Learner-side store that only counts rows: measures the transport, not a replay buffer."""

    def __init__(self):
        super().__init__(capacity=0)
        self.rows = 0

    def insert(self, data):
        self.rows += 1

    def insert_stacked(self, stacked):
        self.rows += len(stacked["rewards"])

    def __len__(self):
        return self.rows


def pick_cube_transitions(n: int, seed: int) -> list:
    """PandaPickCube-shaped transitions: obs 10, next_obs 10, action 4, reward, mask, done."""
    rng = np.random.default_rng(seed)
    return [
        {
            "observations": rng.standard_normal(10).astype(np.float32),
            "actions": rng.uniform(-1, 1, 4).astype(np.float32),
            "next_observations": rng.standard_normal(10).astype(np.float32),
            "rewards": float(rng.random()),
            "masks": 1.0,
            "dones": False,
        }
        for _ in range(n)
    ]


def sac_params(rng) -> dict:
    """SERL SAC params: tanh policy MLP [256, 256] + ensemble of 10 critics [256, 256], LayerNorm."""

    def mlp(n_in, ensemble=()):
        layers = {}
        for j, (a, b) in enumerate([(n_in, 256), (256, 256)]):
            layers[f"Dense_{j}"] = {"kernel": rng.standard_normal((*ensemble, a, b)), "bias": np.zeros((*ensemble, b))}
            layers[f"LayerNorm_{j}"] = {"scale": np.ones((*ensemble, b)), "bias": np.zeros((*ensemble, b))}
        return layers

    tree = {
        "modules_actor": {
            "network": mlp(10),
            "Dense_0": {"kernel": rng.standard_normal((256, 8)), "bias": np.zeros(8)},
        },
        "modules_critic": {
            "network": mlp(14, ensemble=(10,)),
            "Dense_0": {"kernel": rng.standard_normal((10, 256, 1)), "bias": np.zeros((10, 1))},
        },
        "modules_temperature": {"lagrange": np.zeros(())},
    }
    return _map(lambda x: x.astype(np.float32), tree)


def _map(fn, tree):
    return {k: _map(fn, v) for k, v in tree.items()} if isinstance(tree, dict) else fn(tree)


def actor_process(config, n_transitions: int, seed: int, ready, go, results):
    """One actor: insert transitions, update() every 30 inserts, report update() durations."""
    queue = QueuedDataStore(ACTOR_QUEUE)
    client = TrainerClient("actor_env", HOST, config, queue, wait_for_server=True, timeout_ms=5000)
    pool = pick_cube_transitions(100, seed)
    ready.release()
    go.wait()
    durations = []
    for i in range(n_transitions):
        queue.insert(pool[i % len(pool)])
        if (i + 1) % UPDATE_EVERY == 0:
            start = time.perf_counter()
            client.update()
            durations.append(time.perf_counter() - start)
    while not client.update():
        pass
    results.put(durations)
    client.stop()


def measure_throughput(n_actors: int, per_actor: int) -> dict:
    port, broadcast_port = free_ports(2)
    config = TrainerConfig(port_number=port, broadcast_port=broadcast_port, bind_address=HOST)
    server = TrainerServer(config)
    store = CountingStore()
    server.register_data_store("actor_env", store)
    server.start(threaded=True)
    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=actor_process, args=(config, per_actor, seed, ready, go, results), daemon=True)
        for seed in range(n_actors)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.acquire(timeout=60):
            raise RuntimeError("an actor process did not start")
    total = n_actors * per_actor
    with tqdm(total=total, desc=f"{n_actors} actor(s)", unit="tr", leave=False) as bar:
        start = time.perf_counter()
        go.set()
        while store.rows < total:
            time.sleep(0.005)
            bar.update(store.rows - bar.n)
            if time.perf_counter() - start > 300:
                raise RuntimeError(f"only {store.rows}/{total} transitions delivered in 300 s")
        elapsed = time.perf_counter() - start
    durations = np.concatenate([results.get(timeout=60) for _ in procs]) * 1000
    for p in procs:
        p.join(timeout=10)
    server.stop()
    if store.rows != total:
        raise RuntimeError(f"{store.rows} transitions stored for {total} sent: duplicates")
    return {
        "transitions_per_s": total / elapsed,
        "update_p50_ms": float(np.percentile(durations, 50)),
        "update_p99_ms": float(np.percentile(durations, 99)),
    }


def subscriber_process(config, ready, stamps):
    """An actor that reports (publish number, arrival time) of every params it receives."""
    client = TrainerClient("actor_env", HOST, config, wait_for_server=True, timeout_ms=5000)
    client.recv_network_callback(lambda params: stamps.put((int(params["step"]), time.monotonic())))
    ready.release()
    time.sleep(3600)  # killed by the parent


def measure_publish_latency(n_publishes: int) -> dict:
    import jax

    port, broadcast_port = free_ports(2)
    config = TrainerConfig(port_number=port, broadcast_port=broadcast_port, bind_address=HOST)
    server = TrainerServer(config)
    server.start(threaded=True)
    params = jax.device_put(sac_params(np.random.default_rng(0)))
    n_params = sum(x.size for x in jax.tree.leaves(params))
    ctx = mp.get_context("spawn")
    ready, stamps = ctx.Semaphore(0), ctx.Queue()
    proc = ctx.Process(target=subscriber_process, args=(config, ready, stamps), daemon=True)
    proc.start()
    if not ready.acquire(timeout=60):
        raise RuntimeError("the subscriber process did not start")
    latencies, calls = [], []
    warmup = 5
    for step in tqdm(range(warmup + n_publishes), desc="publish", leave=False):
        time.sleep(0.05)  # the subscriber has taken the previous params
        start = time.monotonic()
        server.publish_network({**params, "step": np.array(step)})
        published = time.monotonic()
        while True:
            got, arrived = stamps.get(timeout=10)
            if got == step:
                break
        if step >= warmup:
            latencies.append(arrived - start)
            calls.append(published - start)
    proc.kill()
    proc.join()
    server.stop()
    return {
        "params": n_params,
        "megabytes": 4 * n_params / 1e6,
        "publish_to_callback_p50_ms": 1000 * float(np.median(latencies)),
        "publish_to_callback_p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "publish_call_ms": 1000 * float(np.median(calls)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (4,000 transitions per actor, 20 publishes)")
    parser.add_argument("--transitions", type=int, default=20_000, help="transitions per actor")
    parser.add_argument("--publishes", type=int, default=100)
    args = parser.parse_args()
    per_actor = 4_000 if args.quick else args.transitions
    publishes = 20 if args.quick else args.publishes

    runs = {n: measure_throughput(n, per_actor) for n in (1, 4)}
    latency = measure_publish_latency(publishes)

    print(f"\nserl_launcher.transport, loopback, {per_actor:,} transitions per actor,", end=" ")
    print(f"update() every {UPDATE_EVERY} inserts")
    print("vs agentlace = constants from ../shared/baselines.md (measured on a machine like this, not in this run)\n")
    print(f"{'figure':44s} {'ours':>10s} {'agentlace':>10s} {'ratio':>8s}")
    rows = []
    for n, run in runs.items():
        rows += [
            (f"transitions/s delivered, {n} actor(s)", run["transitions_per_s"], BASELINE["transitions_per_s"], True),
            (f"update() p50 ms, {n} actor(s)", run["update_p50_ms"], BASELINE["update_p50_ms"], False),
            (f"update() p99 ms, {n} actor(s)", run["update_p99_ms"], BASELINE["update_p99_ms"], False),
        ]
    rows += [
        (
            "publish-to-callback p50 ms",
            latency["publish_to_callback_p50_ms"],
            BASELINE["publish_to_callback_p50_ms"],
            False,
        ),
        ("publish-to-callback p99 ms", latency["publish_to_callback_p99_ms"], None, False),
        ("publish call p50 ms", latency["publish_call_ms"], BASELINE["publish_call_ms"], False),
    ]
    for label, ours, theirs, higher_is_better in rows:
        if theirs is None:
            print(f"{label:44s} {ours:10.2f} {'-':>10s} {'-':>8s}")
            continue
        ratio = ours / theirs if higher_is_better else theirs / ours
        print(f"{label:44s} {ours:10.2f} {theirs:10.2f} {ratio:7.1f}x")
    print("\nratio > 1 means better than agentlace.", end=" ")
    print(f"Params: {latency['params']:,} float32 ({latency['megabytes']:.1f} MB).")


if __name__ == "__main__":
    main()
