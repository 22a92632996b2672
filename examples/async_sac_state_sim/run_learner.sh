#!/usr/bin/env bash
# The learner, with checkpoints; extra flags are passed through (e.g. --debug, --preload_rlds_path demos/...).
# Paths are relative to where you run it from.
here=$(cd "$(dirname "$0")" && pwd)
exec python "$here/async_sac_state_sim.py" --learner \
    --checkpoint_path "${CHECKPOINT_PATH:-runs/pick_cube/checkpoints}" --checkpoint_period 1000 "$@"
