"""The actor's full loop at 50 Hz against franky-sim while the learner trains, and FrankaReach-v0 learned in real time.

Starts franky-sim (a MuJoCo FR3 serving the libfranka protocol on loopback), a learner process
(examples/async_sac_franka, SAC on FrankaReach-v0's spaces) and runs the actor here, in this
process, through serl_launcher.runtime.run_actor: policy inference + FrankaEnv.step (50 Hz rate
keeper) + queue + transport, with the learner training next to it on the same 2 cores. Reports
from the actor's metrics rows:
  - the control period p50 / p99 per report window and missed deadlines per 1000 steps;
  - evaluation success vs env steps and vs wall-clock; env steps and minutes to 90% success
    (target: under 10 minutes), with the curve as PNG under --out.
Evaluations run on the same arm between episodes (there is one arm), so wall-clock includes them.

    python benchmarks/robot_loop.py                       # until 90% success or --minutes 20
    python benchmarks/robot_loop.py --minutes 3           # timing only
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "async_sac_franka", "async_sac_franka.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="stop after this long (wall-clock)")
    parser.add_argument("--target", type=float, default=0.9, help="stop once an evaluation reaches this success")
    parser.add_argument("--eval_period", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42, help="learner and actor seed")
    parser.add_argument("--eval_episodes", type=int, default=5)
    parser.add_argument("--agent_flags", default="--critic_ensemble_size 2 --critic_subsample_size 0",
                        help="learner agent flags (this actor builds the same agent)")
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "bench_robot_loop"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    from robot_env_loop import start_franky_sim
    from same_run import cpu_model, free_ports

    from serl_launcher.runtime import ActorConfig, run_actor
    from serl_launcher.utils.launcher import make_env, make_sac_agent, make_trainer_config

    sim, ip = start_franky_sim()
    port, broadcast = free_ports(2)
    ports = ["--port_number", str(port), "--broadcast_port", str(broadcast), "--bind_address", "127.0.0.1"]
    agent_flags = args.agent_flags.split()
    learner = subprocess.Popen([sys.executable, EXAMPLE, "--learner", "--debug", "--run_dir", args.out,
                                "--checkpoint_period", "0", "--seed", str(args.seed), *ports, *agent_flags],
                               stdout=open(os.path.join(args.out, "learner.log"), "w"), stderr=subprocess.STDOUT)
    rows, stop, started = [], threading.Event(), time.monotonic()

    def progress(env_steps, metrics):
        rows.append({"env_steps": env_steps, "minutes": (time.monotonic() - started) / 60, **metrics})
        if metrics.get("eval/success_rate", 0) >= args.target or time.monotonic() - started > 60 * args.minutes:
            stop.set()
        if "eval/return" in metrics or "actor/period_p50_ms" in metrics:
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)

    try:
        env = make_env("franka_env:FrankaReach-v0", robot_ip=ip, realtime_ignore=True)
        ensemble = int(_flag(agent_flags, "--critic_ensemble_size", 10))
        agent = make_sac_agent(args.seed, env.observation_space.sample(), env.action_space.sample(), discount=0.97,
                               critic_ensemble_size=ensemble,
                               critic_subsample_size=int(_flag(agent_flags, "--critic_subsample_size", 2)) or None)
        config = ActorConfig(max_steps=10**9, random_steps=1000, eval_period=args.eval_period,
                             eval_episodes=args.eval_episodes, seed=args.seed)
        compatibility = {"observation_space": repr(env.observation_space), "action_space": repr(env.action_space),
                         "agent": agent.describe()}
        result = run_actor(config, agent, env, make_trainer_config(port, broadcast, compatibility=compatibility),
                           "127.0.0.1", progress_fn=progress, stop=stop)
        env.close()
    finally:
        learner.send_signal(signal.SIGINT)
        learner.wait(timeout=120)
        sim.terminate()
    _report(rows, result, args, cpu_model())


def _flag(flags: list, name: str, default):
    return flags[flags.index(name) + 1] if name in flags else default


def _report(rows: list, result, args, cpu: str) -> None:
    periods = [r for r in rows if "actor/period_p50_ms" in r]
    evals = [r for r in rows if "eval/success_rate" in r]
    missed = periods[-1].get("actor/missed_deadlines", 0) if periods else 0
    print(f"\n# {time.strftime('%Y-%m-%d %H:%M')} seed {args.seed}, {cpu}, {os.cpu_count()} CPUs; franky-sim, "
          f"learner and actor on this machine; load {os.getloadavg()[0]:.1f}")
    print(f"actor: {result.env_steps} env steps, {result.episodes} episodes, transport {result.transport}")
    if periods:
        print(f"control period per 10 s window: p50 median {np.median([r['actor/period_p50_ms'] for r in periods]):.2f} ms,"
              f" p99 median {np.median([r['actor/period_p99_ms'] for r in periods]):.2f} ms, worst window p99 "
              f"{max(r['actor/period_p99_ms'] for r in periods):.2f} ms; missed deadlines {missed:.0f} "
              f"= {1000 * missed / max(1, result.env_steps):.2f} per 1000 steps")
    for r in evals:
        print(f"eval @ {r['env_steps']:>6} env steps, {r['minutes']:5.1f} min: success {r['eval/success_rate']:.2f}, "
              f"return {r['eval/return']:.1f}")
    reached = [r for r in evals if r["eval/success_rate"] >= args.target]
    if reached:
        print(f"{args.target:.0%} success at {reached[0]['env_steps']} env steps, {reached[0]['minutes']:.1f} min "
              f"(target: under 10 minutes)")
    else:
        print(f"{args.target:.0%} success not reached within {args.minutes} min")
    with open(os.path.join(args.out, "curve.json"), "w") as file:
        json.dump(evals, file)
    if evals:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (by_steps, by_minutes) = plt.subplots(1, 2, figsize=(10, 3.5))
        for axis, key, label in ((by_steps, "env_steps", "env steps"), (by_minutes, "minutes", "minutes")):
            axis.plot([r[key] for r in evals], [r["eval/success_rate"] for r in evals], marker="o")
            axis.set_xlabel(label)
            axis.set_ylabel("eval success")
            axis.set_ylim(-0.05, 1.05)
        fig.suptitle("FrankaReach-v0 on franky-sim, 50 Hz, learner + actor on 2 CPU cores")
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "success_curve.png"))
        print(f"curve: {os.path.join(args.out, 'success_curve.png')}")


if __name__ == "__main__":
    main()
