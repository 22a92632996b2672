#!/usr/bin/env bash
# The learner, with checkpoints; extra flags are passed through (e.g. --debug, --preload_rlds_path demos/...).
cd "$(dirname "$0")" && exec python async_sac_state_sim.py --learner \
    --checkpoint_path "${CHECKPOINT_PATH:-$PWD/../../runs/pick_cube/checkpoints}" --checkpoint_period 1000 "$@"
