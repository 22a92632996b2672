"""Delivers the newest params the learner published to an actor's callback, on a daemon thread.

Why two paths: pushes from the learner's publisher (publisher.py) give low
latency, but only reach a subscriber once it is registered (agentlace's
late-joiner flaw) and may be missed while reconnecting or when the actor reads
slowly. So the thread also asks the learner for its latest params at start and
then every `poll_interval_s` (a tiny reply when up to date), and registers for
pushes (protocol.SUBSCRIBE) each time, which also re-registers it with a
restarted learner. Both paths carry (learner instance id, publish number);
anything not newer than what was delivered is skipped. The push socket is a
DEALER with CONFLATE: while the callback runs, newer params replace older ones
instead of queueing, so a slow actor only ever gets the newest.
"""

import logging
import threading
import time

import zmq

from serl_launcher.transport import codec, protocol, sockets
from serl_launcher.transport.channel import RequestChannel
from serl_launcher.transport.errors import DecodeError, TransportError

logger = logging.getLogger(__name__)
_POLL_MS = 100


class ParamsSubscriber:
    """Owns a push socket (DEALER) and a request channel of its own, both used only by its thread."""

    def __init__(self, ctx, config, host: str, security, callback, timeout_s: float, poll_interval_s: float = 1.0):
        self._callback = callback
        self._have = None  # (learner instance id, publish number) last delivered
        self.received = 0
        self._stop = threading.Event()
        self._sub = sockets.connect(
            ctx, zmq.DEALER, config, host, config.broadcast_port, security, [(zmq.CONFLATE, 1), (zmq.IMMEDIATE, 1)]
        )
        self._channel = RequestChannel(ctx, config, host, security, timeout_s)
        self._timeout_s = timeout_s
        self._thread = threading.Thread(
            target=self._run, args=(poll_interval_s,), name="transport-params-subscriber", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self, poll_interval_s: float) -> None:
        next_fetch = next_subscribe = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_fetch:
                    self._fetch_latest()
                    next_fetch = time.monotonic() + poll_interval_s
                if time.monotonic() >= next_subscribe:
                    # Until the connection is up (IMMEDIATE), try again at the next tick.
                    next_subscribe = time.monotonic() + (poll_interval_s if self._subscribe() else 0)
                if self._sub.poll(_POLL_MS):
                    self._offer(self._sub.recv(zmq.NOBLOCK, copy=False).buffer)
        finally:
            self._sub.close()
            self._channel.close()

    def _subscribe(self) -> bool:
        try:
            self._sub.send(protocol.SUBSCRIBE, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _fetch_latest(self) -> None:
        try:
            if not self._channel.wait_connected(self._timeout_s):
                return
            reply = self._channel.call(protocol.PARAMS, {"have": list(self._have) if self._have else None})
            blob = protocol.field(reply, "blob", (bytes, type(None)))
        except (TransportError, DecodeError) as exc:
            logger.debug("could not fetch the latest params: %s", exc)
            return
        if blob is not None:
            self._offer(blob)

    def _offer(self, message) -> None:
        try:
            published = protocol.parse_published(codec.decode(message))
        except DecodeError as exc:
            logger.warning("ignoring malformed params from the learner: %s", exc)
            return
        if self._have and published.server == self._have[0] and published.seq <= self._have[1]:
            return
        self._have = (published.server, published.seq)
        self.received += 1
        try:
            self._callback(published.params)
        except Exception:
            logger.exception("the network callback raised; the subscriber keeps running")
