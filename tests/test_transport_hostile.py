"""Issue #11: one bad or malicious actor must not poison, bloat, jam or hang the learner.

Each test reproduces one attack (or fault) on loopback with real sockets, as found
against the previous version, and checks the learner's bound. Helpers and fixtures
come from test_transport.py.
"""

import dataclasses
import logging
import os
import resource
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from serl_launcher.transport import (
    ConfigMismatchError,
    DataStoreBase,
    MessageTooLarge,
    QueuedDataStore,
    RemoteError,
    TrainerClient,
    TransportTimeout,
    codec,
    keys,
    limits,
    publisher,
    sockets,
)
from serl_launcher.transport.config import fingerprint, shared_view
from tests.test_transport import connect, launch  # noqa: F401  (fixtures)
from tests.test_transport import LOOPBACK, RecordingStore, make_config, transition, wait_until

pytestmark = pytest.mark.timeout(60)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def body(config, type_, payload, request_id=7):
    return codec.encode({"t": type_, "id": request_id, "cfg": fingerprint(config), "p": payload})


class RawPeer:
    """A hand-made DEALER connection to the learner's request port (what an attacker would use)."""

    def __init__(self, config):
        self.config = config
        self._ctx = zmq.Context()
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(f"tcp://{LOOPBACK}:{config.port_number}")

    def ask(self, message: bytes, timeout_ms: int = 3000):
        self.sock.send(message)
        return codec.decode(self.sock.recv()) if self.sock.poll(timeout_ms) else None

    def close(self):
        self.sock.close()
        self._ctx.term()


@pytest.fixture
def raw_peer():
    peers = []

    def _peer(config):
        peers.append(RawPeer(config))
        return peers[-1]

    yield _peer
    for peer in peers:
        peer.close()


def hello(trainer_config, session, token="attacker-token", **overrides):
    fields = {"config": shared_view(trainer_config), "name": "actor_env", "session": session, "token": token}
    fields.update({"next_id": 0, "dropped": 0, "rejected": 0}, **overrides)
    return body(trainer_config, "__hello__", fields)


def data(config, session, first_id, stacked, **overrides):
    fields = {"name": "actor_env", "session": session, "first_id": first_id, "dropped": 0, "rejected": 0, "pending": 0}
    return body(config, "__data__", {**fields, **overrides, "data": stacked})


# --- 2: memory amplification ------------------------------------------------------------------------


def test_request_of_empty_containers_is_refused_at_once_and_the_learner_keeps_serving(launch, connect, raw_peer):
    config, server, _ = launch(request_callback=lambda kind, payload: "pong")
    peer = raw_peer(config)
    for size in (8 << 20, 1 << 20):  # 8 MiB grew the learner by ~593 MB; 1 MiB is the skeleton limit
        skeleton = b"\xdd" + (size - 5).to_bytes(4, "big") + b"\x90" * (size - 5)  # [[], [], ...]
        message = (len(skeleton)).to_bytes(4, "little") + skeleton
        before, start = rss_mb(), time.monotonic()
        reply = peer.ask(message)
        assert reply is not None and reply["err"] == "bad_request", reply
        assert time.monotonic() - start < 1.5
        assert rss_mb() - before < 64
    assert connect(config).request("echo", {}) == "pong"


# --- 3: subscription bomb on the params port, publishing off the training thread ------------------


_HOSTILE_SUBSCRIBER = """
import os, sys, time, zmq
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.connect(sys.argv[1])
for _ in range(16):
    sub.setsockopt(zmq.SUBSCRIBE, os.urandom(1 << 20))
junk = ctx.socket(zmq.DEALER)
junk.connect(sys.argv[1])
for _ in range(20):
    junk.send(os.urandom(1 << 20))
for _ in range(2000):
    junk.send(b"__subscribe__")
print("sent", flush=True)
time.sleep(30)
"""


def test_subscription_bomb_neither_bloats_nor_stalls_publishing(launch, connect):
    config, server, _ = launch()
    received = []
    connect(config).recv_network_callback(lambda params: received.append(int(params["v"])))
    before = rss_mb()
    hostile = subprocess.Popen(
        [sys.executable, "-c", _HOSTILE_SUBSCRIBER, f"tcp://{LOOPBACK}:{config.broadcast_port}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hostile.stdout.readline().strip() == "sent"
        time.sleep(1.0)  # let the learner's I/O thread take it all in
        for version in range(1, 6):
            start = time.monotonic()
            server.publish_network({"v": np.array(version), "w": np.zeros(10_000, np.float32)})
            assert time.monotonic() - start < 0.05, "publish_network blocked the caller"
            assert server.flush_publish(timeout=2.0), "publishing stalled"
        assert wait_until(lambda: received and received[-1] == 5, timeout=3.0), received
        assert rss_mb() - before < 100, f"learner grew by {rss_mb() - before:.0f} MB"
    finally:
        hostile.kill()
        hostile.wait()


class SlowArray:
    """Params leaf whose host copy takes `seconds` (a big network on a busy device), counting copies."""

    copies = 0

    def __init__(self, value: float, seconds: float):
        self.value, self.seconds = value, seconds

    def __array__(self, dtype=None, copy=None):
        SlowArray.copies += 1
        time.sleep(self.seconds)
        return np.full(4, self.value, np.float32)


def test_publish_network_returns_at_once_and_only_the_newest_params_are_encoded(launch, connect):
    config, server, _ = launch()
    received = []
    connect(config).recv_network_callback(lambda params: received.append(float(params["w"][0])))
    SlowArray.copies = 0
    start = time.monotonic()
    for value in range(4):  # the first is being copied while the next three arrive: only the last follows it
        server.publish_network({"w": SlowArray(value, 0.3)})
    assert time.monotonic() - start < 0.1
    assert server.flush_publish(timeout=5.0)
    assert SlowArray.copies <= 2  # the first (if its copy had started) and the newest, never the two between
    assert wait_until(lambda: received and received[-1] == 3.0), received
    assert 1.0 not in received and 2.0 not in received


def test_failed_publish_is_raised_by_the_next_publish_too(launch):
    config, server, _ = launch(make_config(max_message_bytes=64 * 1024))
    server.publish_network({"w": np.zeros(100 * 1024, np.uint8)})
    time.sleep(0.5)
    with pytest.raises(MessageTooLarge, match="max_message_bytes"):
        server.publish_network({"w": np.zeros(4, np.uint8)})
    server.publish_network({"w": np.zeros(4, np.uint8)})  # reported once; the next publish goes out
    assert server.flush_publish(timeout=5.0)


def test_params_subscribers_are_capped_and_the_others_still_get_params_by_polling(launch, connect, monkeypatch):
    monkeypatch.setattr(limits, "MAX_SUBSCRIBERS", 3)
    config, server, _ = launch()
    ctx = zmq.Context()
    squatters = []
    try:
        for _ in range(4):  # the first three take every slot, and never read
            squatter = ctx.socket(zmq.DEALER)
            squatter.linger = 0
            squatter.connect(f"tcp://{LOOPBACK}:{config.broadcast_port}")
            squatter.send(b"__subscribe__")
            squatters.append(squatter)
            time.sleep(0.2)
        received = []
        connect(config).recv_network_callback(lambda params: received.append(int(params["v"])))
        server.publish_network({"v": np.array(1)})
        assert server.flush_publish(timeout=2.0)
        assert wait_until(lambda: received == [1], timeout=3.0), received  # by its poll, within ~1 s
        assert [bool(squatter.poll(1000)) for squatter in squatters] == [True, True, True, False]
    finally:
        for squatter in squatters:
            squatter.close()
        ctx.term()


def test_a_subscriber_that_stops_registering_is_forgotten(launch, monkeypatch):
    monkeypatch.setattr(publisher, "SUBSCRIBER_TTL_S", 0.3)
    config, server, _ = launch()
    ctx = zmq.Context()
    squatter = ctx.socket(zmq.DEALER)
    squatter.linger = 0
    try:
        squatter.connect(f"tcp://{LOOPBACK}:{config.broadcast_port}")
        squatter.send(b"__subscribe__")  # once, unlike a real subscriber (every second)
        time.sleep(0.3)
        server.publish_network({"v": np.array(1)})
        assert squatter.poll(2000) and squatter.recv()
        time.sleep(1.5)  # forgotten within its TTL plus a second
        server.publish_network({"v": np.array(2)})
        assert server.flush_publish(timeout=2.0)
        assert not squatter.poll(500)
    finally:
        squatter.close()
        ctx.term()


# --- 5: a 135-byte request that jams a row-by-row store ---------------------------------------------


class ListStore(DataStoreBase):
    """An agentlace-style store: no insert_stacked, so the server calls batch_insert(list of dicts)."""

    def __init__(self):
        super().__init__(capacity=10**9)
        self.items = []

    def insert(self, data):
        self.items.append(data)

    def __len__(self):
        return len(self.items)


@pytest.mark.parametrize(
    "columns, match",
    [
        ({"x": np.zeros((10**9, 0), np.float32)}, "1..65536 rows"),  # 135 bytes that jammed the old learner
        ({"x": np.zeros((1000, 0), np.float32), "y": {"z": np.zeros((1000, 0, 5))}}, "hold no data"),
        ({"x": np.zeros((70_000, 1), np.uint8)}, "1..65536 rows"),
        ({"x": np.zeros((0, 3), np.uint8)}, "1..65536 rows"),
    ],
)
def test_batch_with_absurd_row_count_is_refused_at_once(launch, raw_peer, columns, match):
    config, server, _ = launch()
    store = ListStore()
    server.register_data_store("list_store", store)
    peer = raw_peer(config)
    message = data(config, "s", 0, columns, name="list_store")
    start = time.monotonic()
    reply = peer.ask(message)
    assert reply is not None and reply["err"] == "bad_request" and match in reply["msg"], reply
    assert time.monotonic() - start < 1.0 and len(store) == 0


# --- 6: memory held forever from unauthenticated requests -----------------------------------------


def test_handshake_flood_keeps_the_session_table_bounded(launch, connect, raw_peer, monkeypatch):
    monkeypatch.setattr(limits, "MAX_SESSIONS", 50)
    config, server, store = launch()
    queue = QueuedDataStore(100)
    client = connect(config, queue)
    queue.insert(transition(0, 0))
    assert client.update()
    peer = raw_peer(config)
    for i in range(2000):  # pipelined: 20k of these took the old learner 0.8 s
        peer.sock.send(hello(config, f"flood-{i}"))
    replies = [codec.decode(peer.sock.recv()) for _ in range(2000) if peer.sock.poll(5000)]
    assert len(replies) == 2000 and all(reply["ok"] for reply in replies)
    stats = server.client_stats()
    assert len(stats) <= 50 and f"actor_env/{client.session}" in stats
    queue.insert(transition(0, 1))
    assert client.update() and store.rows == [(0, 0), (0, 1)]


def test_huge_fields_are_refused_and_never_echoed_or_logged_in_full(launch, raw_peer, caplog):
    caplog.set_level(logging.INFO, logger="serl_launcher.transport")
    config, server, _ = launch()
    peer = raw_peer(config)
    big = "x" * (900 << 10)
    for message, kind in [
        (hello(config, big), "bad_request"),  # a 900 KiB session id
        (hello(config, "s", token=big), "bad_request"),
        (hello(config, "s", name=big), "bad_request"),
        (hello(config, "s", config={"version": big}), "config_mismatch"),
        (body(config, big[:200] + "-type", {}), "unknown_type"),
    ]:
        peer.sock.send(message)
        assert peer.sock.poll(3000)
        reply_bytes = peer.sock.recv()
        reply = codec.decode(reply_bytes)
        assert reply["err"] == kind, reply
        assert len(reply_bytes) < 3000, f"{kind}: {len(reply_bytes)}-byte reply"
    assert server.client_stats() == {}
    assert max(len(record.getMessage()) for record in caplog.records) < 3000


def test_custom_request_over_max_request_bytes_is_refused_on_both_sides(launch, connect, raw_peer):
    config, server, _ = launch(request_callback=lambda kind, payload: "stored")
    blob = np.zeros(2 << 20, np.uint8)
    reply = raw_peer(config).ask(body(config, "send-stats", {"blob": blob}))
    assert reply["err"] == "bad_request" and "max_request_bytes" in reply["msg"]
    client = connect(config)
    with pytest.raises(MessageTooLarge, match="max_request_bytes"):
        client.request("send-stats", {"blob": blob})
    assert client.request("send-stats", {"blob": blob[: 1 << 19]}) == "stored"


# --- 7: spoofed first_id ------------------------------------------------------------------------------


def test_spoofed_first_id_is_refused_and_the_actor_keeps_delivering(launch, connect, raw_peer):
    config, server, store = launch()
    queue = QueuedDataStore(100)
    client = connect(config, queue)
    for i in range(5):
        queue.insert(transition(0, i))
    assert client.update()
    stacked = {"observations": np.zeros((1, 10), np.float32), "rewards": np.zeros(1), "dones": np.zeros(1, bool)}
    peer = raw_peer(config)
    reply = peer.ask(data(config, client.session, 10**12, stacked))  # the old learner acked this
    assert reply["ok"] is False and reply["err"] == "not_your_session", reply
    reply = peer.ask(hello(config, client.session))  # taking the session over needs its token
    assert reply["ok"] is False and reply["err"] == "not_your_session", reply
    for i in range(5, 10):
        queue.insert(transition(0, i))
    assert client.update()
    assert store.rows == [(0, i) for i in range(10)]


def test_actor_whose_connection_changed_rebinds_its_session_transparently(launch, connect, raw_peer):
    config, server, store = launch()
    queue = QueuedDataStore(100)
    client = connect(config, queue)
    queue.insert(transition(0, 0))
    assert client.update()
    # Another connection handshakes with the session's token, as the same actor after a reconnect would.
    assert raw_peer(config).ask(hello(config, client.session, token=client._token))["ok"]
    queue.insert(transition(0, 1))
    assert client.update()  # refused as not_your_session, handshakes again, delivers
    assert store.rows == [(0, 0), (0, 1)]
    assert server.client_stats()[f"actor_env/{client.session}"]["received"] == 2


def test_ids_may_not_jump_beyond_what_the_actor_reports_lost(launch, raw_peer):
    config, server, store = launch()
    peer = raw_peer(config)
    assert peer.ask(hello(config, "mine", token="secret"))["ok"]
    stacked = {"observations": np.zeros((1, 10), np.float32), "rewards": np.zeros(1), "dones": np.zeros(1, bool)}
    reply = peer.ask(data(config, "mine", 10**12, stacked))
    assert reply["err"] == "bad_request" and "reports only 0 more transitions dropped" in reply["msg"], reply
    reply = peer.ask(data(config, "mine", 2**64 - 2, stacked, dropped=2**64 - 2))  # old: stored, then no reply
    assert reply["err"] == "bad_request" and "2**63" in reply["msg"], reply
    reply = peer.ask(data(config, "mine", 3, stacked, dropped=3))
    assert reply == {"id": 7, "ok": True, "p": {"acked": 3, "dropped": 3}}
    assert len(store) == 1


# --- 8: keys --------------------------------------------------------------------------------------


def test_partial_curve_settings_are_a_value_error_naming_what_is_missing(tmp_path):
    keys.main([str(tmp_path), "learner", "actor"])
    learner = make_config(curve_server_public_key=str(tmp_path / "learner.key"))
    with pytest.raises(ValueError, match="curve_server_secret_key missing, so the learner would accept plaintext"):
        sockets.server_key_pair(learner)
    actor = make_config(curve_client_secret_key=str(tmp_path / "actor.key_secret"))
    with pytest.raises(ValueError, match="curve_server_public_key missing, so the actor would connect in plaintext"):
        TrainerClient("actor_env", LOOPBACK, actor)


def test_removing_an_authorised_key_revokes_the_actor_within_seconds(launch, connect, tmp_path, monkeypatch):
    monkeypatch.setattr(keys, "RELOAD_S", 0.2)
    keys.main([str(tmp_path), "learner", "actor"])
    authorised = tmp_path / "authorised"
    authorised.mkdir()
    (authorised / "actor.key").write_bytes((tmp_path / "actor.key").read_bytes())
    config = make_config(
        curve_server_secret_key=str(tmp_path / "learner.key_secret"), curve_authorized_clients=str(authorised)
    )
    _, server, store = launch(config)
    actor_config = dataclasses.replace(
        config,
        curve_server_secret_key=None,
        curve_authorized_clients=None,
        curve_server_public_key=str(tmp_path / "learner.key"),
        curve_client_secret_key=str(tmp_path / "actor.key_secret"),
    )
    queue = QueuedDataStore(10)
    client = connect(actor_config, queue)
    received = []
    client.recv_network_callback(lambda params: received.append(int(params["v"])))
    queue.insert(transition(0, 0))
    assert client.update()
    server.publish_network({"v": np.array(1)})
    assert wait_until(lambda: received == [1])

    os.remove(authorised / "actor.key")
    time.sleep(0.5)
    queue.insert(transition(0, 1))
    with pytest.raises(RemoteError, match="no longer in curve_authorized_clients"):
        client.update()
    server.publish_network({"v": np.array(2)})
    assert server.flush_publish(timeout=2.0)
    time.sleep(1.5)  # neither the push nor the periodic fetch may deliver it
    assert received == [1] and store.rows == [(0, 0)]
    with pytest.raises(TransportTimeout):
        connect(actor_config, timeout_ms=500)


# --- 9: idle connections and the file-descriptor limit --------------------------------------------


_LEARNER = """
import logging, resource, sys, time
logging.basicConfig(level=logging.WARNING)
resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from serl_launcher.transport import QueuedDataStore, TrainerConfig, TrainerServer
config = TrainerConfig(int(sys.argv[1]), int(sys.argv[2]), ["send-stats", "echo"], bind_address="127.0.0.1")
server = TrainerServer(config)
server.register_data_store("actor_env", QueuedDataStore(1000))
server.start(threaded=True)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1024, reason="hard open-file limit too low")
def test_idle_connections_do_not_lock_actors_out(connect):
    config = make_config()
    learner = subprocess.Popen(
        [sys.executable, "-c", _LEARNER, str(config.port_number), str(config.broadcast_port)],
        stdout=subprocess.PIPE,
        text=True,  # the learner starts with a soft limit of 128 open files
    )
    idle = []
    try:
        assert learner.stdout.readline().strip() == "ready"
        for _ in range(200):
            idle.append(socket.create_connection((LOOPBACK, config.port_number), timeout=2))
        queue = QueuedDataStore(10)
        client = connect(config, queue, timeout_ms=3000)
        queue.insert(transition(0, 0))
        assert client.update()
    finally:
        for sock in idle:
            sock.close()
        learner.kill()
        learner.wait()


def test_running_out_of_file_descriptors_is_logged(tmp_path):
    config = make_config()
    script = _LEARNER.replace("(128, resource.getrlimit(resource.RLIMIT_NOFILE)[1])", "(64, 64)")
    learner = subprocess.Popen(
        [sys.executable, "-c", script, str(config.port_number), str(config.broadcast_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    idle = []
    try:
        assert learner.stdout.readline().strip() == "ready"
        for _ in range(100):  # the hard limit is 64: the learner cannot raise it
            idle.append(socket.create_connection((LOOPBACK, config.port_number), timeout=2))
        time.sleep(1.0)
    finally:
        for sock in idle:
            sock.close()
        learner.kill()
        _, stderr = learner.communicate()
    assert "open-file limit 64" in stderr and "cannot accept a connection" in stderr, stderr[-2000:]


def test_connection_that_never_handshakes_is_closed(launch, monkeypatch):
    monkeypatch.setattr(sockets, "HANDSHAKE_MS", 300)
    config, _, _ = launch()
    with socket.create_connection((LOOPBACK, config.port_number), timeout=3) as idle:
        start = time.monotonic()
        while idle.recv(4096):  # ZeroMQ's greeting, then end of file once the handshake timed out
            pass
        assert time.monotonic() - start < 2.0


# --- 10: mismatched actor and learner -------------------------------------------------------------


def test_incompatible_actor_is_refused_at_handshake_naming_the_key(launch, connect):
    shapes = {"observation_space": "Box(-inf, inf, (10,), float32)", "hidden_dims": [256, 256], "note": "n" * 5000}
    config, _, _ = launch(make_config(compatibility=shapes))
    other = dataclasses.replace(config, compatibility={**shapes, "hidden_dims": [64, 64], "note": "m" * 5000})
    with pytest.raises(ConfigMismatchError) as info:
        connect(other)
    message = str(info.value)
    assert "compatibility['hidden_dims']: learner=[256, 256] actor=[64, 64]" in message
    assert "compatibility['note']: learner='nnnn" in message and len(message) < 1000
    assert "observation_space" not in message
    assert connect(dataclasses.replace(config, compatibility={**shapes, "hidden_dims": (256, 256)})).update()


# --- 11: one bad transition must not stall an actor -----------------------------------------------


def test_refused_or_unencodable_rows_are_skipped_counted_and_the_rest_delivered(launch, connect, caplog):
    config, server, store = launch()
    queue = QueuedDataStore(1000)
    client = connect(config, queue)
    bad = {7: float("nan"), 300: float("inf")}
    for i in range(500):
        row = transition(0, i)
        if i in bad:
            row["rewards"] = bad[i]  # the store raises ValueError for these
        if i == 420:
            row["info"] = object()  # cannot be encoded: only this row's batch fails to stack alike
        queue.insert(row)
    assert client.update() is True
    assert store.rows == [(0, i) for i in range(500) if i not in (7, 300, 420)]
    stats = client.stats()
    assert stats["rejected"] == 3 and stats["dropped"] == 0 and stats["pending"] == 0 and stats["sent"] == 497
    counters = server.client_stats()[f"actor_env/{client.session}"]
    assert counters["rejected"] == 3 and counters["dropped"] == 0 and counters["received"] == 497
    assert any("rewards: non-finite value" in record.getMessage() for record in caplog.records)
    queue.insert(transition(0, 500))
    assert client.update() and store.rows[-1] == (0, 500)


def test_raising_data_callback_keeps_the_rows_stored_and_delivery_going(launch, connect, caplog):
    def callback(name, rows, client):
        raise RuntimeError("logger down")

    config, server, store = launch(data_callback=callback)
    queue = QueuedDataStore(100)
    client = connect(config, queue)
    for i in range(3):
        queue.insert(transition(0, i))
        assert client.update()  # the old learner replied callback_error: update() raised and resent
    assert store.rows == [(0, 0), (0, 1), (0, 2)]
    assert server.client_stats()[f"actor_env/{client.session}"]["duplicates"] == 0
    assert "data_callback raised (the rows stay stored)" in caplog.text


# --- 12: exact counters ---------------------------------------------------------------------------


class FreezingStore(RecordingStore):
    """Stores normally, but the first insert after `freeze` is set takes 1.2 s (a learner busy elsewhere)."""

    freeze = False

    def insert_stacked(self, stacked):
        if self.freeze:
            self.freeze = False
            time.sleep(1.2)
        super().insert_stacked(stacked)


def test_dropped_is_exact_when_a_frozen_learner_stored_rows_late(launch, connect):
    config, server, _ = launch()
    store = FreezingStore()
    server.register_data_store("actor_env", store)
    queue = QueuedDataStore(50)
    client = connect(config, queue, timeout_ms=300)
    for i in range(30):
        queue.insert(transition(0, i))
    store.freeze = True
    assert client.update() is False  # times out; the learner stores rows 0..29 a second later
    for i in range(30, 130):  # meanwhile the 50-slot queue evicts rows 0..79, none acknowledged
        queue.insert(transition(0, i))
    time.sleep(1.2)
    assert wait_until(client.update, timeout=5.0)
    stored = {i for _, i in store.rows}
    lost = 130 - len(stored)
    assert stored == set(range(30)) | set(range(80, 130)) and lost == 50
    assert client.stats()["dropped"] == lost  # the old client reported 80
    assert server.client_stats()[f"actor_env/{client.session}"]["dropped"] == lost


# --- issue #10: agentlace's DataStoreBase API ------------------------------------------------------


def test_store_without_insert_stacked_gets_agentlace_list_of_dicts(launch, connect):
    config, server, _ = launch()
    store = ListStore()
    server.register_data_store("list_store", store)
    queue = QueuedDataStore(100)
    client = TrainerClient("list_store", LOOPBACK, config, queue, timeout_ms=1000)
    try:
        for i in range(3):
            queue.insert(transition(1, i))
        assert client.update()
    finally:
        client.stop()
    assert [float(item["rewards"]) for item in store.items] == [0.0, 1.0, 2.0]
    assert store.items[2]["observations"].shape == (10,) and store.items[2]["dones"].dtype == bool
