"""The classic pixel benchmarks on this project's learner/actor: eval return vs env steps, as the papers report.

Runs examples/async_drq_sim.py on a classic_envs task, synchronous (--sync, as the papers train) or
asynchronous (learner + actor processes, --async_mode), with DrQ's or SAC-AE's settings, reads the run's
metrics.jsonl and prints eval return against env steps counted as the papers count them (control
steps: agent steps x action repeat), wall-clock, and the published figures. The curve goes to a PNG.
Every run is capped by --env_steps and --minutes: on a 2-core CPU the papers' 100k steps take hours,
so the script also prints the measured seconds per env step and what 100k would take.

    python benchmarks/pixel_benchmarks.py --task cheetah-run --setting drq --env_steps 100000 --minutes 600
    python benchmarks/pixel_benchmarks.py --task pendulum --setting sac_ae --env_steps 10000
    python benchmarks/pixel_benchmarks.py --task car-racing --setting drq --env_steps 20000
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "async_drq_sim", "async_drq_sim.py")
# task -> (env id, action repeat counted into env steps, published eval returns)
TASKS = {
    "cheetah-run": ("classic_envs:dmc/cheetah-run-v0", 4,
                    "100k steps: RAD 447+-88, DrQ 344+-67, CURL 299+-48; 500k: RAD 728+-71, DrQ 660+-96"),
    "walker-walk": ("classic_envs:dmc/walker-walk-v0", 2, "100k steps: DrQ 612+-164, RAD 514+-123"),
    "cartpole-swingup": ("classic_envs:dmc/cartpole-swingup-v0", 8, "100k steps: DrQ 759+-92, RAD 745+-40"),
    "pendulum": ("classic_envs:VisualPendulum-v0", 1, "the replaced implementation: solved (>= -200) in ~10k steps"),
    "car-racing": ("classic_envs:CarRacingPixels-v0", 4, "the replaced implementation: ~900 after ~800k steps"),
}
# The papers' agent settings, as far as this agent has them (actor/critic MLPs, latent, batch, UTD 1).
SETTINGS = {
    "drq": ["--encoder_type", "sac_ae", "--latent_dim", "50", "--augmentation_pad", "4"],
    "sac_ae": ["--encoder_type", "sac_ae", "--latent_dim", "50", "--reconstruction", "--augmentation_pad", "0"],
    "sac_ae_drq": ["--encoder_type", "sac_ae", "--latent_dim", "50", "--reconstruction", "--augmentation_pad", "4"],
}
COMMON = ["--hidden_dims", "1024,1024", "--critic_ensemble_size", "2", "--critic_subsample_size", "0",
          "--discount", "0.99", "--batch_size", "128", "--critic_actor_ratio", "1", "--target_utd", "1",
          "--debug", "--bind_address", "127.0.0.1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="pendulum")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="drq")
    parser.add_argument("--env_steps", type=int, default=10_000, help="papers' env steps (action repeat counted)")
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock cap")
    parser.add_argument("--eval_every", type=int, default=2_000, help="papers' env steps between evaluations")
    parser.add_argument("--eval_episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--async_mode", action="store_true", help="learner + actor processes instead of --sync")
    parser.add_argument("--extra", default="", help="more flags for the example, e.g. '--batch_size 512'")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    env_id, repeat, published = TASKS[args.task]
    out = args.out or os.path.join(REPO, "runs", f"bench_pixels_{args.task}_{args.setting}_{args.seed}")
    os.makedirs(out, exist_ok=True)
    flags = [*COMMON, *SETTINGS[args.setting], "--env", env_id, "--seed", str(args.seed), "--run_dir", out,
             "--max_steps", str(args.env_steps // repeat), "--eval_period", str(args.eval_every // repeat),
             "--eval_n_trajs", str(args.eval_episodes), "--training_starts", str(max(1000 // repeat, 100)),
             "--random_steps", str(max(1000 // repeat, 100)), *args.extra.split()]
    started = time.monotonic()
    processes = _start(flags, out, args.async_mode)
    try:
        while any(p.poll() is None for p in processes[-1:]) and time.monotonic() - started < 60 * args.minutes:
            time.sleep(5)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait(timeout=300)
    _report(out, repeat, published, args, time.monotonic() - started)


def _start(flags: list, out: str, async_mode: bool) -> list:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    log = lambda name: open(os.path.join(out, name), "w")  # noqa: E731
    if not async_mode:
        return [subprocess.Popen([sys.executable, EXAMPLE, "--sync", *flags], stdout=log("sync.log"),
                                 stderr=subprocess.STDOUT, env=env)]
    from same_run import free_ports

    ports = ["--port_number", *map(str, free_ports(1)), "--broadcast_port", *map(str, free_ports(1))]
    learner = subprocess.Popen([sys.executable, EXAMPLE, "--learner", *flags, *ports, "--max_steps", "100000000"],
                               stdout=log("learner.log"), stderr=subprocess.STDOUT, env=env)
    actor = subprocess.Popen([sys.executable, EXAMPLE, "--actor", *flags, *ports], stdout=log("actor.log"),
                             stderr=subprocess.STDOUT, env=env)
    return [learner, actor]


def _report(out: str, repeat: int, published: str, args, seconds: float) -> None:
    from same_run import cpu_model

    path = os.path.join(out, "metrics.jsonl")
    rows = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    start = rows[0]["time"] if rows else 0
    evals = [(row["env_steps"] * repeat, (row["time"] - start) / 60, row["eval/return"]) for row in rows
             if "eval/return" in row]
    reached = max((row["env_steps"] for row in rows), default=0) * repeat
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} {cpu_model()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{args.task} ({args.setting}, {'async' if args.async_mode else 'sync'}, seed {args.seed}): {reached} env "
          f"steps in {seconds / 60:.1f} min")
    for steps, minutes, value in evals:
        print(f"  eval @ {steps:>7} env steps, {minutes:6.1f} min: return {value:8.1f}")
    if reached:
        print(f"  {seconds / reached:.3f} s per env step here: 100k env steps would take {1e5 * seconds / reached / 3600:.1f} h")
    print(f"  published: {published}")
    if evals:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axis = plt.subplots(figsize=(5, 3.5))
        axis.plot([e[0] for e in evals], [e[2] for e in evals], marker="o")
        axis.set_xlabel("env steps (action repeat counted)")
        axis.set_ylabel("eval return")
        axis.set_title(f"{args.task}, {args.setting}, 2-core CPU")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "return_curve.png"))
        print(f"  curve: {os.path.join(out, 'return_curve.png')}")


if __name__ == "__main__":
    main()
