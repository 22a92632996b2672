#!/usr/bin/env bash
# Train on this machine: one learner and one actor (the README's train command).
#
# From a terminal with tmux installed: a tmux session "serl" with the learner and the actor side by
# side (detach: Ctrl-b d; stop: Ctrl-c in each pane). Otherwise (or with NO_TMUX=1): both run in the
# background, logging to $RUN_DIR/{learner,actor}.log; this script follows the learner's log and
# Ctrl-C stops both, the learner saving a final checkpoint. Extra flags go to both processes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=$(mkdir -p "${RUN_DIR:-runs/pick_cube}" && cd "${RUN_DIR:-runs/pick_cube}" && pwd)
export CHECKPOINT_PATH=${CHECKPOINT_PATH:-$RUN_DIR/checkpoints}
# Simulation defaults for a small machine: actors wait whenever the learner falls below
# TARGET_UTD critic steps per environment step (see --target_utd), and the learner starts from the
# 20 shipped demonstrations, half of every batch (DEMOS= trains from scratch).
DEMOS=${DEMOS-$here/../../demos/pick_cube_20_scripted}
FLAGS=(--target_utd "${TARGET_UTD:-4}" --exp_name "${EXP_NAME:-pick_cube}")
[ -n "$DEMOS" ] && FLAGS+=(--preload_rlds_path "$DEMOS" --demo_ratio 0.5)
FLAGS+=("$@")

if command -v tmux >/dev/null && [ -t 1 ] && [ -z "${NO_TMUX:-}" ]; then
    quoted=$(printf '%q ' "${FLAGS[@]}")
    tmux new-session -d -s serl -x 220 -y 50 -c "$PWD" "$here/run_learner.sh $quoted; read -p 'learner exited; Enter closes'"
    tmux split-window -h -t serl -c "$PWD" "sleep 2; $here/run_actor.sh $quoted; read -p 'actor exited; Enter closes'"
    exec tmux attach -t serl
fi

"$here/run_learner.sh" "${FLAGS[@]}" >"$RUN_DIR/learner.log" 2>&1 &
learner=$!
"$here/run_actor.sh" "${FLAGS[@]}" >"$RUN_DIR/actor.log" 2>&1 &
actor=$!
stop() {
    kill -TERM "$actor" "$learner" 2>/dev/null || true
    wait "$learner" 2>/dev/null || true
    wait "$actor" 2>/dev/null || true
}
trap 'echo "stopping (the learner saves a checkpoint)..."; stop; exit 130' INT TERM
echo "learner (pid $learner) and actor (pid $actor) started; logs in $RUN_DIR; checkpoints in $CHECKPOINT_PATH"
echo "following the learner's log; Ctrl-C stops both"
tail -n +1 -f --pid="$learner" "$RUN_DIR/learner.log" &
wait "$learner" || true
kill -TERM "$actor" 2>/dev/null || true
wait "$actor" 2>/dev/null || true
