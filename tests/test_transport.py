"""Transport tests on real ZeroMQ sockets over loopback: each flaw of agentlace the issue lists, and more.

Every server binds 127.0.0.1 on ports picked free at run time; every wait is bounded.
"""

import collections
import dataclasses
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import zmq

from serl_launcher.transport import (
    ConfigMismatchError,
    DataStoreBase,
    MessageTooLarge,
    QueuedDataStore,
    RateLimited,
    RemoteError,
    TrainerClient,
    TrainerConfig,
    TrainerServer,
    TransportTimeout,
    codec,
    keys,
)
from serl_launcher.transport.config import fingerprint
from tests.helpers import free_ports

LOOPBACK = "127.0.0.1"
REQUEST_TYPES = ["send-stats", "echo"]
pytestmark = pytest.mark.timeout(60)


def make_config(**overrides) -> TrainerConfig:
    port, broadcast_port = free_ports(2)
    fields = dict(port_number=port, broadcast_port=broadcast_port, request_types=REQUEST_TYPES, bind_address=LOOPBACK)
    return TrainerConfig(**{**fields, **overrides})


def transition(actor: int, i: int) -> dict:
    obs = np.full(10, i, np.float32)
    obs[0] = actor
    return {
        "observations": obs,
        "actions": np.full(4, 0.5, np.float32),
        "next_observations": obs + 1,
        "rewards": float(i),
        "masks": 1.0,
        "dones": False,
    }


class RecordingStore(DataStoreBase):
    """Learner-side store that remembers (actor, index) of every row it received, column-wise."""

    def __init__(self):
        super().__init__(capacity=10**9)
        self.rows = []
        self.fail = False

    def insert_stacked(self, stacked):
        if self.fail:
            raise RuntimeError("replay buffer is busy")
        if not np.all(np.isfinite(stacked["rewards"])):
            raise ValueError("rewards: non-finite value")
        assert stacked["observations"].shape[1:] == (10,) and stacked["dones"].dtype == bool
        self.rows.extend(
            zip(stacked["observations"][:, 0].astype(int).tolist(), stacked["rewards"].astype(int).tolist())
        )

    def insert(self, data):
        raise AssertionError("the server must call insert_stacked")

    def __len__(self):
        return len(self.rows)


def wait_until(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def launch():
    """launch(config=None, **server_kwargs) -> (config, server, store); every server stopped at teardown."""
    servers = []

    def _launch(config=None, **server_kwargs):
        for attempt in range(3):  # a free port may be taken by another test before we bind it
            try:
                server = TrainerServer(config or make_config(), **server_kwargs)
                break
            except OSError:
                if config is not None or attempt == 2:
                    raise
        config = server.config
        store = RecordingStore()
        server.register_data_store("actor_env", store)
        server.start(threaded=True)
        servers.append(server)
        return config, server, store

    yield _launch
    for server in servers:
        server.stop()


@pytest.fixture
def connect():
    """connect(config, store=None, **kwargs) -> TrainerClient named actor_env; every client stopped at teardown."""
    clients = []

    def _connect(config, store=None, **kwargs):
        kwargs.setdefault("timeout_ms", 1000)
        client = TrainerClient("actor_env", LOOPBACK, config, store, **kwargs)
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        client.stop()


def raw_request(config: TrainerConfig, body: bytes, kind=zmq.DEALER, timeout_ms: int = 2000):
    """Send raw bytes to the learner's request port; return the decoded reply, or None if none came."""
    ctx = zmq.Context()
    sock = ctx.socket(kind)
    sock.linger = 0
    sock.connect(f"tcp://{LOOPBACK}:{config.port_number}")
    try:
        sock.send(body)
        return codec.decode(sock.recv()) if sock.poll(timeout_ms) else None
    finally:
        sock.close()
        ctx.term()


# --- flaw 2 and counters: several actors, one store name -------------------------------------------


def test_three_actors_sharing_a_name_deliver_exact_counts(launch):
    per_store = collections.Counter()
    config, server, store = launch(data_callback=lambda name, rows, client: per_store.update({name: len(rows["rewards"])}))
    clients, n = [], 400

    def actor(index):
        queue = QueuedDataStore(2000)
        client = TrainerClient("actor_env", LOOPBACK, config, queue, timeout_ms=2000)
        clients.append(client)
        for i in range(n):
            queue.insert(transition(index, i))
            if i % 30 == 29:
                assert client.update()
        assert client.update()

    threads = [threading.Thread(target=actor, args=(a,)) for a in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert sorted(store.rows) == [(a, i) for a in range(3) for i in range(n)]
        assert per_store == {"actor_env": 3 * n}
        stats = server.client_stats()
        assert len(stats) == 3
        for client in clients:
            assert client.stats()["sent"] == n and client.stats()["pending"] == 0
            counters = stats[f"actor_env/{client.session}"]
            assert counters["received"] == n and counters["dropped"] == 0 and counters["duplicates"] == 0
            assert time.time() - counters["last_seen"] < 30
    finally:
        for client in clients:
            client.stop()


def test_restarted_actor_has_no_transition_dropped(launch, connect):
    config, server, store = launch()
    for size in (1000, 1500):  # the same actor twice: a fresh queue, ids from 0 again
        queue = QueuedDataStore(2000)
        client = connect(config, queue)
        for i in range(size):
            queue.insert(transition(0, i))
            if i % 30 == 29:
                client.update()
        assert client.update()
        client.stop()
    assert len(store) == 2500  # agentlace: 500 of the second 1,500 delivered
    assert collections.Counter(store.rows) == collections.Counter(
        [(0, i) for i in range(1000)] + [(0, i) for i in range(1500)]
    )
    assert sorted(c["received"] for c in server.client_stats().values()) == [1000, 1500]


# --- flaw 1: late joiner ----------------------------------------------------------------------------


def test_late_joiner_gets_latest_params_within_one_second(launch, connect):
    config, server, _ = launch()
    server.publish_network({"version": np.array(1)})
    server.publish_network({"version": np.array(2)})
    received = []
    client = connect(config)
    start = time.monotonic()
    client.recv_network_callback(lambda params: received.append(int(params["version"])))
    assert wait_until(lambda: received, timeout=1.0), "late joiner got nothing within 1 s"
    assert time.monotonic() - start < 1.0
    assert received == [2]
    server.publish_network({"version": np.array(3)})
    assert wait_until(lambda: received == [2, 3])
    time.sleep(1.2)  # a periodic fetch must not deliver the same params again
    assert received == [2, 3] and client.stats()["params_received"] == 2


# --- flaw 3: dead learner ---------------------------------------------------------------------------


def test_dead_learner_actor_never_blocks_keeps_queue_and_delivers_later(launch, connect):
    config, server, store = launch()
    queue = QueuedDataStore(100)
    client = connect(config, queue, timeout_ms=300)
    params = []
    client.recv_network_callback(params.append)
    server.publish_network({"w": np.ones(3)})
    for i in range(10):
        queue.insert(transition(0, i))
    assert client.update() and len(store) == 10
    assert wait_until(lambda: params)

    server.stop()
    for i in range(10, 160):  # 150 more: the 100-slot queue evicts 50 of them unsent
        queue.insert(transition(0, i))
        if i % 30 == 0:
            start = time.monotonic()
            assert client.update() is False
            assert time.monotonic() - start < 0.3 + 0.3  # timeout + scheduling slack on a busy machine
    start = time.monotonic()
    assert client.request("echo", {}) is None  # agentlace's answer when the learner does not reply
    assert time.monotonic() - start < 0.3 + 0.3
    stats = client.stats()
    assert stats["dropped"] == 50 and stats["pending"] == 100 and stats["failed_updates"] >= 5
    assert len(params) == 1  # the actor keeps its current policy

    _, server2, store2 = launch(config)  # learner back on the same ports
    assert wait_until(client.update, timeout=5.0), "client did not reconnect by itself"
    assert store2.rows == [(0, i) for i in range(60, 160)]
    assert client.stats()["dropped"] == 50 and client.stats()["pending"] == 0
    assert server2.client_stats()[f"actor_env/{client.session}"]["dropped"] == 50


def test_hung_learner_times_out_and_request_socket_is_not_stuck(launch, connect):
    def callback(kind, payload):
        time.sleep(payload["sleep"])
        return {"echo": payload["n"]}

    config, _, _ = launch(request_callback=callback)
    client = connect(config, timeout_ms=200, raise_on_timeout=True)
    start = time.monotonic()
    with pytest.raises(TransportTimeout):
        client.request("echo", {"sleep": 0.6, "n": 1})
    assert time.monotonic() - start < 0.2 + 0.3
    replies = []

    def ask():
        try:
            replies.append(client.request("echo", {"sleep": 0, "n": 2}))
            return True
        except TransportTimeout:
            return False

    assert wait_until(ask, timeout=3.0)
    assert replies == [{"echo": 2}]  # the late reply to request 1 was discarded, not returned


# --- flaw 4: bad input ------------------------------------------------------------------------------


def _body(config, type_, payload, cfg=None):
    return codec.encode({"t": type_, "id": 7, "cfg": cfg or fingerprint(config), "p": payload})


def _batch(**overrides):
    stacked = {"observations": np.zeros((2, 10), np.float32), "rewards": np.zeros(2), "dones": np.zeros(2, bool)}
    fields = {"name": "actor_env", "session": "s", "first_id": 0, "dropped": 0, "rejected": 0, "pending": 0}
    fields["data"] = stacked
    return {**fields, **overrides}


def _data(config, **overrides):
    return _body(config, "__data__", _batch(**overrides))


BAD_REQUESTS = {
    "random bytes": (lambda c: os.urandom(64), "bad_request"),
    "not a map": (lambda c: codec.encode([1, 2, 3]), "bad_request"),
    "wrong field type": (lambda c: codec.encode({"t": 5, "id": 7, "cfg": "x", "p": None}), "bad_request"),
    "unknown type": (lambda c: _body(c, "launch-missiles", {}), "unknown_type"),
    "missing batch field": (lambda c: _body(c, "__data__", {"name": "actor_env"}), "bad_request"),
    "unknown store": (lambda c: _data(c, name="nope"), "unknown_store"),
    "ragged batch": (lambda c: _data(c, data={"a": np.zeros(2), "b": np.zeros(3)}), "bad_request"),
    "negative id": (lambda c: _data(c, first_id=-5), "bad_request"),
    "truncated array bytes": (lambda c: _body(c, "echo", np.zeros(3))[:-1], "bad_request"),
    "other config": (lambda c: _body(c, "echo", {}, cfg="0123456789abcdef"), "config_mismatch"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_error_reply_and_server_keeps_serving(launch, connect, case):
    make_body, kind = BAD_REQUESTS[case]
    config, server, store = launch(request_callback=lambda kind, payload: {"echo": payload})
    reply = raw_request(config, make_body(config))
    assert reply is not None and reply["ok"] is False and reply["err"] == kind, reply
    assert server.rejected_requests == 1 and len(store) == 0
    assert connect(config).request("echo", {"still": "serving"}) == {"echo": {"still": "serving"}}


def test_random_bytes_from_req_socket_and_raw_tcp_do_not_kill_the_server(launch, connect):
    config, _, _ = launch(request_callback=lambda kind, payload: "pong")
    reply = raw_request(config, os.urandom(200), kind=zmq.REQ)  # how agentlace's request thread was killed
    assert reply["ok"] is False and reply["err"] == "bad_request"
    with socket.create_connection((LOOPBACK, config.port_number), timeout=2) as raw:
        raw.sendall(os.urandom(4096))
    assert connect(config).request("echo", {}) == "pong"


def test_oversized_messages_are_refused_on_both_sides_and_batches_split(launch, connect):
    big = np.zeros(100 * 1024, np.uint8)
    config, server, store = launch(
        make_config(max_message_bytes=64 * 1024), request_callback=lambda kind, payload: big if payload else "ok"
    )
    assert raw_request(config, codec.encode(big), timeout_ms=500) is None  # ZeroMQ closed that connection
    queue = QueuedDataStore(2000)
    client = connect(config, queue)
    with pytest.raises(MessageTooLarge):
        client.request("echo", big)
    server.publish_network({"w": big})  # returns at once; the publisher thread finds it too large
    with pytest.raises(MessageTooLarge):
        server.flush_publish(timeout=5)
    with pytest.raises(RemoteError, match="reply cannot be sent"):
        client.request("echo", {"reply": "big"})
    assert client.request("echo", {}) == "ok"
    for i in range(1500):  # ~170 KB of transitions: more than one message may hold
        queue.insert(transition(0, i))
    assert client.update()
    assert store.rows == [(0, i) for i in range(1500)]
    assert server.client_stats()[f"actor_env/{client.session}"]["batches"] >= 3


def test_raising_or_unserialisable_callback_becomes_error_reply(launch, connect):
    def callback(kind, payload):
        if payload == "raise":
            raise KeyError("boom")
        return object() if payload == "object" else "fine"

    config, server, _ = launch(request_callback=callback)
    client = connect(config)
    with pytest.raises(RemoteError, match="KeyError") as info:
        client.request("echo", "raise")
    assert info.value.kind == "callback_error"
    with pytest.raises(RemoteError, match="cannot be sent"):
        client.request("echo", "object")
    assert server.rejected_requests == 2
    assert client.request("echo", "ok") == "fine"


def test_failing_store_keeps_the_batch_and_it_is_resent_once_store_recovers(launch, connect):
    config, server, store = launch()
    queue = QueuedDataStore(100)
    client = connect(config, queue)
    for i in range(5):
        queue.insert(transition(0, i))
    store.fail = True  # a RuntimeError: "not now", unlike a ValueError refusing the rows
    assert client.update() is False
    assert client.stats()["pending"] == 5 and client.stats()["failed_updates"] == 1
    store.fail = False
    assert client.update() and store.rows == [(0, i) for i in range(5)]
    assert server.client_stats()[f"actor_env/{client.session}"]["rejected_batches"] == 1


def test_config_mismatch_fails_handshake_with_clear_message(launch, connect):
    config, _, _ = launch()
    other = dataclasses.replace(config, version="2", request_types=["send-stats"])
    with pytest.raises(ConfigMismatchError, match="version: learner='1' actor='2'") as info:
        connect(other)
    assert "request_types" in str(info.value)
    assert connect(config).update()  # the learner keeps serving well-configured actors


def test_rate_limit_and_undeclared_request_type_are_refused_locally(launch, connect):
    config, _, _ = launch(make_config(rate_limit=2), request_callback=lambda kind, payload: payload)
    client = connect(config)
    assert client.request("send-stats", {"return": 1.0}) == {"return": 1.0}
    with pytest.raises(RateLimited):
        client.request("send-stats", {"return": 2.0})
    with pytest.raises(ValueError, match="request_types"):
        client.request("undeclared", {})


# --- flaw 5: stale weights --------------------------------------------------------------------------


def test_slow_subscriber_only_sees_newest_params(launch, connect):
    config, server, _ = launch()
    received = []

    def slow_callback(params):
        received.append(int(params["version"]))
        time.sleep(0.3)

    client = connect(config)
    server.publish_network({"version": np.array(0), "w": np.zeros(50_000, np.float32)})
    client.recv_network_callback(slow_callback)
    assert wait_until(lambda: received)
    start = time.monotonic()
    for version in range(1, 41):
        server.publish_network({"version": np.array(version), "w": np.zeros(50_000, np.float32)})
        time.sleep(0.002)
    publish_seconds = time.monotonic() - start
    assert wait_until(lambda: received[-1] == 40, timeout=3.0), received
    time.sleep(0.5)
    assert received[-1] == 40 and received == sorted(set(received))
    # One delivery per 0.3 s callback while publishing, plus the first and the last: no backlog.
    assert len(received) <= 3 + publish_seconds / 0.3, f"stale params delivered: {received} in {publish_seconds:.2f} s"


# --- params pytree, restart, shutdown, CURVE --------------------------------------------------------


def sac_like_params(rng) -> dict:
    """SERL SAC params layout: tanh-policy MLP and an ensemble of 10 critics [256, 256] with LayerNorm."""

    def mlp(sizes, ensemble=()):
        layers = {}
        for j, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers[f"Dense_{j}"] = {
                "kernel": rng.standard_normal((*ensemble, n_in, n_out)).astype(np.float32),
                "bias": np.zeros((*ensemble, n_out), np.float32),
            }
            layers[f"LayerNorm_{j}"] = {
                "scale": np.ones((*ensemble, n_out), np.float32),
                "bias": rng.standard_normal((*ensemble, n_out)).astype(np.float32),
            }
        return layers

    return {
        "modules_actor": {
            "network": mlp([10, 256, 256]),
            "Dense_0": {"kernel": jnp.asarray(rng.standard_normal((256, 8)), jnp.float32), "bias": jnp.zeros(8)},
        },
        "modules_critic": {
            "ensemble": {
                "network": mlp([14, 256, 256], ensemble=(10,)),
                "Dense_0": {"kernel": rng.standard_normal((10, 256, 1)).astype(np.float32)},
            }
        },
        "modules_temperature": {"lagrange": np.float32(0.1), "mixed": np.arange(4).astype(ml_dtypes.bfloat16)},
    }


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        return {k: v for key in tree for k, v in _flatten(tree[key], f"{prefix}/{key}").items()}
    return {prefix: tree}


def test_sac_params_round_trip_bit_exactly(launch, connect):
    config, server, _ = launch()
    params = sac_like_params(np.random.default_rng(0))
    sent = _flatten(params)
    assert 780_000 < sum(np.size(v) for v in sent.values()) < 800_000
    received = []
    connect(config).recv_network_callback(received.append)
    server.publish_network(params)
    assert wait_until(lambda: received)
    got = _flatten(received[0])
    assert got.keys() == sent.keys()
    for path, value in sent.items():
        value = np.asarray(value)
        assert isinstance(got[path], (np.ndarray, np.generic)), path
        assert got[path].dtype == value.dtype and got[path].shape == value.shape, path
        assert np.asarray(got[path]).tobytes() == value.tobytes(), path
    assert type(got["/modules_temperature/lagrange"]) is np.float32


def test_server_restart_clients_reconnect_for_data_and_params(launch, connect):
    config, server, store = launch()
    queue = QueuedDataStore(1000)
    client = connect(config, queue, timeout_ms=300)
    received = []
    client.recv_network_callback(lambda params: received.append(int(params["learner"])))
    server.publish_network({"learner": np.array(1)})
    queue.insert(transition(0, 0))
    assert client.update() and wait_until(lambda: received == [1])

    server.stop()
    _, server2, store2 = launch(config)
    server2.publish_network({"learner": np.array(2)})  # publish number 1 again, from a new learner
    queue.insert(transition(0, 1))
    assert wait_until(client.update, timeout=5.0)
    assert store.rows == [(0, 0)] and store2.rows == [(0, 1)]
    assert wait_until(lambda: received == [1, 2], timeout=3.0), received


def test_stop_joins_threads_and_process_exits_without_stop(launch, connect, tmp_path):
    config, server, _ = launch()
    client = connect(config, QueuedDataStore(10))
    client.recv_network_callback(lambda params: None)
    client.start_async_update(0.05)
    start = time.monotonic()
    client.stop()
    server.stop()
    assert time.monotonic() - start < 2.0
    assert not [t.name for t in threading.enumerate() if t.name.startswith("transport-")]

    script = textwrap.dedent(
        f"""
        import threading
        import numpy as np
        from serl_launcher.transport import QueuedDataStore, TrainerClient, TrainerConfig, TrainerServer
        config = TrainerConfig(
            port_number={config.port_number}, broadcast_port={config.broadcast_port}, bind_address="127.0.0.1"
        )
        server = TrainerServer(config)
        server.register_data_store("actor_env", QueuedDataStore(10))
        server.start(threaded=True)
        client = TrainerClient("actor_env", "127.0.0.1", config, QueuedDataStore(10))
        received = threading.Event()
        client.recv_network_callback(lambda params: received.set())
        client.start_async_update(0.05)
        server.publish_network({{"w": np.ones(3)}})
        assert received.wait(5)
        print("exiting without stop()")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "exiting without stop()" in done.stdout


def test_curve_encrypts_and_admits_only_authorised_actors(launch, connect, tmp_path):
    keys.main([str(tmp_path), "learner", "actor", "intruder"])
    authorised = tmp_path / "authorised"
    authorised.mkdir()
    (authorised / "actor.key").write_bytes((tmp_path / "actor.key").read_bytes())
    learner_config = make_config(
        curve_server_secret_key=str(tmp_path / "learner.key_secret"), curve_authorized_clients=str(authorised)
    )
    actor_config = dataclasses.replace(learner_config, curve_server_secret_key=None, curve_authorized_clients=None)
    config, server, store = launch(learner_config)

    def with_key(name):
        return dataclasses.replace(
            actor_config,
            curve_server_public_key=str(tmp_path / "learner.key"),
            curve_client_secret_key=str(tmp_path / f"{name}.key_secret"),
        )

    queue = QueuedDataStore(10)
    client = connect(with_key("actor"), queue)
    received = []
    client.recv_network_callback(received.append)
    queue.insert(transition(0, 0))
    assert client.update() and store.rows == [(0, 0)]
    server.publish_network({"w": np.ones(2)})
    assert wait_until(lambda: received)
    for intruder in (with_key("intruder"), actor_config):  # wrong key; no CURVE at all
        with pytest.raises(TransportTimeout):
            connect(intruder, timeout_ms=300)
