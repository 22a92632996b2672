#!/usr/bin/env python3
"""Plot a run's evaluation curve from its metrics: success (or return) vs env steps and vs minutes.

    python examples/plot_run.py runs/pick_cube/<run>            # writes runs/pick_cube/<run>/eval_curve.png

Reads <run>/metrics.jsonl (the learner's rows, with every evaluation the actors reported), or
actor_metrics.jsonl when the learner's is missing.
"""
import os
import sys

from serl_launcher.runtime import read_jsonl


def main(run_dir: str) -> str:
    path = next((os.path.join(run_dir, name) for name in ("metrics.jsonl", "actor_metrics.jsonl")
                 if os.path.exists(os.path.join(run_dir, name))), None)
    if path is None:
        raise SystemExit(f"{run_dir}: no metrics.jsonl or actor_metrics.jsonl")
    rows = read_jsonl(path)
    evals = [row for row in rows if "eval/return" in row]
    if not evals:
        raise SystemExit(f"{path}: no evaluation rows yet")
    start = rows[0]["time"]
    key, label = ("eval/success_rate", "eval success") if "eval/success_rate" in evals[0] else ("eval/return",
                                                                                                "eval return")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, x, xlabel in ((axes[0], [r["env_steps"] for r in evals], "env steps"),
                            (axes[1], [(r["time"] - start) / 60 for r in evals], "minutes")):
        axis.plot(x, [r[key] for r in evals], marker="o")
        axis.set_xlabel(xlabel)
        axis.set_ylabel(label)
        if key == "eval/success_rate":
            axis.set_ylim(-0.05, 1.05)  # the whole range, so a run stuck at 0 or at 1 reads as such
        axis.grid(alpha=0.3)
    fig.suptitle(os.path.basename(os.path.abspath(run_dir)))
    fig.tight_layout()
    out = os.path.join(run_dir, "eval_curve.png")
    fig.savefig(out, dpi=100)
    print(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
