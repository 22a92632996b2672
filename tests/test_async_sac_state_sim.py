"""End to end: the example script as two processes on loopback (learner + actor), then a resumed learner.

What the processes did is read from the metrics files and checkpoints they write, not from log text.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from serl_launcher.runtime import read_jsonl
from serl_launcher.utils.checkpoints import AgentCheckpointer, load_agent
from tests.helpers import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMOS = os.path.join(ROOT, "demos", "pick_cube_20_scripted")
SCRIPT = os.path.join(ROOT, "examples", "async_sac_state_sim", "async_sac_state_sim.py")
SMALL = ["--debug", "--hidden_dims", "32,32", "--critic_ensemble_size", "2", "--critic_subsample_size", "0",
         "--batch_size", "16", "--critic_actor_ratio", "2", "--training_starts", "100", "--random_steps", "50",
         "--log_period", "10", "--target_utd", "0.5", "--bind_address", "127.0.0.1"]


def _start(flags, log_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.Popen([sys.executable, SCRIPT, *flags], stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                            env=env, cwd=ROOT)


def _finish(process, timeout):
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@pytest.mark.slow
def test_learner_and_actor_processes_train_checkpoint_and_resume(tmp_path):
    port, broadcast = free_ports(2)
    common = [*SMALL, "--port_number", str(port), "--broadcast_port", str(broadcast), "--run_dir", str(tmp_path)]
    learner_flags = ["--learner", *common, "--max_steps", "100000", "--checkpoint_period", "20",
                     "--preload_rlds_path", DEMOS, "--demo_ratio", "0.5"]
    # The actor starts first: it must wait for the learner, not crash.
    actor = _start(["--actor", *common, "--max_steps", "300", "--eval_period", "300", "--eval_n_trajs", "2"],
                   tmp_path / "actor.log")
    time.sleep(1.0)
    learner = _start(learner_flags, tmp_path / "learner.log")
    assert _finish(actor, 240) == 0, (tmp_path / "actor.log").read_text()[-3000:]
    time.sleep(1.0)
    learner.send_signal(signal.SIGINT)  # Ctrl-C: a quiet stop with a final checkpoint
    assert _finish(learner, 60) == 0, (tmp_path / "learner.log").read_text()[-3000:]

    rows = read_jsonl(str(tmp_path / "metrics.jsonl"))
    learner_rows = [row for row in rows if "learner/step" in row]
    assert learner_rows and learner_rows[-1]["env_steps"] == 300
    assert [row for row in rows if "eval/return" in row][0]["env_steps"] == 300
    assert "Traceback" not in (tmp_path / "learner.log").read_text()

    checkpoints = AgentCheckpointer(str(tmp_path / "checkpoints"))
    final_step = checkpoints.latest_step()
    assert final_step >= learner_rows[-1]["learner/step"]
    assert load_agent(str(tmp_path / "checkpoints")).config.critic_ensemble_size == 2

    # Resume: a new learner on the same run directory continues from the final checkpoint.
    learner = _start(["--learner", *common, "--max_steps", str(final_step + 10)], tmp_path / "learner2.log")
    actor = _start(["--actor", *common, "--max_steps", "1000", "--eval_period", "0"], tmp_path / "actor2.log")
    assert _finish(learner, 240) == 0, (tmp_path / "learner2.log").read_text()[-3000:]
    actor.send_signal(signal.SIGINT)  # a throttled actor waits for its learner to come back; stop it
    assert _finish(actor, 60) == 0, (tmp_path / "actor2.log").read_text()[-3000:]
    assert AgentCheckpointer(str(tmp_path / "checkpoints")).latest_step() == final_step + 10
    resumed = [row["learner/step"] for row in read_jsonl(str(tmp_path / "metrics.jsonl")) if "learner/step" in row]
    assert resumed[-1] == final_step + 10 and len(resumed) > len(learner_rows)

    # The checkpoint evaluates on its own; an env built differently from training's is a clear error.
    evaluated = _eval_checkpoint(tmp_path / "checkpoints", "--eval_episodes", "1")
    assert evaluated.returncode == 0 and "1 episodes, mean return" in evaluated.stdout, evaluated.stderr[-3000:]
    refused = _eval_checkpoint(tmp_path / "checkpoints", "--env_kwargs", '{"block_offset": false}')
    assert refused.returncode != 0 and "build the env as training did" in refused.stderr, refused.stderr[-3000:]
    assert "Traceback" not in refused.stderr


def _eval_checkpoint(checkpoints, *flags):
    script = os.path.join(ROOT, "examples", "async_sac_state_sim", "eval_checkpoint.py")
    return subprocess.run([sys.executable, script, "--checkpoint_path", str(checkpoints), *flags], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def _run(flags, timeout=120):
    return subprocess.run([sys.executable, SCRIPT, "--debug", *flags], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"})


def test_neither_or_both_roles_is_a_usage_error():
    for flags in ([], ["--learner", "--actor"]):
        result = _run(flags)
        assert result.returncode != 0
        assert "exactly one of --learner, --actor or --sync" in result.stderr


def test_the_vision_env_on_the_state_agent_fails_clearly(tmp_path):
    result = _run(["--learner", "--env", "franka_sim:PandaPickCubeVision-v0", "--run_dir", str(tmp_path)])
    assert result.returncode == 1
    assert "camera images" in result.stderr and "DrQAgent" in result.stderr
    assert "Traceback" not in result.stderr
