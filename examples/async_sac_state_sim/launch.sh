#!/usr/bin/env bash
# Train on this machine: one learner and one actor (the README's `make train`).
#
# Both write to RUN_DIR (default runs/pick_cube/<date_time>): metrics.jsonl, checkpoints/, logs.
# In tmux: new windows in the current session, or (from a terminal with tmux installed) a new
# session "serl" with the learner and the actor side by side; stop with Ctrl-C in each pane.
# Otherwise (or with NO_TMUX=1) both run in the background with logs in RUN_DIR; this script
# follows the learner's log and Ctrl-C stops both, the learner saving a final checkpoint.
# Extra flags go to both processes; TARGET_UTD and DEMOS are the learner's (see run_learner.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=${RUN_DIR:-runs/pick_cube/$(date +%Y-%m-%d_%H-%M-%S)}
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
flags=(--run_dir "$RUN_DIR" "$@")
quoted=$(printf '%q ' "${flags[@]}")
# tmux panes start from the tmux server's environment, not this shell's: pass the settings along.
settings=""
for var in PYTHON TARGET_UTD DEMOS EXAMPLE WANDB_MODE MUJOCO_GL; do
    [ -n "${!var+x}" ] && settings+="$var=$(printf '%q' "${!var}") "
done
learner_cmd="$settings$here/run_learner.sh $quoted"
actor_cmd="sleep 2; $settings$here/run_actor.sh $quoted"
echo "run directory: $RUN_DIR"

if [ -z "${NO_TMUX:-}" ] && command -v tmux >/dev/null && { [ -n "${TMUX:-}" ] || [ -t 1 ]; }; then
    hold="; read -rp 'exited; Enter closes this pane'"
    if [ -n "${TMUX:-}" ]; then  # already inside tmux: a new window here, not a nested session
        tmux new-window -n serl -c "$PWD" "$learner_cmd$hold"
        tmux split-window -h -t serl -c "$PWD" "$actor_cmd$hold"
        echo "learner and actor are in the tmux window 'serl'"
        exit 0
    fi
    session=serl-$(basename "$RUN_DIR")
    tmux new-session -d -s "$session" -x 220 -y 50 -c "$PWD" "$learner_cmd$hold"
    tmux split-window -h -t "$session" -c "$PWD" "$actor_cmd$hold"
    exec tmux attach -t "$session"
fi

# Each in a session of its own: Ctrl-C in this terminal reaches only this script, which forwards
# exactly one stop signal (a second one makes a process abort without its final checkpoint).
setsid "$here/run_learner.sh" "${flags[@]}" >"$RUN_DIR/learner.log" 2>&1 &
learner=$!
setsid bash -c 'sleep 2; exec "$0" "$@"' "$here/run_actor.sh" "${flags[@]}" >"$RUN_DIR/actor.log" 2>&1 &
actor=$!
stop() {
    kill -INT "$actor" "$learner" 2>/dev/null || true
    wait "$learner" 2>/dev/null || true
    wait "$actor" 2>/dev/null || true
}
trap 'echo; echo "stopping (the learner saves a checkpoint)..."; stop; echo "stopped; run directory $RUN_DIR"; exit 0' INT TERM
echo "learner (pid $learner) and actor (pid $actor) started; logs in $RUN_DIR/{learner,actor}.log"
echo "following the learner's log; Ctrl-C stops both"
tail -n +1 -f --pid="$learner" "$RUN_DIR/learner.log" &
wait "$learner" || true
kill -INT "$actor" 2>/dev/null || true
wait "$actor" 2>/dev/null || true
