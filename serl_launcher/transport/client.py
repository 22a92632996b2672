"""TrainerClient: the actor's end of the transport.

update() sends the transitions queued in the actor's data store that the
learner has not acknowledged yet, as column-wise batches tagged with the client
name and a random session id; the learner skips ids it already stored for that
session, so a resend after a lost reply is harmless and a restarted actor (a new
session, ids from 0 again) loses nothing. While the learner is unreachable,
update() returns False without blocking longer than the timeout, the store
keeps up to its capacity, and what it evicts unsent is counted as dropped (made
exact by the learner's ack: rows a frozen learner stored late are not dropped).

Bad data never stalls delivery: a batch the learner's store refuses (or that
cannot be encoded here) is bisected, the refused rows are skipped and counted
(`rejected`), the rest delivered. A session the learner forgot or that lost its
connection is re-opened by a new handshake, transparently.
"""

import logging
import secrets
import threading
import time

import zmq

from serl_launcher.transport import limits, protocol, pytree, sockets
from serl_launcher.transport.channel import RequestChannel
from serl_launcher.transport.config import TrainerConfig, shared_view
from serl_launcher.transport.errors import MessageTooLarge, RateLimited, RemoteError, TransportTimeout
from serl_launcher.transport.subscriber import ParamsSubscriber
from serl_launcher.common.throttled_log import ThrottledLog

logger = logging.getLogger(__name__)
_REOPEN = (protocol.UNKNOWN_SESSION, protocol.NOT_YOUR_SESSION)
_LATER = (protocol.STORE_FAILED, protocol.BUSY)


class _Refused(Exception):
    """These rows cannot be delivered as they are: split them, or skip the one row."""

    def __init__(self, reason: str, too_large: bool = False):
        super().__init__(reason)
        self.too_large = too_large


class TrainerClient:
    """Connects an actor to a TrainerServer (agentlace-compatible signature).

    name: the learner data store this client feeds (several actors may share it).
    wait_for_server: retry the handshake until the learner answers; otherwise a
    learner that does not answer within timeout_ms raises TransportTimeout.
    max_batch: most transitions per message (halved automatically if a message
    would exceed TrainerConfig.max_message_bytes).
    raise_on_timeout: request() raises TransportTimeout when the learner does not
    answer, instead of returning None as agentlace does.
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
        raise_on_timeout: bool = False,
    ):
        if not isinstance(name, str) or not 0 < len(name) <= limits.MAX_NAME_CHARS:
            raise ValueError(f"client name must be a str of 1..{limits.MAX_NAME_CHARS} characters, got {name!r:.300}")
        if not 1 <= max_batch <= limits.MAX_BATCH_ROWS:
            raise ValueError(f"max_batch must be in 1..{limits.MAX_BATCH_ROWS}, got {max_batch}")
        self.name = name
        self.session = secrets.token_hex(8)
        self._token = secrets.token_hex(32)  # proves this client owns the session when it re-handshakes
        self.config = config
        self.data_store = data_store
        self._server_ip = server_ip
        self._timeout_s = timeout_ms / 1000
        self._max_batch = max_batch
        self._raise_on_timeout = raise_on_timeout
        self._next_id = 0  # first transition id not yet acknowledged by the learner (or skipped)
        self._sent = 0
        self._dropped = 0  # exact as of the last ack, plus what was evicted unacknowledged since
        self._rejected = 0
        self._failed_updates = 0
        self._last_request = float("-inf")
        self._send_lock = threading.Lock()
        self._updater = None
        self._stop_updates = threading.Event()
        self._subscriber = None
        self._stopped = False
        self._log_rejected = ThrottledLog(logger)
        self._log_trouble = ThrottledLog(logger)
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

        Returns True when all were delivered (or refused and skipped, see stats()["rejected"]),
        False when the learner is unreachable, its store failed or the time ran out (the rest
        stay queued for the next call). Raises ConfigMismatchError, and RemoteError for
        deployment errors (unknown store, key revoked): bugs to fix, not conditions to retry.
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
                self._log_trouble.log(
                    logging.WARNING, "actor queue overflowed: %d transitions evicted before the learner's ack", lost
                )
            start, chunk, size_limit = 0, self._max_batch, self._max_batch
            while start < len(items):
                rows = items[start : start + chunk]
                try:
                    self._send_batch(first_id + start, rows, len(items) - start - len(rows), deadline)
                except _Refused as refused:
                    if len(rows) > 1:  # bisect: retry the first half
                        chunk = len(rows) // 2
                        size_limit = chunk if refused.too_large else size_limit
                    else:
                        self._skip(first_id + start, str(refused))
                        start += 1
                    continue
                except TransportTimeout as exc:
                    self._failed_updates += 1
                    logger.debug("update stopped, %d transitions kept for later: %s", len(items) - start, exc)
                    return False
                except RemoteError as exc:
                    if exc.kind not in _LATER:
                        raise
                    self._failed_updates += 1
                    self._log_trouble.log(logging.WARNING, "update postponed, transitions kept: %s", exc)
                    return False
                start += len(rows)
                chunk = min(size_limit, chunk * 2)
            return True

    def request(self, type: str, payload):
        """Call request_callback(type, payload) on the learner and return its reply.

        Returns None when the learner does not answer in time or is not connected (agentlace's
        behaviour; TrainerClient(raise_on_timeout=True) raises TransportTimeout instead). Raises
        ValueError for a type not in TrainerConfig.request_types, RateLimited, MessageTooLarge
        (over max_request_bytes), RemoteError (the callback raised) or ConfigMismatchError.
        """
        if type not in self.config.request_types:
            raise ValueError(f"request type {type!r} is not in TrainerConfig.request_types {self.config.request_types}")
        if self.config.rate_limit:
            now = time.monotonic()
            if now - self._last_request < 1.0 / self.config.rate_limit:
                raise RateLimited(f"more than {self.config.rate_limit} requests per second")
            self._last_request = now
        try:
            return self._channel.call(type, payload, max_request_bytes=self.config.max_request_bytes)
        except TransportTimeout as exc:
            if self._raise_on_timeout:
                raise
            self._log_trouble.log(logging.WARNING, "request %r returned None: %s", type, exc)
            return None

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
        """Counters to log: sent (acknowledged), dropped (evicted unsent), rejected (refused by the learner's
        store or not encodable, skipped), pending, failed_updates, params_received."""
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
            "rejected": self._rejected,
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
        where = f"{self._server_ip}:{self.config.port_number}"
        while True:
            try:
                if not self._channel.wait_connected(self._timeout_s):
                    raise TransportTimeout(
                        f"no learner reachable at {where} within {self._timeout_s:g} s "
                        "(not started, wrong address or port, firewall, or wrong CURVE keys)"
                    )
                self._hello(self._timeout_s)
                return
            except (TransportTimeout, RemoteError) as exc:
                if not wait_for_server or (isinstance(exc, RemoteError) and exc.kind != protocol.BUSY):
                    raise
                logger.warning("%s; retrying", exc)
                time.sleep(min(self._timeout_s, 1.0))

    def _hello(self, timeout_s: float) -> None:
        hello = {
            "config": shared_view(self.config),
            "name": self.name,
            "session": self.session,
            "token": self._token,
            "next_id": self._next_id,
            "dropped": self._dropped,
            "rejected": self._rejected,
        }
        self._channel.call(protocol.HELLO, hello, timeout_s=timeout_s)

    def _send_batch(self, first_id: int, rows: list, pending: int, deadline: float) -> None:
        """Deliver rows (ids first_id...) and record the ack; raises _Refused, TransportTimeout, RemoteError."""
        try:
            data = pytree.stack(rows)
        except (TypeError, ValueError) as exc:
            raise _Refused(f"cannot be stacked: {exc}") from None
        payload = {
            "name": self.name,
            "session": self.session,
            "first_id": first_id,
            "dropped": self._dropped,
            "rejected": self._rejected,
            "pending": pending,
            "data": data,
        }
        for attempt in range(2):
            try:
                reply = self._channel.call(protocol.DATA, payload, timeout_s=deadline - time.monotonic())
                break
            except MessageTooLarge as exc:
                raise _Refused(str(exc), too_large=True) from None
            except (TypeError, ValueError) as exc:  # an object or unsupported dtype in a transition
                raise _Refused(f"cannot be encoded: {exc}") from None
            except RemoteError as exc:
                if exc.kind == protocol.STORE_ERROR:
                    raise _Refused(f"the learner's store refused it: {exc}") from None
                if exc.kind not in _REOPEN or attempt:
                    raise
                logger.info("re-opening session %s with the learner (%s)", self.session, exc.kind)
                self._hello(deadline - time.monotonic())
        acked = min(protocol.count(reply, "acked"), first_id + len(rows) - 1)
        self._sent += max(0, acked + 1 - self._next_id)
        self._next_id = max(self._next_id, acked + 1)
        self._dropped = protocol.count(reply, "dropped")

    def _skip(self, row_id: int, reason: str) -> None:
        self._rejected += 1
        self._next_id = row_id + 1
        self._log_rejected.log(
            logging.WARNING, "transition %d skipped (%d so far): %s", row_id, self._rejected, limits.cut(reason, 500)
        )

    def _update_loop(self, interval: float) -> None:
        while True:
            try:
                self.update()
            except Exception:  # keep the thread alive; the error is logged with its traceback
                logger.exception("background update failed; retrying in %g s", interval)
            if self._stop_updates.wait(interval):
                return
