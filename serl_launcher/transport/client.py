"""TrainerClient: the actor's end of the transport.

update() sends the transitions queued in the actor's data store that the
learner has not acknowledged yet, as column-wise batches tagged with the client
name and a random session id; the learner skips ids it already stored for that
session, so a resend after a lost reply is harmless and a restarted actor (a new
session, ids from 0 again) loses nothing. While the learner is unreachable,
update() returns False without blocking longer than the timeout, the store
keeps up to its capacity, and what it evicts unsent is counted as dropped.
"""

import logging
import secrets
import threading
import time

import zmq

from serl_launcher.transport import protocol, pytree, sockets
from serl_launcher.transport.channel import RequestChannel
from serl_launcher.transport.config import TrainerConfig, shared_view
from serl_launcher.transport.errors import MessageTooLarge, RateLimited, TransportTimeout
from serl_launcher.transport.subscriber import ParamsSubscriber

logger = logging.getLogger(__name__)


class TrainerClient:
    """Connects an actor to a TrainerServer (agentlace-compatible signature).

    name: the learner data store this client feeds (several actors may share it).
    wait_for_server: retry the handshake until the learner answers; otherwise a
    learner that does not answer within timeout_ms raises TransportTimeout.
    max_batch: most transitions per message (halved automatically if a message
    would exceed TrainerConfig.max_message_bytes).
    """

    def __init__(
        self,
        name: str,
        server_ip: str,
        config: TrainerConfig,
        data_store=None,
        wait_for_server: bool = False,
        timeout_ms: float = 800,
        max_batch: int = 1024,
    ):
        if not isinstance(name, str) or not name:
            raise ValueError(f"client name must be a non-empty str, got {name!r}")
        self.name = name
        self.session = secrets.token_hex(8)
        self.config = config
        self.data_store = data_store
        self._server_ip = server_ip
        self._timeout_s = timeout_ms / 1000
        self._max_batch = max_batch
        self._next_id = 0  # first transition id not yet acknowledged by the learner
        self._sent = 0
        self._dropped = 0
        self._failed_updates = 0
        self._last_request = float("-inf")
        self._send_lock = threading.Lock()
        self._updater = None
        self._stop_updates = threading.Event()
        self._subscriber = None
        self._stopped = False
        self._security = sockets.client_security(config)
        self._ctx = zmq.Context()
        self._channel = RequestChannel(self._ctx, config, server_ip, self._security, self._timeout_s)
        try:
            self._handshake(wait_for_server)
        except BaseException:
            self.stop()
            raise

    def update(self) -> bool:
        """Deliver queued transitions not yet acknowledged, within the client's timeout in total.

        Returns True when all were delivered, False when the learner is
        unreachable or the time ran out (the rest stay queued for the next
        call). Raises RemoteError or ConfigMismatchError when the learner
        rejects the data, MessageTooLarge when one transition alone exceeds
        max_message_bytes (bugs to fix, not conditions to retry).
        """
        if self.data_store is None:
            return True
        deadline = time.monotonic() + self._timeout_s
        with self._send_lock:
            first_id, items = self.data_store.get_latest_data_with_id(self._next_id - 1)
            if first_id > self._next_id:
                lost = first_id - self._next_id
                self._dropped += lost
                self._next_id = first_id
                logger.warning(
                    "actor queue overflowed: %d transitions dropped unsent (%d in total)", lost, self._dropped
                )
            start, chunk = 0, self._max_batch
            while start < len(items):
                rows = items[start : start + chunk]
                try:
                    acked = self._send_batch(first_id + start, rows, len(items) - start - len(rows), deadline)
                except MessageTooLarge:
                    if len(rows) == 1:
                        raise
                    chunk = len(rows) // 2
                    continue
                except TransportTimeout as exc:
                    self._failed_updates += 1
                    logger.debug("update stopped, %d transitions kept for later: %s", len(items) - start, exc)
                    return False
                self._sent += max(0, acked + 1 - self._next_id)
                self._next_id = max(self._next_id, acked + 1)
                start += len(rows)
            return True

    def request(self, type: str, payload):
        """Call request_callback(type, payload) on the learner and return its reply.

        Raises ValueError for a type not in TrainerConfig.request_types, RateLimited,
        TransportTimeout, RemoteError (the callback raised) or ConfigMismatchError.
        """
        if type not in self.config.request_types:
            raise ValueError(f"request type {type!r} is not in TrainerConfig.request_types {self.config.request_types}")
        if self.config.rate_limit:
            now = time.monotonic()
            if now - self._last_request < 1.0 / self.config.rate_limit:
                raise RateLimited(f"more than {self.config.rate_limit} requests per second")
            self._last_request = now
        return self._channel.call(type, payload)

    def recv_network_callback(self, callback) -> None:
        """Call callback(params) on a background thread with the newest params, starting with the current ones."""
        if self._subscriber is not None:
            self._subscriber.stop()
        self._subscriber = ParamsSubscriber(
            self._ctx, self.config, self._server_ip, self._security, callback, self._timeout_s
        )

    def start_async_update(self, interval: float = 10) -> None:
        """Call update() every `interval` seconds on a daemon thread until stop()."""
        if self._updater is not None and self._updater.is_alive():
            return
        self._stop_updates.clear()
        self._updater = threading.Thread(
            target=self._update_loop, args=(interval,), name="transport-async-update", daemon=True
        )
        self._updater.start()

    def stats(self) -> dict:
        """Counters to log: sent (acknowledged), dropped (evicted unsent), pending, failed_updates, params_received."""
        dropped, pending = self._dropped, 0
        if self.data_store is not None:
            latest = self.data_store.latest_data_id()
            oldest = latest - len(self.data_store) + 1
            dropped += max(0, oldest - self._next_id)
            pending = latest + 1 - max(oldest, self._next_id)
        return {
            "session": self.session,
            "sent": self._sent,
            "dropped": dropped,
            "pending": pending,
            "failed_updates": self._failed_updates,
            "params_received": self._subscriber.received if self._subscriber else 0,
        }

    def stop(self) -> None:
        """Stop background threads and close the sockets (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._stop_updates.set()
        if self._updater is not None:
            self._updater.join()
        if self._subscriber is not None:
            self._subscriber.stop()
        self._channel.close()
        self._ctx.term()

    def _handshake(self, wait_for_server: bool) -> None:
        hello = {"config": shared_view(self.config), "name": self.name, "session": self.session}
        where = f"{self._server_ip}:{self.config.port_number}"
        while True:
            try:
                if not self._channel.wait_connected(self._timeout_s):
                    raise TransportTimeout(
                        f"no learner reachable at {where} within {self._timeout_s:g} s "
                        "(not started, wrong address or port, firewall, or wrong CURVE keys)"
                    )
                self._channel.call(protocol.HELLO, hello)
                return
            except TransportTimeout as exc:
                if not wait_for_server:
                    raise
                logger.warning("%s; retrying", exc)

    def _send_batch(self, first_id: int, rows: list, pending: int, deadline: float) -> int:
        reply = self._channel.call(
            protocol.DATA,
            {
                "name": self.name,
                "session": self.session,
                "first_id": first_id,
                "dropped": self._dropped,
                "pending": pending,
                "data": pytree.stack(rows),
            },
            timeout_s=deadline - time.monotonic(),
        )
        return min(protocol.field(reply, "acked", int), first_id + len(rows) - 1)

    def _update_loop(self, interval: float) -> None:
        while True:
            try:
                self.update()
            except Exception:  # keep the thread alive; the error is logged with its traceback
                logger.exception("background update failed; retrying in %g s", interval)
            if self._stop_updates.wait(interval):
                return
