"""Shared fixtures. JAX compiles are the slow part of this suite, so small agents are built once per session."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import re  # noqa: E402
import select  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FRANKY_SIM_SERVER = Path(__file__).parent / "franky_sim_server.py"


class FrankySim:
    """A franky-sim process (tests/franky_sim_server.py) serving the libfranka protocol on a
    loopback address, with its fault injection (a reflex, an external wrench) one call away."""

    def __init__(self, log_path: Path, timeout: float = 60.0):
        self._log = open(log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-u", str(FRANKY_SIM_SERVER)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._log, text=True)
        line = self._readline(timeout)
        match = re.search(r"'([\d.]+)'", line)
        if not match:
            self.close()
            raise RuntimeError(f"franky-sim did not start: {line!r}; log {log_path}:\n{log_path.read_text()[-2000:]}")
        self.ip = match.group(1)

    def inject(self, command: str) -> None:
        """Sends a fault-injection command (see tests/franky_sim_server.py) and waits for its ack."""
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        reply = self._readline(5.0)
        if reply.strip() != f"ok {command}":
            raise RuntimeError(f"franky-sim refused {command!r}: {reply!r}")

    def _readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not select.select([self.process.stdout], [], [], 0.1)[0]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                return ""
        return self.process.stdout.readline()

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def franky_sim(tmp_path_factory):
    """franky-sim on loopback, started once per session. Fails (never skips) without franky-sim:
    CI installs it with the robot-test extra."""
    try:
        import franky  # noqa: F401
        import franky_sim  # noqa: F401
    except ImportError as error:
        pytest.fail(f"the robot tests need franky-control and franky-sim ({error}): pip install -e '.[dev,robot-test]'")
    sim = FrankySim(tmp_path_factory.mktemp("franky_sim") / "server.log")
    yield sim
    sim.close()
