#!/usr/bin/env bash
# An actor; LEARNER_IP selects the learner's host (default: this machine), EXAMPLE the training
# script (default: async_sac_state_sim.py next to this one). Extra flags pass through.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-$here/../../.venv/bin/python}
[ -x "$python" ] || python=python3
exec "$python" "${EXAMPLE:-$here/async_sac_state_sim.py}" --actor --ip "${LEARNER_IP:-localhost}" "$@"
