"""Does the hand-written LayerNorm gradient (networks.mlp.layer_norm) still pay? Same run, interleaved.

Each round runs two fresh processes: update_high_utd calls/s of SERL's default agent (ensemble 10 /
subsample 2, batch 256 x 8) with the custom VJP, and with the same math differentiated by autodiff
(the function's forward pass alone). Prints the per-round ratio and its median.

    python benchmarks/layer_norm_gradient.py [--rounds 7]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROLE = r"""
import json, sys, time
import numpy as np, jax
import serl_launcher.networks.mlp as mlp
if sys.argv[1] == "autodiff":
    mlp.layer_norm = lambda x, scale, bias, epsilon: mlp._layer_norm_fwd(x, scale, bias, epsilon)[0]
from serl_launcher.utils.launcher import make_sac_agent
agent = make_sac_agent(0, np.zeros(10, np.float32), np.zeros(4, np.float32))
rng = np.random.default_rng(0); n = 2048
batch = jax.device_put({"observations": rng.normal(size=(n, 10)).astype(np.float32),
    "next_observations": rng.normal(size=(n, 10)).astype(np.float32),
    "actions": rng.uniform(-1, 1, size=(n, 4)).astype(np.float32), "rewards": rng.normal(size=n).astype(np.float32),
    "masks": np.ones(n, np.float32), "dones": np.zeros(n, bool)})
for _ in range(3):
    agent, _ = agent.update_high_utd(batch, utd_ratio=8); jax.block_until_ready(agent.state)
start = time.perf_counter()
for _ in range(int(sys.argv[2])):
    agent, _ = agent.update_high_utd(batch, utd_ratio=8); jax.block_until_ready(agent.state)
print(json.dumps({"calls_per_s": int(sys.argv[2]) / (time.perf_counter() - start)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=15)
    args = parser.parse_args()
    from same_run import REPO_ROOT, cpu_model

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    ratios = []
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} {cpu_model()}, {os.cpu_count()} CPUs")
    for round_ in range(args.rounds):
        rates = {}
        for variant in ("autodiff", "custom"):
            out = subprocess.run([sys.executable, "-c", ROLE, variant, str(args.calls)], capture_output=True,
                                 text=True, env=env, check=True).stdout
            rates[variant] = json.loads(out.strip().splitlines()[-1])["calls_per_s"]
        ratios.append(rates["custom"] / rates["autodiff"])
        print(f"round {round_ + 1}: custom VJP {rates['custom']:.2f} calls/s, autodiff {rates['autodiff']:.2f} "
              f"calls/s, ratio {ratios[-1]:.3f} (load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"custom / autodiff LayerNorm gradient: median {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f}, {args.rounds} rounds)")


if __name__ == "__main__":
    main()
