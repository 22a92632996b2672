#!/usr/bin/env bash
# The whole real-robot path without a robot: starts franky-sim (a simulated FR3 that speaks
# libfranka's protocol), then a learner and an actor training FrankaReach-v0 on it in real time
# (50 Hz), as launch.sh does for the simulated pick-cube task. Ctrl-C stops everything.
# franky-sim, learner and actor share this machine's cores, so the learner runs plain SAC (ensemble
# 2), the configuration that reached 90% success in 8.9 minutes on 2 cores (docs/robot.md).
# Extra flags go to both processes and win (e.g. --critic_ensemble_size 10 --critic_subsample_size 2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-$here/../../.venv/bin/python}
[ -x "$python" ] || python=python3
sim_bin=$(dirname "$python")/franky-sim
[ -x "$sim_bin" ] || { echo "franky-sim is not installed: pip install -e '.[robot-test]'" >&2; exit 1; }

RUN_DIR=${RUN_DIR:-runs/franka_reach/$(date +%Y-%m-%d_%H-%M-%S)}
mkdir -p "$RUN_DIR"
"$sim_bin" -s mujoco >"$RUN_DIR/franky_sim.log" 2>&1 &
sim=$!
trap 'kill "$sim" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
    ip=$(sed -n "s/.*Connect to the server using '\([0-9.]*\)'.*/\1/p" "$RUN_DIR/franky_sim.log" | head -n 1)
    [ -n "$ip" ] && break
    kill -0 "$sim" 2>/dev/null || { echo "franky-sim failed; see $RUN_DIR/franky_sim.log" >&2; exit 1; }
    sleep 0.5
done
[ -n "${ip:-}" ] || { echo "franky-sim did not start within 60 s" >&2; exit 1; }
echo "franky-sim serves a simulated FR3 at $ip"
EXAMPLE="$here/async_sac_franka.py" PYTHON="$python" RUN_DIR="$RUN_DIR" TARGET_UTD=0 DEMOS= \
    NO_TMUX=${NO_TMUX-1} bash "$here/../async_sac_state_sim/launch.sh" --robot_ip "$ip" --realtime_ignore \
    --critic_ensemble_size 2 --critic_subsample_size 0 "$@"
