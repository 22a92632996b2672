"""Socket factory: every transport socket gets the same safety options.

Why each option: LINGER 0 so closing never waits for unsent data (no hang at
exit); MAXMSGSIZE so a peer cannot make us buffer an arbitrarily large frame
(ZeroMQ closes that connection); heartbeats so a vanished peer is noticed in
seconds even without a TCP reset; RECONNECT_IVL_MAX so reconnection keeps
retrying at most every second while the learner is down.
"""

import socket
from typing import Optional

import zmq

from serl_launcher.transport import keys
from serl_launcher.transport.config import TrainerConfig

_HEARTBEAT_MS = 1000
_HEARTBEAT_TIMEOUT_MS = 3000
_RECONNECT_MAX_MS = 1000


def server_key_pair(config: TrainerConfig) -> Optional[tuple]:
    """The learner's CURVE key pair, or None for plain TCP."""
    if config.curve_server_secret_key is None:
        if config.curve_authorized_clients is not None:
            raise ValueError("curve_authorized_clients needs curve_server_secret_key")
        return None
    return keys.load_key_pair(config.curve_server_secret_key)


def client_security(config: TrainerConfig) -> Optional[tuple]:
    """(learner public key, actor key pair) or None for plain TCP; no actor key file: a fresh pair."""
    if config.curve_server_public_key is None:
        return None
    if config.curve_client_secret_key is None:
        pair = zmq.curve_keypair()
    else:
        pair = keys.load_key_pair(config.curve_client_secret_key)
    return keys.load_public_key(config.curve_server_public_key), pair


def bind(ctx: zmq.Context, kind: int, config: TrainerConfig, port: int, key_pair, options=()) -> zmq.Socket:
    sock = _socket(ctx, kind, config, options)
    if key_pair is not None:
        keys.secure_server(sock, key_pair)
    try:
        sock.bind(f"tcp://{config.bind_address}:{port}")
    except zmq.ZMQError as exc:
        sock.close()
        raise OSError(f"cannot listen on {config.bind_address}:{port}: {exc}") from exc
    return sock


def connect(ctx, kind: int, config: TrainerConfig, host: str, port: int, security, options=()) -> zmq.Socket:
    sock = _socket(ctx, kind, config, options)
    if security is not None:
        keys.secure_client(sock, *security)
    sock.connect(f"tcp://{host}:{port}")
    return sock


def _socket(ctx: zmq.Context, kind: int, config: TrainerConfig, options) -> zmq.Socket:
    sock = ctx.socket(kind)
    for option, value in options:
        sock.setsockopt(option, value)
    sock.linger = 0
    sock.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
    sock.setsockopt(zmq.HEARTBEAT_IVL, _HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, _HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, _RECONNECT_MAX_MS)
    return sock


def free_ports(n: int, host: str = "127.0.0.1") -> list:
    """`n` TCP ports free on `host` right now, for tests and benchmarks that run several learners."""
    probes = [socket.socket() for _ in range(n)]
    for probe in probes:
        probe.bind((host, 0))
    ports = [probe.getsockname()[1] for probe in probes]
    for probe in probes:
        probe.close()
    return ports
