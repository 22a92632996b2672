"""TrainerServer: the learner's end of the transport.

Sockets: a ROUTER on `port_number` answers every actor request (handshake,
batches of transitions, latest params, custom requests) on one serving thread;
a ROUTER on `broadcast_port` pushes params from a publisher thread (publisher.py).
Every request is decoded within the limits of limits.py and validated before
use, and every failure (bad bytes, unknown store, a raising store or callback)
becomes an error reply and a rate-limited log line: the serving thread never
dies from a request, and nothing a peer sends is kept unbounded.
"""

import logging
import secrets
import threading

import zmq
from zmq.utils.monitor import recv_monitor_message

from serl_launcher.transport import codec, keys, limits, protocol, pytree, sockets
from serl_launcher.transport.config import TrainerConfig, describe_mismatch, fingerprint, shared_view
from serl_launcher.transport.errors import DecodeError, MessageTooLarge
from serl_launcher.transport.protocol import Rejected
from serl_launcher.transport.publisher import MAX_INCOMING_BYTES, ParamsPublisher
from serl_launcher.transport.sessions import SessionTable
from serl_launcher.common.throttled_log import ThrottledLog

logger = logging.getLogger(__name__)
_POLL_MS = 100
_STOP_TIMEOUT_S = 5.0
_MONITORED = (
    zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_ACCEPT_FAILED
)
_CONTENT_ERRORS = (ValueError, TypeError, KeyError, IndexError)  # a store refusing rows, not failing


class TrainerServer:
    """Receives transitions into registered data stores, answers requests, publishes params.

    data_callback(store_name, stacked_new_rows, client) runs after each stored batch, `client` being
    "name/session" of the actor that sent it (the key of client_stats()); if it raises, the error is
    logged and the rows stay stored. request_callback(type, payload) -> reply payload serves
    TrainerConfig.request_types; if it raises, the actor gets a RemoteError. Both run on the serving thread.
    """

    def __init__(self, config: TrainerConfig, data_callback=None, request_callback=None):
        self.config = config
        self._data_callback = data_callback
        self._request_callback = request_callback
        self._shared = shared_view(config)
        self._fingerprint = fingerprint(config)
        self._server_id = secrets.token_hex(8)
        self._stores = {}
        self._sessions = SessionTable()
        self.rejected_requests = 0
        self._stop_event = threading.Event()
        self._serving = threading.Event()
        self._served = threading.Event()
        self._thread = None
        self._stopped = False
        self._log_rejected = ThrottledLog(logger)  # one per kind of line, so a flood of one hides no other
        self._log_errors = ThrottledLog(logger)
        self._log_events = ThrottledLog(logger)
        sockets.raise_fd_limit()
        self._ctx = zmq.Context()
        self._authorizer = None
        self._publisher = None
        try:
            key_pair = sockets.server_key_pair(config)
            if config.curve_authorized_clients is not None:
                self._authorizer = keys.Authorizer(self._ctx, config.curve_authorized_clients)
            self._router = sockets.bind(self._ctx, zmq.ROUTER, config, config.port_number, key_pair)
            self._monitor = self._router.get_monitor_socket(_MONITORED)
            broadcast = sockets.bind(
                self._ctx,
                zmq.ROUTER,
                config,
                config.broadcast_port,
                key_pair,
                [(zmq.ROUTER_MANDATORY, 1), (zmq.SNDHWM, 1), (zmq.MAXMSGSIZE, MAX_INCOMING_BYTES)],
            )
            self._publisher = ParamsPublisher(broadcast, self._server_id, config.max_message_bytes, self._authorizer)
        except BaseException:
            if self._authorizer is not None:
                self._authorizer.stop()
            self._ctx.destroy(linger=0)
            raise
        logger.info(
            "learner transport listening on %s: requests port %d, params port %d%s",
            config.bind_address,
            config.port_number,
            config.broadcast_port,
            " (CURVE)" if key_pair else "",
        )

    def register_data_store(self, name: str, store) -> None:
        """Batches from clients named `name` go to `store` (e.g. the replay buffer).

        A store with insert_stacked(columns) gets each batch column-wise (every leaf with a
        leading axis N, the vectorised path); otherwise batch_insert(list of transition dicts),
        as agentlace calls it. To refuse rows, raise ValueError, TypeError, KeyError or
        IndexError: the actor skips the rows refused and delivers the rest. Any other
        exception means "not now": the actor keeps the rows and sends them again later.
        """
        if not callable(getattr(store, "insert_stacked", None)) and not callable(getattr(store, "batch_insert", None)):
            raise TypeError(f"data store {name!r} has no insert_stacked() or batch_insert(); subclass DataStoreBase")
        self._stores[name] = store

    def publish_network(self, params) -> None:
        """Send params (pytree of numpy or jax arrays) to every actor, now and to any that joins later.

        Returns at once: a background thread copies and encodes them and sends them out,
        only ever the newest (params published while earlier ones are encoded replace each
        other). If an earlier publish failed (params over max_message_bytes, or not arrays),
        raises its error (MessageTooLarge, TypeError) here, and publishes nothing.
        """
        self._publisher.offer(params)

    def flush_publish(self, timeout: float = None) -> bool:
        """Wait until the params last given to publish_network went out: True, or False after `timeout` seconds.

        Raises MessageTooLarge (or TypeError) if they could not be published.
        """
        return self._publisher.flush(timeout)

    def client_stats(self) -> dict:
        """{"name/session": {received, duplicates, batches, rejected_batches, dropped, rejected, pending, last_id,
        last_seen}}.

        `dropped`: transitions the actor lost to its own queue overflowing (exact: counted from the
        ids it skipped); `rejected`: refused by the store and skipped, as the actor reports them;
        `last_seen` is a time.time() timestamp. Sessions silent for limits.SESSION_IDLE_S may be forgotten.
        """
        return self._sessions.snapshot()

    def start(self, threaded: bool = True) -> None:
        """Serve requests on a daemon thread (threaded=True) or in this thread until stop()."""
        if self._serving.is_set() or self._stopped:
            raise RuntimeError("a TrainerServer can be started once")
        self._serving.set()
        if threaded:
            self._thread = threading.Thread(target=self._serve, name="transport-server", daemon=True)
            self._thread.start()
        else:
            self._serve()

    def stop(self) -> None:
        """Stop serving and publishing and close every socket (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._stop_event.set()
        if self._serving.is_set() and not self._served.wait(_STOP_TIMEOUT_S):
            logger.warning("serving thread still busy after %.0f s (a callback stuck?); leaving it", _STOP_TIMEOUT_S)
            return
        if self._thread is not None:
            self._thread.join()
        self._close_router()
        self._publisher.stop()
        if self._authorizer is not None:
            self._authorizer.stop()
        self._ctx.term()

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        try:
            while not self._stop_event.is_set():
                for sock, _ in poller.poll(_POLL_MS):
                    if sock is self._router:
                        self._serve_one(self._router.recv_multipart(zmq.NOBLOCK, copy=False))
                    else:
                        self._log_connection_event(recv_monitor_message(self._monitor, zmq.NOBLOCK))
        finally:
            self._close_router()
            self._served.set()

    def _close_router(self) -> None:
        if not self._router.closed:
            self._router.disable_monitor()
            self._monitor.close()
            self._router.close()

    def _serve_one(self, frames: list) -> None:
        # A DEALER sends [routing id, body] to the ROUTER; a REQ sends [routing id, b"", body].
        envelope = [frame.bytes for frame in frames[:-1]]
        if len(frames) == 2 or (len(frames) == 3 and not envelope[1]):
            reply = self._reply_to(frames[-1], envelope[0])
        else:
            envelope = envelope[:1]
            reply = protocol.error_reply(None, "bad_request", f"expected one body frame, got {len(frames) - 1}")
        reply, body = self._encode_reply(reply)
        if not reply["ok"]:
            self.rejected_requests += 1
            self._log_rejected.log(logging.WARNING, "rejected a request (%s): %s", reply["err"], reply["msg"])
        try:
            self._router.send_multipart(envelope + [body], zmq.NOBLOCK)
        except zmq.Again:
            self._log_rejected.log(logging.WARNING, "dropped a reply: the client is not reading its socket")

    def _encode_reply(self, reply: dict) -> tuple:
        """(reply, its bytes); a callback's reply that cannot be sent (an object, too large) becomes an error."""
        try:
            body = codec.encode(reply)
            if len(body) > self.config.max_message_bytes:
                raise MessageTooLarge(f"{len(body)} bytes > max_message_bytes={self.config.max_message_bytes}")
            return reply, body
        except Exception as exc:
            reply = protocol.error_reply(reply["id"], "callback_error", f"reply cannot be sent: {exc}")
            return reply, codec.encode(reply)

    def _reply_to(self, frame: zmq.Frame, route: bytes) -> dict:
        request_id = None
        try:
            request = protocol.parse_request(codec.decode(frame.buffer))
            request_id = request.id
            if self._authorizer is not None and not self._authorizer.allows(frame.get("User-Id")):
                raise Rejected("unauthorized", "this actor's key is no longer in curve_authorized_clients")
            return protocol.ok_reply(request_id, self._dispatch(request, route, len(frame)))
        except Rejected as exc:
            return protocol.error_reply(request_id, exc.kind, str(exc))
        except DecodeError as exc:
            return protocol.error_reply(request_id, "bad_request", str(exc))
        except Exception as exc:  # a bug of ours must not kill the serving thread either
            logger.exception("internal error while serving a request")
            return protocol.error_reply(request_id, "internal_error", f"{type(exc).__name__}: {exc}")

    def _dispatch(self, request: protocol.Request, route: bytes, size: int):
        if request.type == protocol.HELLO:
            return self._hello(protocol.parse_hello(request.payload), route)
        if request.cfg != self._fingerprint:
            raise Rejected(
                "config_mismatch", "the actor's TrainerConfig differs from the learner's (reconnect for details)"
            )
        if request.type == protocol.DATA:
            return self._receive(protocol.parse_batch(request.payload), route)
        if request.type == protocol.PARAMS:
            return self._latest_params(protocol.field(request.payload, "have", object))
        if request.type in self._shared["request_types"]:
            if size > self.config.max_request_bytes:
                limit = self.config.max_request_bytes
                raise Rejected("bad_request", f"request of {size} bytes > max_request_bytes={limit}")
            if self._request_callback is None:
                raise Rejected("unknown_type", f"the learner has no request_callback for {request.type!r}")
            return self._call_user(self._request_callback, request.type, request.payload)
        types = self._shared["request_types"]
        raise Rejected("unknown_type", f"{limits.clip(request.type)} is not in request_types {types}")

    def _hello(self, hello: protocol.Hello, route: bytes) -> dict:
        mismatch = describe_mismatch(self._shared, hello.config)
        if mismatch:
            raise Rejected("config_mismatch", mismatch)
        self._sessions.hello(hello, route)
        logger.info("actor %s (session %s) connected", limits.clip(hello.name), limits.clip(hello.session))
        return {"server": self._server_id}

    def _receive(self, batch: protocol.Batch, route: bytes) -> dict:
        store = self._stores.get(batch.name)
        if store is None:
            raise Rejected(
                "unknown_store", f"no data store registered as {limits.clip(batch.name)}; have {sorted(self._stores)}"
            )
        try:
            n_rows = pytree.batch_length(batch.data)
        except ValueError as exc:
            raise Rejected("bad_request", str(exc)) from None
        if batch.first_id + n_rows - 1 > limits.MAX_ID:
            raise Rejected("bad_request", f"ids up to {batch.first_id + n_rows - 1} do not fit an int64")
        stored = []

        def insert(skip: int) -> None:
            columns = pytree.take(batch.data, slice(skip, None)) if skip else batch.data
            self._insert(store, columns, n_rows - skip)
            stored.append(columns)

        acked, dropped = self._sessions.deliver(batch, n_rows, route, insert)
        if stored and self._data_callback is not None:
            try:
                self._data_callback(batch.name, stored[0], f"{batch.name}/{batch.session}")
            except Exception:  # the rows are stored: the actor must not resend them
                self._log_errors.log(logging.ERROR, "data_callback raised (the rows stay stored)", exc_info=True)
        return {"acked": acked, "dropped": dropped}

    def _latest_params(self, have) -> dict:
        published = self._publisher.latest
        if published is None or have == [self._server_id, published[0]]:
            return {"blob": None}
        return {"blob": published[1]}

    def _insert(self, store, columns: dict, n_rows: int) -> None:
        """Hand rows to the store: column-wise if it can take them so, else as agentlace's list of dicts."""
        try:
            if callable(getattr(store, "insert_stacked", None)):
                store.insert_stacked(columns)
            else:
                store.batch_insert([pytree.take(columns, i) for i in range(n_rows)])
        except _CONTENT_ERRORS as exc:
            raise Rejected(protocol.STORE_ERROR, f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            self._log_errors.log(logging.ERROR, "the data store failed (the actor keeps the rows)", exc_info=True)
            raise Rejected(protocol.STORE_FAILED, f"{type(exc).__name__}: {exc}") from exc

    def _call_user(self, fn, *args):
        """Run the request callback; an exception becomes a callback_error reply."""
        try:
            return fn(*args)
        except Exception as exc:
            self._log_errors.log(logging.ERROR, "request_callback raised while serving a request", exc_info=True)
            raise Rejected("callback_error", f"{type(exc).__name__}: {exc}") from exc

    def _log_connection_event(self, event: dict) -> None:
        endpoint = event["endpoint"].decode(errors="replace")
        if event["event"] == zmq.EVENT_DISCONNECTED:
            # An actor that stops closes its connections; one that died or sent a frame over
            # max_message_bytes looks the same from here, so this stays a quiet debug line.
            self._log_events.log(logging.DEBUG, "a connection on %s closed", endpoint)
        elif event["event"] == zmq.EVENT_ACCEPT_FAILED:
            self._log_events.log(
                logging.ERROR,
                "cannot accept a connection on %s (errno %s): out of file descriptors? actors are locked out",
                endpoint,
                event["value"],
            )
        else:
            self._log_events.log(
                logging.WARNING, "a handshake on %s failed: not a ZeroMQ peer, or wrong CURVE keys", endpoint
            )
