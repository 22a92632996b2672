"""Helpers shared by tests (and the benchmarks that start learners)."""
import socket


def free_ports(n: int, host: str = "127.0.0.1") -> list:
    """`n` TCP ports free on `host` right now, for tests that run learners."""
    probes = [socket.socket() for _ in range(n)]
    for probe in probes:
        probe.bind((host, 0))
    ports = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()
    return ports
