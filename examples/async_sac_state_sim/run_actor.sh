#!/usr/bin/env bash
# An actor; LEARNER_IP selects the learner's host (default: this machine).
cd "$(dirname "$0")" && exec python async_sac_state_sim.py --actor --ip "${LEARNER_IP:-localhost}" "$@"
