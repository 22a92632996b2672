"""Camera transitions on loopback: serl_launcher.transport vs agentlace (what SERL uses) in the same run.

The harness of transport_throughput.py (its counting store, TrainerServer in the measured process,
the actor in its own process of the same venv, QueuedDataStore(2000), update() every 30 inserts;
see same_run.py for the fresh processes and the foreign-load accounting), with the transitions of
the pixel agent: observation and next observation each hold 2 camera frames (front, wrist,
128x128x3 uint8) and the 7-float state, plus action 4, reward, mask, done: 197 kB per transition.
The frames are real renders of franka_sim's PandaPickCubeVision-v0 (random actions, then the
scripted expert; recorded once per run by image_compression.record_frames, or `--frames FILE.npz`),
so agentlace's built-in lz4 (pickle + lz4.frame on every message) sees realistic content; ours
sends raw bytes. Figures: transitions/s delivered into the learner's store, the same as MB/s of
payload, and update() p50 / p99 (a blocking round trip carrying 30 transitions, ~5.9 MB).

    python benchmarks/image_transport.py            # 5 rounds, 3,000 transitions per process
    python benchmarks/image_transport.py --quick    # 2 rounds, 600 transitions
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

import numpy as np

import same_run
import transport_throughput as tt
from same_run import Figure, Group

CAMERAS = ("front", "wrist")
STATE_DIM, ACTION_DIM = 7, 4


def image_transitions(frames_path: str | None, seed: int, n: int = 64) -> list:
    """Transitions whose obs / next_obs frames are consecutive recorded frames of one episode (random
    frames when no file is given); the actor cycles through them."""
    rng = np.random.default_rng(seed)
    if frames_path:
        data = np.load(frames_path)
        episode = data["episode"]
        starts = [t for t in range(len(episode) - 1) if episode[t] == episode[t + 1]]
        frames = {camera: data[camera] for camera in CAMERAS}
    else:
        starts = list(range(n))
        frames = {camera: rng.integers(0, 256, size=(n + 1, 128, 128, 3), dtype=np.uint8) for camera in CAMERAS}
    chosen = starts[:n] if len(starts) >= n else starts

    def observation(t):
        return {"state": rng.standard_normal(STATE_DIM).astype(np.float32),
                **{camera: np.ascontiguousarray(frames[camera][t]) for camera in CAMERAS}}

    return [
        {
            "observations": observation(t),
            "actions": rng.uniform(-1, 1, ACTION_DIM).astype(np.float32),
            "next_observations": observation(t + 1),
            "rewards": float(rng.random()),
            "masks": 1.0,
            "dones": False,
        }
        for t in chosen
    ]


def transition_bytes(transition) -> int:
    if isinstance(transition, dict):
        return sum(transition_bytes(v) for v in transition.values())
    return np.asarray(transition).nbytes


def role_image_throughput(meter, side: str, transitions: int, frames: str | None) -> dict:
    """The learner: a threaded TrainerServer with a counting store; one actor in its own process."""
    lib = tt._library(side)
    port, broadcast_port = same_run.free_ports(2)
    server = lib.TrainerServer(tt._config(lib, port, broadcast_port))
    done = threading.Event()
    counter = {"rows": 0, "lock": threading.Lock()}
    server.register_data_store("actor_env", tt._counting_store(lib.DataStoreBase, counter, transitions, done))
    server.start(threaded=True)
    child = same_run.spawn_role("image_actor", port=port, broadcast_port=broadcast_port, transitions=transitions,
                                frames=frames)
    try:
        if child.expect("READY", timeout=300) is None:
            raise RuntimeError("the actor process did not connect within 300 s")
        meter.track(child.pid)
        with meter:  # an idle second in the load window, as transport_throughput does
            time.sleep(tt.LOAD_PAD_S)
        with meter:
            start = time.perf_counter()
            child.send("GO")
            if not done.wait(timeout=600):
                raise RuntimeError(f"only {counter['rows']}/{transitions} transitions delivered in 600 s")
            elapsed = time.perf_counter() - start
        result = child.result(timeout=120)
    finally:
        child.finish()
    if counter["rows"] != transitions:
        raise RuntimeError(f"{counter['rows']} transitions stored for {transitions} sent: duplicates")
    durations = np.asarray(result["update_ms"])
    return {
        "transitions_per_s": transitions / elapsed,
        "megabytes_per_s": transitions * result["transition_bytes"] / elapsed / 1e6,
        "update_p50_ms": float(np.percentile(durations, 50)),
        "update_p99_ms": float(np.percentile(durations, 99)),
        "transition_kB": result["transition_bytes"] / 1e3,
    }


def role_image_actor(meter, side: str, port: int, broadcast_port: int, transitions: int, frames: str | None) -> dict:
    """The actor: insert camera transitions, update() every 30 inserts, then until all are delivered."""
    lib = tt._library(side)
    store = lib.QueuedDataStore(tt.ACTOR_QUEUE)
    client = lib.TrainerClient("actor_env", tt.HOST, tt._config(lib, port, broadcast_port), data_store=store,
                               wait_for_server=True, timeout_ms=30000)
    pool = image_transitions(frames, seed=0)
    same_run.emit("READY")
    same_run.wait_for("GO")
    durations = []
    for i in range(transitions):
        store.insert(pool[i % len(pool)])
        if (i + 1) % tt.UPDATE_EVERY == 0:
            start = time.perf_counter()
            client.update()
            durations.append((time.perf_counter() - start) * 1000)
    while not client.update():
        pass
    client.stop()
    return {"update_ms": durations, "transition_bytes": transition_bytes(pool[0])}


def _prepare_frames(path: str | None) -> tuple[str | None, str, str | None]:
    """(frames file for the roles, a line saying what they are, a temporary file to delete)."""
    if path:
        path = os.path.abspath(path)  # the roles run in a temporary working directory
        return path, f"frames: {path}", None
    try:
        from image_compression import record_frames

        data = record_frames(random_steps=100, expert_steps=100)
    except Exception as exc:  # no franka_sim / mujoco / EGL here: random frames (incompressible) instead
        return None, f"frames: RANDOM (rendering failed: {type(exc).__name__}: {exc}); agentlace's lz4 gains nothing", None
    handle, temporary = tempfile.mkstemp(prefix="image-transport-frames-", suffix=".npz")
    os.close(handle)
    np.savez(temporary, **data)
    return temporary, (f"frames: rendered now, PandaPickCubeVision-v0, {len(data['episode'])} per camera "
                       f"(100 random-action + 100 expert steps)"), temporary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    same_run.add_arguments(parser)
    parser.add_argument("--transitions", type=int, default=None, help="transitions per process (default 3000, quick 600)")
    parser.add_argument("--frames", default=None, help="an .npz from `image_compression.py record` (default: render now)")
    args = parser.parse_args()
    transitions = args.transitions or (600 if args.quick else 3000)
    if transitions < tt.UPDATE_EVERY:
        parser.error(f"--transitions must be >= {tt.UPDATE_EVERY}")
    frames, frames_line, temporary = _prepare_frames(args.frames)
    try:
        groups = [Group("images, 1 actor", "image_throughput", {"transitions": transitions, "frames": frames}, (
            Figure("transitions_per_s", "image transitions/s delivered, 1 actor", True, ",.0f", "transitions/s"),
            Figure("megabytes_per_s", "payload MB/s delivered, 1 actor", True, ",.0f", "MB/s"),
            Figure("update_p50_ms", "update() p50 ms (30 transitions)", False, short="update() p50 ms"),
            Figure("update_p99_ms", "update() p99 ms (30 transitions)", False, short="p99 ms"),
        ))]
        same_run.run(
            __doc__.splitlines()[0], "image_transport", groups, args, peer_name="agentlace",
            notes=[f"loopback; learner (threaded server) and the actor are separate processes of the same venv; "
                   f"{transitions:,} transitions of 2 cameras x 128x128x3 uint8 in obs and next_obs (+ state "
                   f"{STATE_DIM}, action {ACTION_DIM}), QueuedDataStore({tt.ACTOR_QUEUE}), update() every "
                   f"{tt.UPDATE_EVERY} inserts", frames_line],
        )
    finally:
        if temporary:
            os.remove(temporary)


if __name__ == "__main__":
    main()
