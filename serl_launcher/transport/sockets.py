"""Socket factory: every transport socket gets the same safety options.

Why each option: LINGER 0 so closing never waits for unsent data (no hang at
exit); MAXMSGSIZE so a peer cannot make us buffer an arbitrarily large frame
(ZeroMQ closes that connection); HANDSHAKE_IVL so a connection that never
completes the ZeroMQ (or CURVE) handshake is closed within seconds instead of
holding a file descriptor; heartbeats so a vanished peer is noticed in seconds
even without a TCP reset; RECONNECT_IVL_MAX so reconnection keeps retrying at
most every second while the learner is down.

Why the open-file limit is raised: every connection holds a file descriptor;
with the usual soft limit of 1024, a thousand idle connections would stop the
learner from accepting actors (and from opening checkpoints).
"""

import logging
import resource
from typing import Optional

import zmq

from serl_launcher.transport import keys
from serl_launcher.transport.config import TrainerConfig

logger = logging.getLogger(__name__)
_HEARTBEAT_MS = 1000
_HEARTBEAT_TIMEOUT_MS = 3000
_RECONNECT_MAX_MS = 1000
HANDSHAKE_MS = 5000
FD_LIMIT = 65536  # raise the soft open-file limit to this (or the hard limit, if lower)
_CURVE_FIELDS = (
    "curve_server_secret_key",
    "curve_server_public_key",
    "curve_client_secret_key",
    "curve_authorized_clients",
)


def server_key_pair(config: TrainerConfig) -> Optional[tuple]:
    """The learner's CURVE key pair, or None for plain TCP; partial CURVE settings are a ValueError."""
    if config.curve_server_secret_key is None:
        _refuse_partial(config, "curve_server_secret_key", "the learner would accept plaintext actors")
        return None
    if config.curve_authorized_clients is None:
        logger.warning("CURVE without curve_authorized_clients: traffic is encrypted, but any actor may connect")
    return keys.load_key_pair(config.curve_server_secret_key)


def client_security(config: TrainerConfig) -> Optional[tuple]:
    """(learner public key, actor key pair) or None for plain TCP; no actor key file: a fresh pair.

    Partial CURVE settings are a ValueError.
    """
    if config.curve_server_public_key is None:
        _refuse_partial(config, "curve_server_public_key", "the actor would connect in plaintext")
        return None
    if config.curve_client_secret_key is None:
        pair = zmq.curve_keypair()
    else:
        pair = keys.load_key_pair(config.curve_client_secret_key)
    return keys.load_public_key(config.curve_server_public_key), pair


def _refuse_partial(config: TrainerConfig, missing: str, consequence: str) -> None:
    given = [name for name in _CURVE_FIELDS if getattr(config, name) is not None]
    if given:
        raise ValueError(f"CURVE is partly configured: {', '.join(given)} set but {missing} missing, so {consequence}")


def raise_fd_limit() -> int:
    """Raise this process's soft open-file limit towards FD_LIMIT (up to the hard limit); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FD_LIMIT if hard == resource.RLIM_INFINITY else min(FD_LIMIT, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            logger.info("raised the open-file limit from %d to %d (each actor connection holds one)", soft, wanted)
            soft = wanted
        except (ValueError, OSError) as exc:
            logger.warning("cannot raise the open-file limit from %d: %s", soft, exc)
    if soft != resource.RLIM_INFINITY and soft < 4096:
        logger.warning(
            "open-file limit %d: about that many idle connections stop the learner accepting actors "
            "(raise the hard limit, ulimit -Hn, or use CURVE with curve_authorized_clients)",
            soft,
        )
    return soft


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
    """A socket with the options above; `options` come last, so they may override them."""
    sock = ctx.socket(kind)
    sock.linger = 0
    sock.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
    sock.setsockopt(zmq.HEARTBEAT_IVL, _HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, _HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, _RECONNECT_MAX_MS)
    for option, value in options:
        sock.setsockopt(option, value)
    return sock
