#!/usr/bin/env python3
"""Train PandaPickCube-v0 with a learner and one actor on this machine; report steps and time to 90% success.

    python benchmarks/train_pick_cube.py                      # defaults of `make train`
    python benchmarks/train_pick_cube.py --compare_demos      # without, then with demos/pick_cube_20_scripted
    python benchmarks/train_pick_cube.py --vision --with_demos  # DrQ from the two cameras, 20 scripted vision demos
    python benchmarks/train_pick_cube.py --plot "seed 42=runs/a/no_demos/curve.json" ...  # saved curves, one figure

Prints the evaluation curve (deterministic policy, --eval_n_trajs episodes every --eval_period env steps,
read from the actor's metrics rows, <run>/actor_metrics.jsonl),
the env steps and wall-clock time at which success first reached --target_success, and saves the curve as
PNG and JSON under --out_dir. Targets (issue): >= 90% success within 25k env steps and 30 minutes on a
2-core CPU; with demos, at least 2x fewer env steps.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

from same_run import free_ports

from serl_launcher.runtime import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE_SCRIPT = os.path.join(ROOT, "examples", "async_sac_state_sim", "async_sac_state_sim.py")
VISION_SCRIPT = os.path.join(ROOT, "examples", "async_drq_sim", "async_drq_sim.py")
RECORD_DEMO = os.path.join(ROOT, "examples", "record_demo.py")
TARGET_ENV_STEPS, TARGET_MINUTES = 25_000, 30


def run(name: str, args, extra_flags) -> dict:
    """One training run; returns its curve and when (if) it reached the target."""
    out_dir = os.path.join(args.out_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    port, broadcast = free_ports(2)
    common = ["--debug", "--port_number", str(port), "--broadcast_port", str(broadcast), "--seed", str(args.seed),
              "--target_utd", str(args.target_utd), "--log_period", "100", "--run_dir", out_dir,
              "--bind_address", "127.0.0.1", *extra_flags, *args.flags]
    env = {**os.environ, "MUJOCO_GL": "egl", "WANDB_MODE": "disabled"}
    learner_log, actor_log = os.path.join(out_dir, "learner.log"), os.path.join(out_dir, "actor.log")
    rows_path = os.path.join(out_dir, "actor_metrics.jsonl")
    if os.path.exists(rows_path):
        os.remove(rows_path)
    start = time.time()
    script = VISION_SCRIPT if args.vision else STATE_SCRIPT
    learner = subprocess.Popen([sys.executable, script, "--learner", *common], env=env,
                               stdout=open(learner_log, "w"), stderr=subprocess.STDOUT)
    actor = subprocess.Popen([sys.executable, script, "--actor", *common, "--eval_period", str(args.eval_period),
                              "--eval_n_trajs", str(args.eval_n_trajs), "--max_steps", str(args.max_env_steps)],
                             env=env, stdout=open(actor_log, "w"), stderr=subprocess.STDOUT)
    curve, reached = [], None
    print(f"[{name}] learner pid {learner.pid}, actor pid {actor.pid}; logs in {out_dir}", flush=True)
    try:
        while time.time() - start < args.max_minutes * 60 and actor.poll() is None and learner.poll() is None:
            time.sleep(2)
            rows = read_jsonl(rows_path) if os.path.exists(rows_path) else []
            for row in rows:
                if "eval/success_rate" not in row or (curve and row["env_steps"] <= curve[-1]["env_steps"]):
                    continue
                env_steps = row["env_steps"]
                point = {"env_steps": env_steps, "minutes": (row["time"] - start) / 60,
                         "return": row["eval/return"], "success": row["eval/success_rate"]}
                curve.append(point)
                print(f"[{name}] env steps {env_steps:6d}  {point['minutes']:5.1f} min  "
                      f"return {point['return']:7.2f}  success {point['success']:.2f}", flush=True)
                if reached is None and point["success"] >= args.target_success:
                    reached = point
            if reached is not None:
                break
    finally:
        for process in (actor, learner):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (actor, learner):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    result = {"name": name, "curve": curve, "reached": reached, "flags": common}
    with open(os.path.join(out_dir, "curve.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def plot(results, path: str, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    legend_rows = -(-len(results) // 2)
    fig, (by_steps, by_time) = plt.subplots(1, 2, figsize=(11, 4 + 0.25 * legend_rows))
    for result in results:
        steps = [p["env_steps"] for p in result["curve"]]
        minutes = [p["minutes"] for p in result["curve"]]
        success = [p["success"] for p in result["curve"]]
        by_steps.plot(steps, success, marker="o", label=result["name"])
        by_time.plot(minutes, success, marker="o", label=result["name"])
    for axis, xlabel in ((by_steps, "environment steps"), (by_time, "wall-clock minutes")):
        axis.axhline(target, color="gray", linestyle="--", linewidth=1)
        axis.set_xlabel(xlabel)
        axis.set_ylabel("eval success rate")
        axis.set_ylim(-0.05, 1.05)
        axis.grid(alpha=0.3)
    fig.suptitle("PandaPickCube: async learner + 1 actor on this machine")
    fig.legend(*by_steps.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize="small")
    fig.tight_layout(rect=(0, 0.06 * legend_rows, 1, 1))  # room below the axes for the legend
    fig.savefig(path, dpi=100)


def plot_saved(labelled_paths, out_dir: str, target: float) -> None:
    results = []
    for item in labelled_paths:
        label, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--plot takes LABEL=CURVE_JSON, got {item!r}")
        with open(path) as f:
            results.append({**json.load(f), "name": label})
    os.makedirs(out_dir, exist_ok=True)
    plot_path = os.path.join(out_dir, "success_curve.png")
    plot(results, plot_path, target)
    for result in results:
        print(summary(result, target))
    print(f"curve: {plot_path}")


def summary(result, target: float) -> str:
    reached = result["reached"]
    if reached is None:
        last = result["curve"][-1] if result["curve"] else None
        tail = f"best success {max(p['success'] for p in result['curve']):.2f}, last at {last['env_steps']} steps" if last else "no evaluation"
        return f"{result['name']}: did not reach {target:.0%} ({tail})"
    return (f"{result['name']}: {target:.0%} success at {reached['env_steps']} env steps "
            f"({reached['env_steps'] / TARGET_ENV_STEPS:.2f}x the {TARGET_ENV_STEPS} target) after "
            f"{reached['minutes']:.1f} min ({reached['minutes'] / TARGET_MINUTES:.2f}x the {TARGET_MINUTES} min target)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target_success", type=float, default=0.9)
    parser.add_argument("--max_env_steps", type=int, default=TARGET_ENV_STEPS)
    parser.add_argument("--max_minutes", type=float, default=TARGET_MINUTES + 5)
    parser.add_argument("--eval_period", type=int, default=1000)
    parser.add_argument("--eval_n_trajs", type=int, default=10)
    parser.add_argument("--target_utd", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--demos", default=os.path.join(ROOT, "demos", "pick_cube_20_scripted"))
    parser.add_argument("--compare_demos", action="store_true", help="run without demos, then with --demos")
    parser.add_argument("--with_demos", action="store_true", help="only the run with --demos")
    parser.add_argument("--vision", action="store_true",
                        help="PandaPickCubeVision-v0 with the pixel agent (examples/async_drq_sim); --demos defaults to "
                             "20 scripted vision demos, recorded into runs/demos/pick_cube_vision_20 if missing")
    parser.add_argument("--out_dir", default=os.path.join(ROOT, "runs", "bench_pick_cube"))
    parser.add_argument("--plot", nargs="+", metavar="LABEL=CURVE_JSON",
                        help="only plot these saved curves (<run>/curve.json) together into --out_dir/success_curve.png")
    parser.add_argument("flags", nargs="*", help="extra flags for both processes (after --)")
    args = parser.parse_args()
    if args.plot:
        plot_saved(args.plot, args.out_dir, args.target_success)
        return

    if args.vision and args.demos == parser.get_default("demos"):
        args.demos = os.path.join(ROOT, "runs", "demos", "pick_cube_vision_20")
        if (args.with_demos or args.compare_demos) and not os.path.exists(args.demos):
            subprocess.run([sys.executable, RECORD_DEMO, "--env", "PandaPickCubeVision-v0", "--teleop", "scripted",
                            "--noise", "0.3", "--output_dir", args.demos], check=True,
                           env={**os.environ, "MUJOCO_GL": "egl"})
    demo_flags = ["--preload_rlds_path", args.demos, "--demo_ratio", "0.5"]
    runs = []
    if not args.with_demos:
        runs.append(("no_demos", []))
    if args.with_demos or args.compare_demos:
        runs.append(("demos", demo_flags))
    results = [run(name, args, flags) for name, flags in runs]

    os.makedirs(args.out_dir, exist_ok=True)
    plot_path = os.path.join(args.out_dir, "success_curve.png")
    plot(results, plot_path, args.target_success)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (2-core machine: > 2 means other work competed)")
    for result in results:
        print(summary(result, args.target_success))
    if len(results) == 2 and all(r["reached"] for r in results):
        ratio = results[0]["reached"]["env_steps"] / results[1]["reached"]["env_steps"]
        print(f"demos cut env steps to {args.target_success:.0%} success by {ratio:.2f}x (target >= 2x)")
    print(f"curve: {plot_path}")


if __name__ == "__main__":
    main()
