"""The README's shell entry points: the two-machine scripts and launch.sh (tmux and background modes)."""
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from serl_launcher.runtime import read_jsonl
from serl_launcher.runtime.protocol import THROTTLE_SLACK_STEPS
from tests.helpers import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "async_sac_state_sim")
SMALL = ["--debug", "--hidden_dims", "16,16", "--critic_ensemble_size", "2", "--critic_subsample_size", "0",
         "--batch_size", "16", "--critic_actor_ratio", "2", "--training_starts", "100", "--random_steps", "50",
         "--log_period", "5", "--bind_address", "127.0.0.1", "--eval_period", "0"]


def _env(**extra):
    return {**os.environ, "PYTHON": sys.executable, "WANDB_MODE": "disabled", **extra}


def _ports():
    port, broadcast = free_ports(2)
    return ["--port_number", str(port), "--broadcast_port", str(broadcast)]


@pytest.mark.slow
def test_the_two_machine_scripts_throttle_without_telling_the_actor(tmp_path):
    """TARGET_UTD is the learner's alone; an actor started with no training flags is still held to it."""
    flags = [*SMALL, *_ports(), "--run_dir", str(tmp_path)]
    learner = subprocess.Popen(["bash", f"{EXAMPLE}/run_learner.sh", *flags, "--max_steps", "100000"],
                               env=_env(TARGET_UTD="1", DEMOS=""), stdout=open(tmp_path / "learner.log", "w"),
                               stderr=subprocess.STDOUT, cwd=tmp_path)
    actor = subprocess.run(["bash", f"{EXAMPLE}/run_actor.sh", *flags, "--max_steps", "600"], env=_env(),
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert actor.returncode == 0, actor.stderr[-3000:]
    learner.send_signal(signal.SIGINT)
    assert learner.wait(timeout=120) == 0, (tmp_path / "learner.log").read_text()[-3000:]
    rows = [row for row in read_jsonl(str(tmp_path / "metrics.jsonl")) if "learner/step" in row]
    assert rows and rows[-1]["env_steps"] == 600
    for row in rows:  # UTD 1 with 2 critic steps per update: env steps <= starts + critic steps + slack
        assert row["env_steps"] <= 100 + 2 * row["learner/step"] + THROTTLE_SLACK_STEPS, row
        assert row["learner/target_utd"] == 1.0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")
def test_launch_inside_tmux_opens_a_window_in_the_current_session(tmp_path):
    server = f"serl-test-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", server]
    run_dir = tmp_path / "run"
    command = (f"PYTHON={sys.executable} WANDB_MODE=disabled RUN_DIR={run_dir} bash {EXAMPLE}/launch.sh "
               + " ".join([*SMALL, *_ports(), "--training_starts", "20", "--max_steps", "60"])
               + f" > {tmp_path}/launch.out 2>&1; "
               f"echo $? > {tmp_path}/launch.rc")
    subprocess.run([*tmux, "new-session", "-d", "-s", "outer", "-x", "200", "-y", "50"], check=True)
    try:
        subprocess.run([*tmux, "send-keys", "-t", "outer", command, "Enter"], check=True)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (run_dir / "checkpoints" / "60").exists():
            time.sleep(1)
        assert (tmp_path / "launch.rc").read_text().strip() == "0", (tmp_path / "launch.out").read_text()
        assert "nested" not in (tmp_path / "launch.out").read_text()
        windows = subprocess.run([*tmux, "list-windows", "-t", "outer", "-F", "#W #{window_panes}"],
                                 capture_output=True, text=True, check=True).stdout.split("\n")
        assert "serl 2" in windows  # learner and actor side by side, in the session we were in
        rows = [row for row in read_jsonl(str(run_dir / "metrics.jsonl")) if "learner/step" in row]
        assert rows and rows[-1]["learner/step"] == 60
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


@pytest.mark.slow
def test_launch_without_tmux_runs_in_the_background_and_stops_cleanly_on_ctrl_c(tmp_path):
    run_dir = tmp_path / "run"
    # As from a terminal, where Ctrl-C is not ignored: when this test runs under a shell's background
    # job, SIGINT arrives here ignored, bash can then not trap it and the INT would do nothing.
    launch = subprocess.Popen(["bash", f"{EXAMPLE}/launch.sh", *SMALL, *_ports(), "--max_steps", "100000"],
                              env=_env(NO_TMUX="1", RUN_DIR=str(run_dir)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=tmp_path, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not _learner_rows(run_dir):
        time.sleep(1)
    assert _learner_rows(run_dir), "the learner never trained"
    os.killpg(launch.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches the whole process group
    output, _ = launch.communicate(timeout=120)
    assert launch.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "Error" not in output
    assert list((run_dir / "checkpoints").iterdir()), "no final checkpoint"


def _learner_rows(run_dir):
    path = run_dir / "metrics.jsonl"
    return path.exists() and [row for row in read_jsonl(str(path)) if "learner/step" in row]
