"""Helpers shared by tests (and the benchmarks that start learners)."""
import importlib
import socket
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def free_ports(n: int, host: str = "127.0.0.1") -> list:
    """`n` TCP ports free on `host` right now, for tests that run learners."""
    probes = [socket.socket() for _ in range(n)]
    for probe in probes:
        probe.bind((host, 0))
    ports = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()
    return ports


def import_example(name: str):
    """A script of examples/ imported as a module, with examples/ on sys.path as when it runs as a
    script (so it finds its sibling modules); `if __name__ == "__main__"` keeps its flags undefined."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)
