"""TrainerServer: the learner's end of the transport.

Sockets: a ROUTER on `port_number` answers every actor request (handshake,
batches of transitions, latest params, custom requests); a PUB on
`broadcast_port` pushes params. One thread serves the ROUTER; publish_network
runs in the caller's thread. Every request is decoded and validated before use,
and every failure (bad bytes, unknown store, a raising callback) becomes an
error reply and a log line: the serving thread never dies from a request.
"""

import logging
import secrets
import threading

import zmq
from zmq.utils.monitor import recv_monitor_message

from serl_launcher.transport import codec, keys, protocol, pytree, sockets
from serl_launcher.transport.config import TrainerConfig, describe_mismatch, fingerprint, shared_view
from serl_launcher.transport.errors import DecodeError, MessageTooLarge
from serl_launcher.transport.protocol import Rejected
from serl_launcher.transport.sessions import SessionTable

logger = logging.getLogger(__name__)
_POLL_MS = 100
_STOP_TIMEOUT_S = 5.0
_REPLY_OVERHEAD = 1024  # published params are also sent inside a reply to late joiners; keep that under the limit
_MONITORED = zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH


class TrainerServer:
    """Receives transitions into registered data stores, answers requests, publishes params.

    data_callback(store_name, stacked_new_rows, client) runs after each stored batch, `client` being
    "name/session" of the actor that sent it (the key of client_stats());
    request_callback(type, payload) -> reply payload serves TrainerConfig.request_types.
    Both run on the serving thread; if they raise, the actor gets a RemoteError.
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
        self._seq = 0
        self._published = None  # (seq, encoded message) of the latest publish, for late joiners
        self._pub_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._serving = threading.Event()
        self._served = threading.Event()
        self._thread = None
        self._stopped = False
        self._ctx = zmq.Context()
        self._auth = None
        try:
            key_pair = sockets.server_key_pair(config)
            if config.curve_authorized_clients is not None:
                self._auth = keys.start_authenticator(self._ctx, config.curve_authorized_clients)
            self._router = sockets.bind(self._ctx, zmq.ROUTER, config, config.port_number, key_pair)
            self._monitor = self._router.get_monitor_socket(_MONITORED)
            self._pub = sockets.bind(self._ctx, zmq.PUB, config, config.broadcast_port, key_pair, [(zmq.CONFLATE, 1)])
        except BaseException:
            if self._auth is not None:
                self._auth.stop()
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
        """Batches from clients named `name` go to store.batch_insert (e.g. the replay buffer)."""
        if not callable(getattr(store, "batch_insert", None)):
            raise TypeError(f"data store {name!r} has no batch_insert(); subclass DataStoreBase")
        self._stores[name] = store

    def publish_network(self, params) -> None:
        """Send params (pytree of numpy or jax arrays) to every actor, now and to any that joins later."""
        with self._pub_lock:
            self._seq += 1
            blob = codec.encode({"server": self._server_id, "seq": self._seq, "params": params})
            if len(blob) + _REPLY_OVERHEAD > self.config.max_message_bytes:
                raise MessageTooLarge(
                    f"params of {len(blob)} bytes > max_message_bytes={self.config.max_message_bytes}"
                )
            self._published = (self._seq, blob)
            self._pub.send(blob, copy=False)

    def client_stats(self) -> dict:
        """{"name/session": {received, duplicates, batches, rejected_batches, dropped, pending, last_id, last_seen}}.

        `dropped` is what the actor lost to its own queue overflowing (as it reported);
        `last_seen` is a time.time() timestamp.
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
        """Stop serving and close every socket (idempotent)."""
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
        with self._pub_lock:
            self._pub.close()
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        try:
            while not self._stop_event.is_set():
                for sock, _ in poller.poll(_POLL_MS):
                    if sock is self._router:
                        self._serve_one(self._router.recv_multipart(zmq.NOBLOCK))
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
        if len(frames) == 2 or (len(frames) == 3 and frames[1] == b""):
            envelope, reply = frames[:-1], self._reply_to(frames[-1])
        else:
            envelope = frames[:1]
            reply = protocol.error_reply(None, "bad_request", f"expected one body frame, got {len(frames) - 1}")
        reply, body = self._encode_reply(reply)
        if not reply["ok"]:
            self.rejected_requests += 1
            logger.warning("rejected a request (%s): %s", reply["err"], reply["msg"])
        try:
            self._router.send_multipart(envelope + [body], zmq.NOBLOCK)
        except zmq.Again:
            logger.warning("dropped a reply: the client is not reading its socket")

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

    def _reply_to(self, body: bytes) -> dict:
        request_id = None
        try:
            request = protocol.parse_request(codec.decode(body))
            request_id = request.id
            return protocol.ok_reply(request_id, self._dispatch(request))
        except Rejected as exc:
            return protocol.error_reply(request_id, exc.kind, str(exc))
        except DecodeError as exc:
            return protocol.error_reply(request_id, "bad_request", str(exc))
        except Exception as exc:  # a bug of ours must not kill the serving thread either
            logger.exception("internal error while serving a request")
            return protocol.error_reply(request_id, "internal_error", f"{type(exc).__name__}: {exc}")

    def _dispatch(self, request: protocol.Request):
        if request.type == protocol.HELLO:
            return self._hello(request.payload)
        if request.cfg != self._fingerprint:
            raise Rejected(
                "config_mismatch", "the actor's TrainerConfig differs from the learner's (reconnect for details)"
            )
        if request.type == protocol.DATA:
            return self._receive(protocol.parse_batch(request.payload))
        if request.type == protocol.PARAMS:
            return self._latest_params(protocol.field(request.payload, "have", object))
        if request.type in self._shared["request_types"]:
            if self._request_callback is None:
                raise Rejected("unknown_type", f"the learner has no request_callback for {request.type!r}")
            return _call_user("callback_error", self._request_callback, request.type, request.payload)
        raise Rejected("unknown_type", f"{request.type!r} is not in request_types {self._shared['request_types']}")

    def _hello(self, payload) -> dict:
        actor_view = protocol.field(payload, "config", dict)
        name, session = protocol.field(payload, "name", str), protocol.field(payload, "session", str)
        mismatch = describe_mismatch(self._shared, actor_view)
        if mismatch:
            raise Rejected("config_mismatch", mismatch)
        self._sessions.touch(name, session)
        logger.info("actor %r (session %s) connected", name, session)
        return {"server": self._server_id}

    def _receive(self, batch: protocol.Batch) -> dict:
        store = self._stores.get(batch.name)
        if store is None:
            raise Rejected("unknown_store", f"no data store registered as {batch.name!r}; have {sorted(self._stores)}")
        try:
            n_rows = pytree.batch_length(batch.data)
        except ValueError as exc:
            raise Rejected("bad_request", str(exc)) from None
        stored = []

        def insert(skip: int) -> None:
            rows = pytree.take(batch.data, slice(skip, None)) if skip else batch.data
            _call_user("store_error", getattr(store, "insert_stacked", None) or store.batch_insert, rows)
            stored.append(rows)

        acked = self._sessions.deliver(
            batch.name, batch.session, batch.first_id, n_rows, batch.dropped, batch.pending, insert
        )
        if stored and self._data_callback is not None:
            _call_user("callback_error", self._data_callback, batch.name, stored[0], f"{batch.name}/{batch.session}")
        return {"acked": acked}

    def _latest_params(self, have) -> dict:
        published = self._published
        if published is None or have == [self._server_id, published[0]]:
            return {"blob": None}
        return {"blob": published[1]}

    def _log_connection_event(self, event: dict) -> None:
        endpoint = event["endpoint"].decode(errors="replace")
        if event["event"] == zmq.EVENT_DISCONNECTED:
            logger.info(
                "a connection on %s closed (actor stopped or died, or sent a frame over max_message_bytes=%d)",
                endpoint,
                self.config.max_message_bytes,
            )
        else:
            logger.warning("a handshake on %s failed: not a ZeroMQ peer, or wrong CURVE keys", endpoint)


def _call_user(kind: str, fn, *args):
    """Run user code (store, callbacks); an exception becomes an error reply of `kind`."""
    try:
        return fn(*args)
    except Exception as exc:
        logger.exception("%s raised while serving a request", getattr(fn, "__qualname__", fn))
        raise Rejected(kind, f"{type(exc).__name__}: {exc}") from exc
