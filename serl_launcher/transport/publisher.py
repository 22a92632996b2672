"""Pushes the newest params to actors from a thread of its own, over a ROUTER socket on the broadcast port.

Why a thread: encoding params (and copying jax arrays off the device) takes
milliseconds to seconds; `offer()` only hands them over, so the training loop
never waits on the network. Only the newest params are kept: params offered
while earlier ones are being encoded replace each other, none is ever queued.

Why a ROUTER and not PUB (agentlace, and our first version): a PUB socket keeps
every subscription topic a peer sends in a per-byte trie, so one unauthenticated
subscriber sending a few 1 MiB topics grew the learner by GBs and stalled
publishing for seconds. XPUB_MANUAL does not help: libzmq 4.3.5 still stores
each topic (to replay it on disconnect). Here a subscriber connects a DEALER and
sends protocol.SUBSCRIBE every second; the publisher keeps at most
limits.MAX_SUBSCRIBERS routing ids, forgets those not heard from for
SUBSCRIBER_TTL_S or gone, and sends each publish to each one without blocking:
a subscriber whose queue is full (slow, or not reading) skips that publish and
catches up by its periodic fetch. Incoming messages are cut at 4 KiB by ZeroMQ
(MAXMSGSIZE) and anything but SUBSCRIBE is dropped, so nothing a peer sends here
is kept beyond its routing id.
"""

import logging
import socket
import threading
import time

import zmq

from serl_launcher.transport import codec, limits, protocol
from serl_launcher.transport.errors import MessageTooLarge
from serl_launcher.common.throttled_log import ThrottledLog

logger = logging.getLogger(__name__)
SUBSCRIBER_TTL_S = 10.0
MAX_INCOMING_BYTES = 4096  # enough for a CURVE handshake; SUBSCRIBE is 13 bytes
_POLL_MS = 100
_REPLY_OVERHEAD = 1024  # published params are also sent inside a reply to late joiners; keep that under the limit
_NOTHING = object()


class ParamsPublisher:
    """Owns the broadcast ROUTER socket (bound by the caller) and the thread that alone uses it."""

    def __init__(self, sock: zmq.Socket, server_id: str, max_message_bytes: int, authorizer=None):
        self._sock = sock
        self._server_id = server_id
        self._max_message_bytes = max_message_bytes
        self._authorizer = authorizer
        self._subscribers = {}  # routing id -> (User-Id or None, monotonic time last heard from)
        self._cond = threading.Condition()
        self._pending = _NOTHING  # newest params not yet taken by the thread
        self._offered = 0  # params handed over so far
        self._done = 0  # of those, how many are published or given up (replaced by newer, or failed)
        self._error = None  # why the latest publish failed, until a caller is told
        self._seq = 0
        self.latest = None  # (seq, encoded message) of the latest publish, for late joiners
        self._stopping = False
        self._next_forget = 0.0
        self._wake_r, self._wake_w = socket.socketpair()  # lets offer() interrupt the thread's poll
        self._wake_w.setblocking(False)
        self._throttled = ThrottledLog(logger)
        self._thread = threading.Thread(target=self._run, name="transport-publisher", daemon=True)
        self._thread.start()

    def offer(self, params) -> None:
        """Hand over params to publish (replacing any not yet encoded); raises the last publish's error if any."""
        with self._cond:
            self._raise_error()
            if self._pending is not _NOTHING:
                self._done += 1  # replaced before it was encoded: it will never go out
            self._pending = params
            self._offered += 1
        self._wake()

    def flush(self, timeout: float = None) -> bool:
        """Wait until the newest offered params went out (True) or timeout passed (False); raises if they failed."""
        with self._cond:
            done = self._cond.wait_for(lambda: self._done >= self._offered or self._stopping, timeout)
            self._raise_error()
            return done and self._done >= self._offered

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._wake()
        self._thread.join()
        self._sock.close()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except BlockingIOError:
            pass  # wake-ups already pending: the thread will look

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        while True:
            events = dict(poller.poll(_POLL_MS))
            if self._wake_r.fileno() in events:
                self._wake_r.recv(4096)
            with self._cond:
                if self._stopping:
                    return
                params, self._pending = self._pending, _NOTHING
            if self._sock in events:
                self._read_subscriptions()
            if params is not _NOTHING:
                self._publish(params)
                with self._cond:
                    self._done += 1
                    self._cond.notify_all()
            self._forget_silent()

    def _publish(self, params) -> None:
        try:
            blob = codec.encode({"server": self._server_id, "seq": self._seq + 1, "params": params})
            if len(blob) + _REPLY_OVERHEAD > self._max_message_bytes:
                raise MessageTooLarge(f"params of {len(blob)} bytes > max_message_bytes={self._max_message_bytes}")
        except Exception as exc:  # MessageTooLarge, or params that are not arrays: the caller's bug
            logger.error("publish_network: params NOT published (raised by the next publish or flush): %s", exc)
            with self._cond:
                self._error = exc
            return
        self._seq += 1
        self.latest = (self._seq, blob)
        frame = zmq.Frame(blob)
        for route in list(self._subscribers):
            self._send(route, frame)

    def _send(self, route: bytes, frame: zmq.Frame) -> None:
        user = self._subscribers[route][0]
        if self._authorizer is not None and not self._authorizer.allows(user):
            del self._subscribers[route]  # its key was revoked
            return
        try:
            self._sock.send(route, zmq.SNDMORE | zmq.NOBLOCK)
            self._sock.send(frame, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass  # its queue still holds an earlier publish: it catches up by fetching
        except zmq.ZMQError as exc:  # EHOSTUNREACH: disconnected
            if exc.errno != zmq.EHOSTUNREACH:
                logger.warning("dropped a params subscriber after a send error: %s", exc)
            del self._subscribers[route]

    def _read_subscriptions(self) -> None:
        for _ in range(1000):  # bounded, so a flood cannot starve publishing
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            route, body = frames[0].bytes, frames[-1]
            if len(frames) != 2 or body.bytes != protocol.SUBSCRIBE:
                self._throttled.log(logging.WARNING, "ignored a message that is not a subscription on the params port")
                continue
            user = body.get("User-Id") if self._authorizer is not None else None
            if user is not None and not self._authorizer.allows(user):
                continue  # a connection made before its key was revoked
            if route in self._subscribers or len(self._subscribers) < limits.MAX_SUBSCRIBERS:
                is_new = route not in self._subscribers
                self._subscribers[route] = (user, time.monotonic())
                if is_new and self.latest is not None:
                    self._send(route, zmq.Frame(self.latest[1]))
            else:
                self._throttled.log(
                    logging.WARNING,
                    "%d params subscribers already: a new one gets params by polling (every second) instead",
                    len(self._subscribers),
                )

    def _forget_silent(self) -> None:
        now = time.monotonic()
        if now < self._next_forget:
            return
        self._next_forget = now + 1.0
        deadline = now - SUBSCRIBER_TTL_S
        for route, (_, heard) in list(self._subscribers.items()):
            if heard < deadline:
                del self._subscribers[route]
