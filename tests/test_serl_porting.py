"""A SERL-shaped script runs against this library (tests/serl_shaped/async_sac_state_sim.py)."""
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "serl_shaped", "async_sac_state_sim.py")


@pytest.mark.slow
def test_a_serl_shaped_script_trains_as_learner_and_actor(tmp_path):
    port, broadcast = free_ports(2)
    ports = ["--port_number", str(port), "--broadcast_port", str(broadcast)]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": ROOT}

    def start(role, log):
        return subprocess.Popen([sys.executable, SCRIPT, role, *ports], stdout=open(tmp_path / log, "w"),
                                stderr=subprocess.STDOUT, env=env, cwd=tmp_path)

    actor = start("--actor", "actor.log")  # before the learner, as SERL allows
    time.sleep(2.0)
    learner = start("--learner", "learner.log")
    try:
        assert actor.wait(timeout=300) == 0, (tmp_path / "actor.log").read_text()[-3000:]
        assert learner.wait(timeout=300) == 0, (tmp_path / "learner.log").read_text()[-3000:]
    finally:
        for process in (actor, learner):
            if process.poll() is None:
                process.kill()
