"""Transport on loopback, serl_launcher.transport vs agentlace (what SERL uses) in the same run.

Each (round, measurement, side) is a fresh process pair (see same_run.py): the learner's process
runs the TrainerServer (threaded, as SERL's learner does) and starts the actor(s) as separate
processes of the same venv; the two sides run the same harness, only the imported library differs.
  1. throughput: 1 actor (more with --actors) sends PandaPickCube-shaped transitions (obs 10,
     next_obs 10, action 4, reward, mask, done) through QueuedDataStore(2000), calling
     client.update() every 30 inserts; transitions/s delivered into the learner's store (a store
     that only counts, so that the transport alone is measured), from the "go" to the last
     transition stored; and each update() call's duration (p50, p99) in the actor. The foreign-load
     window also covers one idle second before the "go" (ours moves 20,000 transitions in < 0.5 s,
     too short alone for /proc/stat's 10 ms ticks);
  2. publish: SERL-sized SAC params (~780k float32 as a dict of jax arrays, ~3.1 MB, plus a step
     number) published every ~50 ms to one subscribed actor process; publish-to-callback = from the
     start of the publish_network call to the actor's callback receiving those params
     (CLOCK_MONOTONIC, the same clock in both processes), which stays meaningful whether the
     publish call is synchronous or not; and the publish call's own duration.

    python benchmarks/transport_throughput.py            # 5 rounds, 20,000 transitions, 100 publishes
    python benchmarks/transport_throughput.py --quick    # 2 rounds, 4,000 transitions, 20 publishes
"""
from __future__ import annotations

import argparse
import threading
import time
import types

import numpy as np

import same_run
from same_run import Figure, Group

UPDATE_EVERY = 30
ACTOR_QUEUE = 2000
HOST = "127.0.0.1"
PUBLISH_WARMUP = 5
PUBLISH_INTERVAL_S = 0.05
LOAD_PAD_S = 1.0


def _library(side: str):
    """The transport API of one side: agentlace (peer) or serl_launcher.transport (ours)."""
    if side == "peer":
        from agentlace.data.data_store import DataStoreBase, QueuedDataStore
        from agentlace.trainer import TrainerClient, TrainerConfig, TrainerServer
    else:
        from serl_launcher.transport import DataStoreBase, QueuedDataStore, TrainerClient, TrainerConfig, TrainerServer
    return types.SimpleNamespace(DataStoreBase=DataStoreBase, QueuedDataStore=QueuedDataStore,
                                 TrainerClient=TrainerClient, TrainerConfig=TrainerConfig, TrainerServer=TrainerServer)


def _config(lib, port: int, broadcast_port: int):
    return lib.TrainerConfig(port_number=port, broadcast_port=broadcast_port)


def _counting_store(base, counter: dict, total: int, done: threading.Event):
    """A learner-side store that only counts rows: agentlace hands it lists of rows (batch_insert),
    ours columns (insert_stacked, the vectorised path our replay buffers take)."""

    class CountingStore(base):
        def __init__(self):
            base.__init__(self, 0)

        def insert(self, data):
            self.batch_insert([data])

        def batch_insert(self, batch):
            with counter["lock"]:
                counter["rows"] += len(batch["rewards"]) if isinstance(batch, dict) else len(batch)
                if counter["rows"] >= total:
                    done.set()

        insert_stacked = batch_insert  # ours: columns, one call per batch

        def __len__(self):
            return counter["rows"]

        def latest_data_id(self):
            return counter["rows"] - 1

        def get_latest_data(self, from_id):
            return []

    return CountingStore()


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


def image_transitions(frames_path: str | None, seed: int, n: int = 64) -> list:
    """The pixel agent's transitions: obs and next_obs each hold 2 camera frames (front, wrist, 128x128x3
    uint8, consecutive recorded frames of one episode; random frames without a file) and a 7-float
    state; action 4, reward, mask, done: 197 kB each."""
    rng = np.random.default_rng(seed)
    cameras = ("front", "wrist")
    if frames_path:
        data = np.load(frames_path)
        episode = data["episode"]
        starts = [t for t in range(len(episode) - 1) if episode[t] == episode[t + 1]][:n]
        frames = {camera: data[camera] for camera in cameras}
    else:
        starts = list(range(n))
        frames = {camera: rng.integers(0, 256, size=(n + 1, 128, 128, 3), dtype=np.uint8) for camera in cameras}

    def observation(t):
        return {"state": rng.standard_normal(7).astype(np.float32),
                **{camera: np.ascontiguousarray(frames[camera][t]) for camera in cameras}}

    return [
        {
            "observations": observation(t),
            "actions": rng.uniform(-1, 1, 4).astype(np.float32),
            "next_observations": observation(t + 1),
            "rewards": float(rng.random()),
            "masks": 1.0,
            "dones": False,
        }
        for t in starts
    ]


def _nbytes(tree) -> int:
    return sum(_nbytes(v) for v in tree.values()) if isinstance(tree, dict) else np.asarray(tree).nbytes


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


# ------------------------------------------------------------------------ throughput
def role_throughput(meter, side: str, transitions: int, actors: int = 1, images: bool = False,
                    frames: str | None = None) -> dict:
    """The learner: a threaded TrainerServer with counting stores; actors in their own processes.

    images: the actors send image_transitions(frames) instead of PandaPickCube-shaped ones."""
    lib = _library(side)
    port, broadcast_port = same_run.free_ports(2)
    server = lib.TrainerServer(_config(lib, port, broadcast_port))
    total, done = transitions * actors, threading.Event()
    counter = {"rows": 0, "lock": threading.Lock()}
    names = [f"actor_env_{i}" for i in range(actors)]  # one store name per actor (agentlace needs it)
    for name in names:
        server.register_data_store(name, _counting_store(lib.DataStoreBase, counter, total, done))
    server.start(threaded=True)
    children = [same_run.spawn_role("throughput_actor", name=name, port=port, broadcast_port=broadcast_port,
                                    transitions=transitions, seed=i, images=images, frames=frames)
                for i, name in enumerate(names)]
    try:
        for child in children:
            if child.expect("READY", timeout=300) is None:
                raise RuntimeError("an actor process did not connect within 300 s")
            meter.track(child.pid)
        with meter:  # an idle second in the load window: a 20,000-transition transfer can take < 0.5 s
            time.sleep(LOAD_PAD_S)
        with meter:
            start = time.perf_counter()
            for child in children:
                child.send("GO")
            if not done.wait(timeout=600):
                raise RuntimeError(f"only {counter['rows']}/{total} transitions delivered in 600 s")
            elapsed = time.perf_counter() - start
        results = [child.result(timeout=120) for child in children]
        durations = np.concatenate([r["update_ms"] for r in results])
    finally:
        for child in children:
            child.finish()
    # The server is not stopped: agentlace's stop() closes its socket under the serving thread (a ZeroMQ
    # abort, at random); both sides leave it to the process's exit.
    if counter["rows"] != total:
        raise RuntimeError(f"{counter['rows']} transitions stored for {total} sent: duplicates")
    return {
        "transitions_per_s": total / elapsed,
        "megabytes_per_s": total * results[0]["transition_bytes"] / elapsed / 1e6,
        "update_p50_ms": float(np.percentile(durations, 50)),
        "update_p99_ms": float(np.percentile(durations, 99)),
    }


def role_throughput_actor(meter, side: str, name: str, port: int, broadcast_port: int, transitions: int,
                          seed: int, images: bool = False, frames: str | None = None) -> dict:
    """An actor: insert transitions, update() every 30 inserts, then until all are delivered."""
    lib = _library(side)
    store = lib.QueuedDataStore(ACTOR_QUEUE)
    client = lib.TrainerClient(name, HOST, _config(lib, port, broadcast_port), data_store=store,
                               wait_for_server=True, timeout_ms=5000)
    pool = image_transitions(frames, seed) if images else pick_cube_transitions(100, seed)
    same_run.emit("READY")
    same_run.wait_for("GO")
    durations = []
    for i in range(transitions):
        store.insert(pool[i % len(pool)])
        if (i + 1) % UPDATE_EVERY == 0:
            start = time.perf_counter()
            client.update()
            durations.append((time.perf_counter() - start) * 1000)
    while not client.update():
        pass
    client.stop()
    return {"update_ms": durations, "transition_bytes": _nbytes(pool[0])}


# --------------------------------------------------------------------------- publish
def role_publish(meter, side: str, publishes: int) -> dict:
    """The learner publishing params every ~50 ms; a subscriber process reports when each arrives."""
    import jax

    lib = _library(side)
    port, broadcast_port = same_run.free_ports(2)
    server = lib.TrainerServer(_config(lib, port, broadcast_port))
    server.start(threaded=True)
    params = jax.block_until_ready(jax.device_put(sac_params(np.random.default_rng(0))))
    n_params = sum(x.size for x in jax.tree.leaves(params))
    subscriber = same_run.spawn_role("publish_subscriber", port=port, broadcast_port=broadcast_port)

    def arrival(step: int, timeout: float):
        """Arrival time of the params numbered `step` (older ones are skipped), None on timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            text = subscriber.expect("STAMP", timeout=left)
            if text is None:
                return None
            got, at = text.split()
            if int(got) == step:
                return float(at)
        return None

    try:
        if subscriber.expect("READY", timeout=300) is None:
            raise RuntimeError("the subscriber process did not connect within 300 s")
        meter.track(subscriber.pid)
        # Subscribed: publish (negative steps) until one arrives (a PUB/SUB joiner misses the first ones).
        for join in range(1, 101):
            server.publish_network({**params, "step": np.array(-join)})
            if arrival(-join, 0.2) is not None:
                break
        else:
            raise RuntimeError("the subscriber received none of 100 publishes")
        latencies, call_ms, lost = [], [], 0
        with meter:
            for step in range(PUBLISH_WARMUP + publishes):
                time.sleep(PUBLISH_INTERVAL_S)
                start = time.monotonic()
                server.publish_network({**params, "step": np.array(step)})
                returned = time.monotonic()
                arrived = arrival(step, 5.0)
                if step < PUBLISH_WARMUP:
                    continue
                if arrived is None:
                    lost += 1
                    continue
                latencies.append((arrived - start) * 1000)
                call_ms.append((returned - start) * 1000)
        subscriber.send("EXIT")
        subscriber.result(timeout=60)
    finally:
        subscriber.finish()
    if not latencies:
        raise RuntimeError(f"all {publishes} publishes were lost")
    return {
        "params": int(n_params),
        "megabytes": 4 * n_params / 1e6,
        "publish_to_callback_p50_ms": float(np.median(latencies)),
        "publish_to_callback_p99_ms": float(np.percentile(latencies, 99)),
        "publish_call_ms": float(np.median(call_ms)),
        "lost": lost,
        "note": f"{lost} of {publishes} publishes lost" if lost else "",
    }


def role_publish_subscriber(meter, side: str, port: int, broadcast_port: int) -> dict:
    """An actor that reports `STAMP <step> <CLOCK_MONOTONIC>` for every params it receives."""
    lib = _library(side)
    client = lib.TrainerClient("actor_env", HOST, _config(lib, port, broadcast_port), wait_for_server=True,
                               timeout_ms=5000)

    def on_params(params):
        at = time.monotonic()
        same_run.emit("STAMP", f"{int(params['step'])} {at!r}")

    client.recv_network_callback(on_params)
    same_run.emit("READY")
    same_run.wait_for("EXIT")
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    same_run.add_arguments(parser)
    parser.add_argument("--transitions", type=int, default=None, help="transitions per actor (default 20000, quick 4000)")
    parser.add_argument("--publishes", type=int, default=None, help="timed publishes per process (default 100, quick 20)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1], help="actor counts to measure (default 1)")
    args = parser.parse_args()
    transitions = args.transitions or (4_000 if args.quick else 20_000)
    publishes = args.publishes or (20 if args.quick else 100)
    if min(transitions, publishes, *args.actors) < 1:
        parser.error("--transitions, --publishes and --actors must be >= 1")

    groups = [
        Group(f"{n} actor{'s' if n > 1 else ''}", "throughput", {"transitions": transitions, "actors": n}, (
            Figure("transitions_per_s", f"transitions/s delivered, {n} actor{'s' if n > 1 else ''}", True, ",.0f", "transitions/s"),
            Figure("update_p50_ms", f"update() p50 ms, {n} actor{'s' if n > 1 else ''}", False, short="update() p50 ms"),
            Figure("update_p99_ms", f"update() p99 ms, {n} actor{'s' if n > 1 else ''}", False, short="p99 ms"),
        ))
        for n in dict.fromkeys(args.actors)
    ]
    groups.append(Group("publish 3.1 MB", "publish", {"publishes": publishes}, (
        Figure("publish_to_callback_p50_ms", "publish-to-callback median ms", False, short="to callback p50 ms"),
        Figure("publish_to_callback_p99_ms", "publish-to-callback p99 ms", False, short="p99 ms"),
        Figure("publish_call_ms", "publish_network call median ms", False, short="call ms"),
    )))
    same_run.run(
        __doc__.splitlines()[0], "transport_throughput", groups, args, peer_name="agentlace",
        notes=[f"loopback; learner (threaded server) and each actor are separate processes of the same venv; "
               f"{transitions:,} transitions per actor, QueuedDataStore({ACTOR_QUEUE}), update() every "
               f"{UPDATE_EVERY} inserts; {publishes} publishes of SERL-sized SAC params after {PUBLISH_WARMUP} warm-up"],
    )


if __name__ == "__main__":
    main()
