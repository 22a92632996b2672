"""Soak test of serl_launcher.transport under attack: good actors keep delivering exactly once.

The learner (this process) runs a TrainerServer with a store that counts every
row per actor, and publishes params every 0.1 s. N actor processes insert
PandaPickCube-shaped transitions into a QueuedDataStore as fast as they can,
call update() every 30 inserts, and receive params; one transition in 5,000 has
a NaN reward, which the store refuses (the actor must skip it and go on). A
hostile process meanwhile sends, in a loop: random bytes, msgpack bombs, absurd
batches, spoofed batches and handshakes for the actors' sessions, handshake
floods, junk and oversized subscriptions on the params port, and idle TCP
connections.

At the end it checks, per actor session: no row stored twice, and stored +
dropped + rejected == inserted, with rejected == the NaN rows; that no spoofed
request was accepted; and it reports throughput and the learner's RSS over time
(VmRSS, sampled every 0.5 s). Exit status 1 if a check fails.

    python benchmarks/transport_soak.py                       # 4 actors x 5 minutes
    python benchmarks/transport_soak.py --minutes 0.2 --actors 2   # smoke run
"""

import argparse
import logging
import multiprocessing as mp
import os
import queue as queue_module
import socket
import sys
import threading
import time

import numpy as np
import zmq

from serl_launcher.transport import DataStoreBase, QueuedDataStore, TrainerClient, TrainerConfig, TrainerServer, codec
from serl_launcher.transport.config import fingerprint, shared_view
from same_run import free_ports

HOST = "127.0.0.1"
UPDATE_EVERY = 30
ACTOR_QUEUE = 2000
BAD_EVERY = 5000  # one transition in BAD_EVERY has a NaN reward, refused by the store


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


class CountingStore(DataStoreBase):
    """Counts how often each (actor, index) row arrived; refuses batches holding a NaN reward."""

    def __init__(self, n_actors: int):
        super().__init__(capacity=0)
        self.counts = [np.zeros(1 << 16, np.uint8) for _ in range(n_actors)]
        self.rows = 0

    def insert_stacked(self, stacked):
        if np.isnan(stacked["rewards"]).any():
            raise ValueError("rewards: NaN")
        for actor in np.unique(stacked["actor"]):
            index = stacked["index"][stacked["actor"] == actor]
            counts = self.counts[actor]
            if index.max() >= len(counts):
                counts = self.counts[actor] = np.concatenate([counts, np.zeros(2 * index.max() + 1, np.uint8)])
            np.add.at(counts, index, 1)
        self.rows += len(stacked["rewards"])

    def insert(self, data):
        raise AssertionError("the server must call insert_stacked")

    def __len__(self):
        return self.rows


def make_config(port: int, broadcast_port: int) -> TrainerConfig:
    return TrainerConfig(port, broadcast_port, ["send-stats"], bind_address=HOST, compatibility={"obs": [10]})


def transition(actor: int, index: int, rng) -> dict:
    return {
        "observations": rng.standard_normal(10).astype(np.float32),
        "actions": rng.uniform(-1, 1, 4).astype(np.float32),
        "next_observations": rng.standard_normal(10).astype(np.float32),
        "rewards": float("nan") if index % BAD_EVERY == BAD_EVERY - 1 else 1.0,
        "masks": 1.0,
        "dones": False,
        "actor": np.int64(actor),
        "index": np.int64(index),
    }


def actor_process(actor: int, port: int, broadcast_port: int, seconds: float, sessions, results) -> None:
    logging.getLogger("serl_launcher.transport.client").setLevel(logging.ERROR)  # the NaN rows are on purpose
    rng = np.random.default_rng(actor)
    store = QueuedDataStore(ACTOR_QUEUE)
    client = TrainerClient("actor_env", HOST, make_config(port, broadcast_port), store, wait_for_server=True,
                           timeout_ms=2000)
    client.recv_network_callback(lambda params: None)
    sessions.put(client.session)
    end, index = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        store.insert(transition(actor, index, rng))
        index += 1
        if index % UPDATE_EVERY == 0:
            client.update()
    deadline = time.monotonic() + 60
    while not client.update() and time.monotonic() < deadline:
        time.sleep(0.1)
    client.request("send-stats", {"actor": actor})
    results.put({"actor": actor, "inserted": index, **client.stats()})
    client.stop()


def hostile_process(port: int, broadcast_port: int, seconds: float, sessions, results) -> None:
    """Sends every kind of bad request the issue lists, in a loop; reports what the learner accepted."""
    config = make_config(port, broadcast_port)
    cfg = fingerprint(config)
    ctx = zmq.Context()
    victims, counts, idle = [], {"sent": 0, "spoofs_accepted": 0}, []
    rng = np.random.default_rng(1234)

    def body(type_, payload):
        return codec.encode({"t": type_, "id": 1, "cfg": cfg, "p": payload})

    def batch(session, first_id, data, **extra):
        fields = {"name": "actor_env", "session": session, "first_id": first_id, "dropped": 0, "rejected": 0,
                  "pending": 0, "data": data}
        return body("__data__", {**fields, **extra})

    def hello(session, token="guess"):
        return body("__hello__", {"config": shared_view(config), "name": "actor_env", "session": session,
                                  "token": token, "next_id": 0, "dropped": 0, "rejected": 0})

    one_row = {"observations": np.zeros((1, 10), np.float32), "rewards": np.ones(1)}
    empties = b"\xdd" + ((1 << 20) - 5).to_bytes(4, "big") + b"\x90" * ((1 << 20) - 5)
    garbage = [
        lambda: os.urandom(int(rng.integers(1, 4096))),
        lambda: len(empties).to_bytes(4, "little") + empties,
        lambda: batch("x", 0, {"x": np.zeros((10**9, 0), np.float32)}),
        lambda: body("send-stats", {"blob": np.zeros(2 << 20, np.uint8)}),
        lambda: hello("s" * 100_000),
        lambda: body("__hello__", {"config": {"version": "v" * 500_000}}),
    ]
    end = time.monotonic() + seconds
    sock = None
    while time.monotonic() < end:
        while True:
            try:
                victims.append(sessions.get_nowait())
            except queue_module.Empty:
                break
        if sock is None or rng.random() < 0.05:  # a fresh connection now and then
            if sock is not None:
                sock.close()
            sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.connect(f"tcp://{HOST}:{port}")
        messages = [garbage[int(rng.integers(len(garbage)))]()]
        if victims:
            victim = victims[int(rng.integers(len(victims)))]
            messages += [batch(victim, 10**12, one_row), hello(victim), batch(victim, 0, one_row, dropped=2**62)]
        messages += [hello(f"flood-{rng.integers(1 << 62)}") for _ in range(50)]
        for message in messages:
            try:
                sock.send(message, zmq.NOBLOCK)
                counts["sent"] += 1
            except zmq.Again:  # the learner reads slower than we write: drop the rest of this round
                break
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and sock.poll(200):
            reply = codec.decode(sock.recv())
            if reply.get("ok") and "acked" in (reply.get("p") or {}):  # only spoofed batches are sent
                counts["spoofs_accepted"] += 1
        if rng.random() < 0.2:
            sub = ctx.socket(zmq.SUB)
            sub.linger = 0
            sub.connect(f"tcp://{HOST}:{broadcast_port}")
            for _ in range(16):  # 1 MiB topics would crash this process: libzmq frees them recursively
                sub.setsockopt(zmq.SUBSCRIBE, os.urandom(4096))
            junk = ctx.socket(zmq.DEALER)
            junk.linger = 0
            junk.connect(f"tcp://{HOST}:{broadcast_port}")
            for _ in range(200):
                try:
                    junk.send(b"__subscribe__" if rng.random() < 0.5 else os.urandom(64), zmq.NOBLOCK)
                except zmq.Again:
                    break
            time.sleep(0.2)
            sub.close()
            junk.close()
        if len(idle) < 200:
            try:
                idle.append(socket.create_connection((HOST, port), timeout=1))
            except OSError:
                pass
    for conn in idle:
        conn.close()
    if sock is not None:
        sock.close()
    ctx.term()
    results.put({"hostile": counts})


def sample_rss(samples: list, stop: threading.Event) -> None:
    start = time.monotonic()
    while not stop.wait(0.5):
        samples.append((time.monotonic() - start, rss_mb()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    seconds = 60 * args.minutes

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    port, broadcast_port = free_ports(2)
    store = CountingStore(args.actors)
    stats_received = []
    server = TrainerServer(make_config(port, broadcast_port),
                           request_callback=lambda kind, payload: stats_received.append(payload))
    server.register_data_store("actor_env", store)
    server.start(threaded=True)
    samples, stop_sampling = [(0.0, rss_mb())], threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(samples, stop_sampling), daemon=True)
    sampler.start()

    ctx = mp.get_context("spawn")
    sessions, hostile_sessions, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    actors = [ctx.Process(target=actor_process, args=(a, port, broadcast_port, seconds, sessions, results))
              for a in range(args.actors)]
    hostile = ctx.Process(target=hostile_process, args=(port, broadcast_port, seconds, hostile_sessions, results))
    for proc in actors + [hostile]:
        proc.start()
    start = time.monotonic()
    params = {"w": np.zeros(100_000, np.float32)}
    forwarded, collected, elapsed = 0, [], None
    while len(collected) < args.actors + 1 and time.monotonic() - start < seconds + 180:
        server.publish_network({**params, "t": np.array(time.monotonic() - start)})
        while forwarded < args.actors:
            try:
                hostile_sessions.put(sessions.get_nowait())
                forwarded += 1
            except queue_module.Empty:
                break
        try:
            collected.append(results.get(timeout=0.1))
        except queue_module.Empty:
            continue
        if elapsed is None and sum("actor" in r for r in collected) == args.actors:
            elapsed = time.monotonic() - start  # every actor delivered all it inserted
    elapsed = elapsed or time.monotonic() - start
    for proc in actors + [hostile]:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    stop_sampling.set()
    sampler.join()
    server_stats = server.client_stats()
    server.stop()

    failures = []
    reports = sorted((r for r in collected if "actor" in r), key=lambda r: r["actor"])
    hostile_report = next((r["hostile"] for r in collected if "hostile" in r), None)
    if len(reports) != args.actors or hostile_report is None:
        failures.append(f"{len(reports)} of {args.actors} actors reported, hostile: {hostile_report is not None}")
    total = 0
    print(f"\n{args.actors} actors x {args.minutes:g} min under attack, loopback\n")
    print(f"{'actor':>5s} {'inserted':>10s} {'stored':>10s} {'dropped':>8s} {'rejected':>8s} {'params':>7s}  check")
    for report in reports:
        counts = store.counts[report["actor"]]
        stored, twice = int((counts == 1).sum()), int((counts > 1).sum())
        bad_rows = report["inserted"] // BAD_EVERY
        learner = server_stats.get(f"actor_env/{report['session']}", {})
        problems = []
        if twice:
            problems.append(f"{twice} rows stored more than once")
        if stored + report["dropped"] + report["rejected"] != report["inserted"]:
            problems.append("stored + dropped + rejected != inserted")
        if report["rejected"] > bad_rows or (not report["dropped"] and report["rejected"] != bad_rows):
            problems.append(f"rejected {report['rejected']} for {bad_rows} bad rows")  # bad rows may be dropped
        if report["pending"]:
            problems.append(f"{report['pending']} still pending")
        if learner.get("received") != stored or learner.get("dropped") != report["dropped"]:
            problems.append(f"learner's counters disagree: {learner}")
        failures += [f"actor {report['actor']}: {p}" for p in problems]
        total += stored
        print(f"{report['actor']:5d} {report['inserted']:10,d} {stored:10,d} {report['dropped']:8,d} "
              f"{report['rejected']:8,d} {report['params_received']:7,d}  {'; '.join(problems) or 'ok'}")
    if hostile_report is not None:
        print(f"\nhostile requests sent: {hostile_report['sent']:,}; spoofed batches accepted: "
              f"{hostile_report['spoofs_accepted']}")
        if hostile_report["spoofs_accepted"]:
            failures.append(f"{hostile_report['spoofs_accepted']} spoofed batches accepted")
    if len(stats_received) != len(reports):
        failures.append(f"{len(stats_received)} send-stats requests served for {len(reports)} actors")
    rss = [mb for _, mb in samples]
    print(f"throughput: {total / elapsed:,.0f} transitions/s stored ({total:,} in {elapsed:.0f} s)")
    print(f"learner RSS: start {rss[0]:.0f} MB, peak {max(rss):.0f} MB, end {rss[-1]:.0f} MB; over time (s: MB):")
    step = max(1, len(samples) // 10)
    print("  " + ", ".join(f"{t:.0f}: {mb:.0f}" for t, mb in samples[::step]))
    print("\n" + ("FAILED:\n  " + "\n  ".join(failures) if failures else "all checks passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
