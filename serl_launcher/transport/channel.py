"""Request/reply to the learner over one DEALER socket, bounded by a deadline, shareable by threads.

Why DEALER and not REQ (agentlace): a REQ socket whose reply never came is stuck
(it refuses to send again) until it is rebuilt. A DEALER is never stuck: each
request carries an id and late replies to abandoned requests are discarded.
IMMEDIATE=1 makes a send fail at once while no learner is connected, instead of
queueing requests that would be replayed to it later; ZeroMQ keeps reconnecting
in the background, so a restarted learner is picked up by itself.
"""

import itertools
import logging
import math
import threading
import time

import zmq

from serl_launcher.transport import codec, protocol, sockets
from serl_launcher.transport.config import TrainerConfig, fingerprint
from serl_launcher.transport.errors import (
    ConfigMismatchError,
    DecodeError,
    MessageTooLarge,
    RemoteError,
    TransportTimeout,
)

logger = logging.getLogger(__name__)


class RequestChannel:
    """Send one request and wait for its reply, never longer than timeout_s in total."""

    def __init__(self, ctx: zmq.Context, config: TrainerConfig, host: str, security, timeout_s: float):
        self._sock = sockets.connect(ctx, zmq.DEALER, config, host, config.port_number, security, [(zmq.IMMEDIATE, 1)])
        self._where = f"{host}:{config.port_number}"
        self._fingerprint = fingerprint(config)
        self._max_bytes = config.max_message_bytes
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until a connection to the learner is up (True) or timeout_s passed (False)."""
        with self._lock:
            return bool(self._sock.poll(_ms(timeout_s), zmq.POLLOUT))

    def call(self, type_: str, payload, timeout_s: float = None, max_request_bytes: int = None):
        """The reply payload; raises TransportTimeout, RemoteError, ConfigMismatchError or MessageTooLarge.

        timeout_s: this call's budget (default: the channel's timeout); max_request_bytes: the
        learner's limit for custom requests, if this is one.
        """
        timeout_s = self._timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        if timeout_s <= 0:
            raise TransportTimeout(f"no time left for a request to the learner at {self._where}")
        if not self._lock.acquire(timeout=timeout_s):
            raise TransportTimeout(f"another request to the learner at {self._where} is still waiting")
        try:
            request_id = next(self._ids)
            body = codec.encode(protocol.request(type_, request_id, self._fingerprint, payload))
            if len(body) > self._max_bytes:
                raise MessageTooLarge(f"{type_} message of {len(body)} bytes > max_message_bytes={self._max_bytes}")
            if max_request_bytes is not None and len(body) > max_request_bytes:
                raise MessageTooLarge(f"{type_} request of {len(body)} bytes > max_request_bytes={max_request_bytes}")
            try:
                self._sock.send(body, zmq.NOBLOCK)
            except zmq.Again:
                raise TransportTimeout(
                    f"not connected to the learner at {self._where} "
                    "(down, restarting, wrong address or port, or wrong CURVE keys)"
                ) from None
            return self._await_reply(request_id, deadline, timeout_s)
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._sock.close()

    def _await_reply(self, request_id: int, deadline: float, timeout_s: float):
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._sock.poll(_ms(remaining)):
                raise TransportTimeout(f"no reply from the learner at {self._where} within {timeout_s:g} s")
            try:
                reply = protocol.parse_reply(codec.decode(self._sock.recv(zmq.NOBLOCK)))
            except DecodeError as exc:
                logger.warning("ignoring a malformed reply from %s: %s", self._where, exc)
                continue
            if reply.id != request_id:
                continue  # late reply to an earlier request that timed out
            if reply.ok:
                return reply.payload
            if reply.error == "config_mismatch":
                raise ConfigMismatchError(f"learner and actor disagree on TrainerConfig: {reply.message}")
            raise RemoteError(reply.error, reply.message)


def _ms(seconds: float) -> int:
    return max(0, math.ceil(seconds * 1000))
