"""End to end: learner and actor as separate processes on loopback, then a resumed learner."""
import os
import re
import subprocess
import sys
import time

import pytest

from serl_launcher.data.rlds import read_rlds_dataset
from serl_launcher.transport.sockets import free_ports
from serl_launcher.utils.checkpoints import AgentCheckpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMOS = os.path.join(ROOT, "demos", "pick_cube_20_scripted")
SCRIPT = os.path.join(ROOT, "examples", "async_sac_state_sim", "async_sac_state_sim.py")
SMALL = ["--debug", "--hidden_dims", "32,32", "--critic_ensemble_size", "2", "--critic_subsample_size", "0",
         "--batch_size", "16", "--critic_actor_ratio", "2", "--training_starts", "100", "--random_steps", "50",
         "--log_period", "10", "--target_utd", "0.5", "--steps_per_update", "10"]


def _start(role_flags, log_path, extra_env=None):
    env = {**os.environ, "MUJOCO_GL": "egl", "WANDB_MODE": "disabled", **(extra_env or {})}
    return subprocess.Popen([sys.executable, SCRIPT, *role_flags], stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def _finish(process, timeout):
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@pytest.mark.slow
def test_learner_and_actor_train_checkpoint_and_resume(tmp_path):
    """Also: demos preloaded into the buffer, and every received episode logged as RLDS."""
    port, broadcast = free_ports(2)
    ports = ["--port_number", str(port), "--broadcast_port", str(broadcast)]
    checkpoints = tmp_path / "checkpoints"
    learner_flags = ["--learner", *SMALL, *ports, "--max_steps", "60", "--checkpoint_path", str(checkpoints),
                     "--checkpoint_period", "20"]
    first_run_flags = ["--preload_rlds_path", DEMOS, "--log_rlds_path", str(tmp_path / "received")]
    # The actor starts first: it must wait for the learner, not crash.
    actor = _start(["--actor", *SMALL, *ports, "--max_steps", "300", "--eval_period", "300", "--eval_n_trajs", "2"],
                   tmp_path / "actor.log")
    time.sleep(1.0)
    learner = _start(learner_flags + first_run_flags, tmp_path / "learner.log")
    assert _finish(learner, 240) == 0, (tmp_path / "learner.log").read_text()[-3000:]
    assert _finish(actor, 60) == 0, (tmp_path / "actor.log").read_text()[-3000:]

    learner_log, actor_log = (tmp_path / "learner.log").read_text(), (tmp_path / "actor.log").read_text()
    env_steps = [float(x) for x in re.findall(r"env_steps (\d+)", learner_log)]
    assert env_steps and env_steps[-1] >= 100, "the learner received no data"
    assert "step 60 " in learner_log and "critic_loss" in learner_log
    stats = re.search(r"actor transport stats: .*'sent': (\d+), 'dropped': (\d+).*'params_received': (\d+)", actor_log)
    sent, dropped, params_received = map(int, stats.groups())
    assert sent == 300 and dropped == 0
    assert params_received >= 2, "the actor never received updated params"
    assert "eval at env step 300" in actor_log

    demo_transitions = sum(len(episode["reward"]) - 1 for episode in read_rlds_dataset(DEMOS))  # N+1 steps each
    assert f"loaded {demo_transitions} demonstration transitions" in learner_log
    logged = list(read_rlds_dataset(str(tmp_path / "received")))
    assert sum(len(episode["reward"]) - 1 for episode in logged) == 300
    assert all(episode["is_last"][-1] and episode["is_first"][0] for episode in logged)

    checkpointer = AgentCheckpointer(str(checkpoints))
    assert checkpointer.latest_step() == 60
    assert "saved checkpoint 60" in learner_log

    # Resume: a new learner on the same path continues from step 60 (an actor feeds it again).
    resumed_flags = [f if f != "60" else "80" for f in learner_flags]
    learner = _start(resumed_flags, tmp_path / "learner2.log")
    actor = _start(["--actor", *SMALL, *ports, "--max_steps", "300", "--eval_period", "0"], tmp_path / "actor2.log")
    assert _finish(learner, 240) == 0, (tmp_path / "learner2.log").read_text()[-3000:]
    _finish(actor, 60)
    resumed_log = (tmp_path / "learner2.log").read_text()
    assert "resumed from" in resumed_log and "at learner step 60" in resumed_log
    assert "step 70 " in resumed_log and "step 10 " not in resumed_log
    assert AgentCheckpointer(str(checkpoints)).latest_step() == 80


def test_neither_or_both_roles_is_a_usage_error():
    for flags in ([], ["--learner", "--actor"]):
        result = subprocess.run([sys.executable, SCRIPT, "--debug", *flags], capture_output=True, text=True, timeout=120)
        assert result.returncode != 0
        assert "exactly one of --learner or --actor" in result.stderr
