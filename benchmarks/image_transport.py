"""Camera transitions on loopback: serl_launcher.transport vs agentlace (what SERL uses) in the same run.

The roles of transport_throughput.py (its counting store, TrainerServer in the measured process,
the actor in its own process of the same venv, QueuedDataStore(2000), update() every 30 inserts;
see same_run.py for the fresh processes and the foreign-load accounting), run with the transitions
of the pixel agent (transport_throughput.image_transitions): observation and next observation each
hold 2 camera frames (front, wrist, 128x128x3 uint8) and the 7-float state, plus action 4, reward,
mask, done: 197 kB per transition.
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

import numpy as np

import same_run
import transport_throughput as tt
from same_run import Figure, Group

STATE_DIM, ACTION_DIM = 7, 4


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
        groups = [Group("images, 1 actor", "throughput",
                        {"transitions": transitions, "actors": 1, "images": True, "frames": frames}, (
            Figure("transitions_per_s", "image transitions/s delivered, 1 actor", True, ",.0f", "transitions/s"),
            Figure("megabytes_per_s", "payload MB/s delivered, 1 actor", True, ",.0f", "MB/s"),
            Figure("update_p50_ms", "update() p50 ms (30 transitions)", False, short="update() p50 ms"),
            Figure("update_p99_ms", "update() p99 ms (30 transitions)", False, short="p99 ms"),
        ))]
        same_run.run(
            __doc__.splitlines()[0], "transport_throughput", groups, args, peer_name="agentlace",
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
