"""Would compressing camera frames raise the transport's delivered transitions/s? lz4 and zstd on rendered frames.

Two steps, because the codecs are not dependencies of this project (never install them into its venv):

    # 1. record frames: PandaPickCubeVision-v0 (front + wrist, 128x128x3 uint8), random actions and
    #    the scripted expert, with this project's venv (franka_sim, mujoco)
    MUJOCO_GL=egl .venv/bin/python benchmarks/image_compression.py record --out /tmp/pick_cube_frames.npz
    # 2. measure the codecs in a separate venv that has them, and model the links
    python3 -m venv /tmp/compress-venv && /tmp/compress-venv/bin/pip install numpy lz4 zstandard
    /tmp/compress-venv/bin/python benchmarks/image_compression.py measure --frames /tmp/pick_cube_frames.npz \\
        --loopback_rate 2400 --fixed_us 16

What `measure` compresses: the unit the transport would compress, one message of `--batch` (30)
transitions as TrainerClient sends them (columns: every row's obs frames, then every row's next_obs
frames; obs and next_obs of consecutive steps share frames), and, for reference, single frames. The
same frames with sensor-like noise (Gaussian, sigma `--noise` grey levels: 1 and 2) bracket real cameras,
whose noise rendered frames lack. Speeds are single-threaded, medians of `--repeats`.

The link model (stated, not a measurement of a link): one actor's update() is a blocking request /
reply, so compressing on the actor, sending and decompressing on the learner add up per transition:
    raw:        t = fixed + bytes / bandwidth
    compressed: t = fixed + bytes / compress_speed + (bytes / ratio) / bandwidth + bytes / decompress_speed
delivered transitions/s = 1 / t. "frames once" sends each distinct frame of a message once (obs and
next_obs of consecutive steps share frames; no codec, no CPU), alone and before a codec. `fixed` is the transport's per-transition cost that does not depend
on the bytes (`--fixed_us`, from the 10-float transitions of transport_throughput.py: 1 / its
transitions/s). Loopback is modelled as a link whose bandwidth makes the raw model equal the
measured loopback rate of image_transport.py (`--loopback_rate`).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

CAMERAS = ("front", "wrist")
LINKS = (("100 Mbit/s", 100e6 / 8), ("1 Gbit/s", 1e9 / 8))


# --------------------------------------------------------------------------- record
def record_frames(random_steps: int = 200, expert_steps: int = 200, seed: int = 0) -> dict:
    """Consecutive frames of PandaPickCubeVision-v0: `random_steps` steps of uniform random actions, then
    `expert_steps` of the scripted expert (it reaches, grasps and lifts: the arm and the cube move).

    Returns {"front": (N, 128, 128, 3) uint8, "wrist": ..., "episode": (N,) int, "policy": (N,) str}; a
    reset (after 100 steps, or termination) starts a new episode: no transition spans two episodes.
    """
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")
    import gymnasium as gym

    import franka_sim  # noqa: F401  (registers the envs)
    from franka_sim.experts import PickCubeExpert

    env = gym.make("PandaPickCubeVision-v0")
    expert = PickCubeExpert()
    env.action_space.seed(seed)
    frames = {camera: [] for camera in CAMERAS}
    episodes, policies = [], []
    episode = 0

    def keep(obs, policy):
        for camera in CAMERAS:
            frames[camera].append(obs["images"][camera])
        episodes.append(episode)
        policies.append(policy)

    for policy, steps in (("random", random_steps), ("expert", expert_steps)):
        obs, _ = env.reset(seed=seed + episode)
        keep(obs, policy)
        for _ in range(steps):
            if policy == "random":
                action = env.action_space.sample()
            else:
                action = expert.act({"state": {**obs["state"], "block_pos": env.unwrapped.block_pos}})
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                episode += 1
                obs, _ = env.reset(seed=seed + episode)
            keep(obs, policy)
        episode += 1
    env.close()
    return {**{camera: np.stack(frames[camera]) for camera in CAMERAS},
            "episode": np.asarray(episodes), "policy": np.asarray(policies)}


def load_frames(path: str | None, noises=(), seed: int = 0) -> dict:
    """{"sets": {"sim": the recorded frames (or, without a file, rendered now), "noisy s": the same plus
    Gaussian noise of sigma s grey levels, for each s}, each {camera: (N, H, W, 3) uint8}, "episode", "policy"}."""
    data = dict(np.load(path)) if path else record_frames()
    rng = np.random.default_rng(seed)
    sets = {"sim": {camera: data[camera] for camera in CAMERAS}}
    for noise in noises:
        sets[f"noisy {noise:g}"] = {
            camera: np.clip(data[camera] + rng.normal(0.0, noise, size=data[camera].shape), 0, 255).astype(np.uint8)
            for camera in CAMERAS}
    return {"sets": sets, "episode": data["episode"], "policy": data["policy"]}


def transition_messages(frames: dict, episode: np.ndarray, batch: int, frames_once: bool = False) -> list:
    """Raw image bytes of consecutive messages of `batch` transitions, laid out as the transport's column
    batches are: per field (observations, next_observations), per camera, the rows' frames in order.

    frames_once: each distinct frame once instead (per camera, the frames of obs and next_obs in step
    order: next_obs of one step is obs of the next within an episode), what a transport that knew
    the two share frames would send."""
    starts = [t for t in range(len(episode) - 1) if episode[t] == episode[t + 1]]  # obs t -> next_obs t+1
    messages = []
    for i in range(0, len(starts) - batch + 1, batch):
        rows = np.asarray(starts[i:i + batch])
        if frames_once:
            groups = [np.unique(np.concatenate([rows, rows + 1]))]
        else:
            groups = [rows, rows + 1]  # observations, next_observations
        messages.append(b"".join(np.ascontiguousarray(frames[camera][index]).tobytes()
                                 for index in groups for camera in CAMERAS))
    return messages


# -------------------------------------------------------------------------- codecs
def codecs() -> dict:
    """name -> (compress, decompress) for what is importable: lz4.frame, zstandard levels 1-3."""
    found = {}
    try:
        import lz4.frame

        found["lz4 (frame, default)"] = (lz4.frame.compress, lz4.frame.decompress)
    except ImportError:
        pass
    try:
        import zstandard

        for level in (1, 2, 3):
            compressor = zstandard.ZstdCompressor(level=level)
            decompressor = zstandard.ZstdDecompressor()
            found[f"zstd level {level}"] = (compressor.compress, decompressor.decompress)
    except ImportError:
        pass
    return found


def measure_codec(compress, decompress, units: list, repeats: int) -> dict:
    """Ratio (raw / compressed, all units) and single-threaded compress / decompress speeds in MB/s of raw."""
    raw = sum(len(u) for u in units)
    packed = [compress(u) for u in units]
    for original, blob in zip(units[:3], packed[:3]):
        if decompress(blob) != original:
            raise RuntimeError("round trip changed the data")
    compress_s, decompress_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for u in units:
            compress(u)
        compress_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        for blob in packed:
            decompress(blob)
        decompress_s.append(time.perf_counter() - start)
    return {"ratio": raw / sum(len(b) for b in packed),
            "compress_MBps": raw / statistics.median(compress_s) / 1e6,
            "decompress_MBps": raw / statistics.median(decompress_s) / 1e6}


def delivered_rate(wire_bytes: float, cpu_s: float, bandwidth: float, fixed_s: float) -> float:
    """Transitions/s of one actor under the serial model of the module docstring, from the bytes each
    transition puts on the link and the codec CPU time it costs (compress + decompress)."""
    return 1.0 / (fixed_s + cpu_s + wire_bytes / bandwidth)


# --------------------------------------------------------------------------- main
def cmd_record(args) -> None:
    start = time.perf_counter()
    data = record_frames(args.random_steps, args.expert_steps, args.seed)
    np.savez(args.out, **data)
    n = len(data["episode"])
    print(f"{n} frames per camera ({args.random_steps} random + {args.expert_steps} expert steps, "
          f"{data['episode'].max() + 1} episodes) in {time.perf_counter() - start:.1f} s -> {args.out}")


def cmd_measure(args) -> None:
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import same_run

    found = codecs()
    if not found:
        raise SystemExit("neither lz4 nor zstandard is importable: run with a venv that has them (see --help)")
    data = load_frames(args.frames, args.noise)
    episode, policy, sets = data["episode"], data["policy"], data["sets"]
    same_run.print_header("Camera-frame compression for the transport (lz4, zstd) and a link model", [
        f"frames: {args.frames or 'rendered now'}: {len(episode)} per camera ({', '.join(CAMERAS)}, "
        f"{'x'.join(map(str, sets['sim'][CAMERAS[0]].shape[1:]))} uint8), {int((policy == 'random').sum())} random-action "
        f"and {int((policy == 'expert').sum())} expert steps; 'noisy s': the same + Gaussian noise of sigma s grey levels "
        f"(rendered frames have none; real cameras do)",
        f"unit 'message': {args.batch} transitions (obs + next_obs frames of both cameras) as TrainerClient "
        f"batches them; 'frame': one camera frame; single-threaded, median of {args.repeats} passes"])
    schemes = {}  # (frame set, scheme) -> (wire bytes, codec CPU s) per transition
    print(f"\n{'frames':<9s} {'unit':<16s} {'codec':<22s} {'ratio':>6s} {'compress MB/s':>14s} {'decompress MB/s':>16s}")
    for label, frames in sets.items():
        messages = transition_messages(frames, episode, args.batch)
        raw = sum(map(len, messages)) / len(messages) / args.batch  # bytes per transition as sent today
        once = transition_messages(frames, episode, args.batch, frames_once=True)
        once_raw = sum(map(len, once)) / len(once) / args.batch
        schemes[(label, "raw (as sent today)")] = (raw, 0.0)
        schemes[(label, "frames once")] = (once_raw, 0.0)
        print(f"{label:<9s} {'message, once':<16s} {'(none: frames once)':<22s} {raw / once_raw:6.2f}")
        single = [f.tobytes() for camera in CAMERAS for f in frames[camera]]
        for unit, units, size in (("message", messages, raw), ("message, once", once, once_raw),
                                  ("frame", single, None)):
            for name, (compress, decompress) in found.items():
                result = measure_codec(compress, decompress, units, args.repeats)
                ratio = result["ratio"] * (raw / size if size else 1.0)  # against the bytes sent today
                print(f"{label:<9s} {unit:<16s} {name:<22s} {ratio:6.2f} {result['compress_MBps']:14,.0f} "
                      f"{result['decompress_MBps']:16,.0f}")
                if size:
                    cpu = size / (result["compress_MBps"] * 1e6) + size / (result["decompress_MBps"] * 1e6)
                    scheme = name if unit == "message" else f"frames once + {name}"
                    schemes[(label, scheme)] = (size / result["ratio"], cpu)
    transition_bytes = schemes[("sim", "raw (as sent today)")][0]
    fixed_s = args.fixed_us * 1e-6
    links = list(LINKS)
    if args.loopback_rate:
        if 1.0 / args.loopback_rate <= fixed_s:
            raise SystemExit("--loopback_rate must be below 1 / --fixed_us")
        links.append(("loopback", transition_bytes / (1.0 / args.loopback_rate - fixed_s)))
    print(f"\n(ratio: bytes sent today / bytes after the scheme; 'message, once': frames once, then the codec)")
    print(f"\nmodel: one actor, {transition_bytes / 1e3:.1f} kB of frames per transition, fixed cost "
          f"{args.fixed_us:g} us per transition"
          + (f"; loopback = the link at which the raw model gives the measured {args.loopback_rate:,.0f}/s "
             f"({links[-1][1] / 1e6:,.0f} MB/s)" if args.loopback_rate else "; no --loopback_rate: loopback not modelled"))
    print("delivered transitions/s (x raw), per message of "
          f"{args.batch} transitions; codec CPU = compress on the actor + decompress on the learner, single-threaded:")
    print(f"  {'frames':<9s} {'scheme':<36s} {'kB/tr.':>7s} {'CPU us':>7s}" + "".join(f" {name:>16s}" for name, _ in links))
    for (label, scheme), (wire, cpu) in schemes.items():
        raw_wire, _ = schemes[(label, "raw (as sent today)")]
        cells = ""
        for _, bw in links:
            rate = delivered_rate(wire, cpu, bw, fixed_s)
            cells += f" {rate:9,.0f} ({rate / delivered_rate(raw_wire, 0.0, bw, fixed_s):4.2f}x)"
        print(f"  {label:<9s} {scheme:<36s} {wire / 1e3:7.1f} {cpu * 1e6:7.0f}{cells}")
    print("\nThe link figures are a model from measured codec speeds and sizes, not a measurement of a link.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("record", help="render frames of PandaPickCubeVision-v0 to an .npz")
    record.add_argument("--out", required=True)
    record.add_argument("--random_steps", type=int, default=200)
    record.add_argument("--expert_steps", type=int, default=200)
    record.add_argument("--seed", type=int, default=0)
    measure = commands.add_parser("measure", help="codec ratios and speeds, and the link model")
    measure.add_argument("--frames", help="an .npz from `record` (default: render now, needs franka_sim)")
    measure.add_argument("--batch", type=int, default=30, help="transitions per message (update() every 30 inserts)")
    measure.add_argument("--noise", type=float, nargs="*", default=[1.0, 2.0],
                         help="sensor-like noise of the 'noisy' frame sets, sigma in grey levels (default 1 2)")
    measure.add_argument("--repeats", type=int, default=5)
    measure.add_argument("--quick", action="store_true", help="1 pass instead of --repeats")
    measure.add_argument("--fixed_us", type=float, default=16.0,
                         help="per-transition transport cost independent of bytes, us (1 / transport_throughput's rate)")
    measure.add_argument("--loopback_rate", type=float, default=None,
                         help="our image transitions/s on loopback, from image_transport.py (models loopback)")
    args = parser.parse_args()
    if args.command == "record":
        cmd_record(args)
    else:
        if args.quick:
            args.repeats = 1
        cmd_measure(args)


if __name__ == "__main__":
    main()
