#!/usr/bin/env bash
# The learner, with the training defaults of `make train` (it is the single source of truth for the
# UTD throttle and the demos: actors ask it). Extra flags pass through (e.g. --debug, --resume).
#   TARGET_UTD  critic steps per env step actors are held to (default 8; 0 for a real robot)
#   DEMOS       RLDS demos preloaded, half of every batch (default: the 20 shipped ones; DEMOS= for none)
#   EXAMPLE     the training script (default: async_sac_state_sim.py next to this one)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-$here/../../.venv/bin/python}
[ -x "$python" ] || python=python3
DEMOS=${DEMOS-$here/../../demos/pick_cube_20_scripted}
flags=(--learner --target_utd "${TARGET_UTD:-8}")
[ -n "$DEMOS" ] && flags+=(--preload_rlds_path "$DEMOS" --demo_ratio 0.5)
exec "$python" "${EXAMPLE:-$here/async_sac_state_sim.py}" "${flags[@]}" "$@"
