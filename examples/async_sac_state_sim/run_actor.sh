#!/usr/bin/env bash
# An actor; LEARNER_IP selects the learner's host (default: this machine).
here=$(cd "$(dirname "$0")" && pwd)
exec python "$here/async_sac_state_sim.py" --actor --ip "${LEARNER_IP:-localhost}" "$@"
