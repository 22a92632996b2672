"""Layout of messages on the request socket, and validation of everything read from a socket.

A request is one frame {"t": type, "id": int, "cfg": config fingerprint, "p": payload};
a reply is {"id": request id or None, "ok": true, "p": payload} or
{"id": ..., "ok": false, "err": kind, "msg": text}. Published params are
{"server": learner instance id, "seq": publish number, "params": pytree}.
Types starting with "__" are the transport's own; custom ones come from
TrainerConfig.request_types. Every string a peer sends is bounded in length and
every id or counter must fit an int64 (limits.py), checked before anything is stored.
"""

from typing import NamedTuple

from serl_launcher.transport import limits
from serl_launcher.transport.errors import DecodeError

HELLO = "__hello__"  # handshake: compare configs, open (or re-bind) the actor's session
DATA = "__data__"  # a stacked batch of transitions for one data store
PARAMS = "__params__"  # latest published params (late joiners, missed publishes)
SUBSCRIBE = b"__subscribe__"  # sent by a params subscriber to the broadcast port, every second

# Error kinds a TrainerClient handles itself (see client.py); the others reach the caller as RemoteError.
STORE_ERROR = "store_error"  # the store refused the rows' content (ValueError, TypeError, KeyError, IndexError)
STORE_FAILED = "store_failed"  # the store raised anything else: kept queued, retried later
UNKNOWN_SESSION = "unknown_session"  # not (or no longer) known: handshake again
NOT_YOUR_SESSION = "not_your_session"  # opened by another connection: handshake again (with the session's token)
BUSY = "busy"  # the learner's session table is full of active sessions


class Rejected(Exception):
    """Raised while serving a request; becomes an error reply of the given kind."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class Request(NamedTuple):
    type: str
    id: int
    cfg: str
    payload: object


class Reply(NamedTuple):
    id: object
    ok: bool
    payload: object
    error: str
    message: str


class Hello(NamedTuple):
    config: dict
    name: str
    session: str
    token: str
    next_id: int  # the first id the actor will send (a new session starts there)
    dropped: int  # cumulative transitions the actor lost to its own queue overflowing
    rejected: int  # cumulative transitions the actor skipped because the learner's store refused them


class Batch(NamedTuple):
    name: str
    session: str
    first_id: int
    dropped: int
    rejected: int
    pending: int
    data: dict


class Published(NamedTuple):
    server: str
    seq: int
    params: object


def request(type_: str, request_id: int, cfg: str, payload) -> dict:
    return {"t": type_, "id": request_id, "cfg": cfg, "p": payload}


def ok_reply(request_id, payload) -> dict:
    return {"id": request_id, "ok": True, "p": payload}


def error_reply(request_id, kind: str, message: str) -> dict:
    return {"id": request_id, "ok": False, "err": kind, "msg": limits.cut(message)}


def parse_request(obj) -> Request:
    return Request(
        text(obj, "t", limits.MAX_NAME_CHARS), field(obj, "id", int), text(obj, "cfg", 64), field(obj, "p", object)
    )


def parse_reply(obj) -> Reply:
    ok = field(obj, "ok", bool)
    if ok:
        return Reply(obj.get("id"), True, field(obj, "p", object), "", "")
    return Reply(obj.get("id"), False, None, field(obj, "err", str), field(obj, "msg", str))


def parse_hello(payload) -> Hello:
    return Hello(
        field(payload, "config", dict),
        text(payload, "name", limits.MAX_NAME_CHARS),
        text(payload, "session", limits.MAX_SESSION_CHARS),
        text(payload, "token", limits.MAX_TOKEN_CHARS),
        count(payload, "next_id"),
        count(payload, "dropped"),
        count(payload, "rejected"),
    )


def parse_batch(payload) -> Batch:
    return Batch(
        text(payload, "name", limits.MAX_NAME_CHARS),
        text(payload, "session", limits.MAX_SESSION_CHARS),
        count(payload, "first_id"),
        count(payload, "dropped"),
        count(payload, "rejected"),
        count(payload, "pending"),
        field(payload, "data", dict),
    )


def parse_published(obj) -> Published:
    return Published(field(obj, "server", str), field(obj, "seq", int), field(obj, "params", object))


def text(obj, key: str, max_chars: int) -> str:
    """obj[key], a non-empty str of at most max_chars characters; raises DecodeError."""
    value = field(obj, key, str)
    if not value or len(value) > max_chars:
        raise DecodeError(f"field {key!r} must be 1..{max_chars} characters, got {len(value)}")
    return value


def count(obj, key: str) -> int:
    """obj[key], an int in 0..2**63-1 (ids and counters); raises DecodeError."""
    value = field(obj, key, int)
    if not 0 <= value <= limits.MAX_ID:
        raise DecodeError(f"field {key!r} must be in 0..2**63-1, got {limits.clip(value)}")
    return value


def field(obj, key: str, kind):
    """obj[key], checked to be a `kind` (a type or tuple; bool is not an int here); raises DecodeError."""
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a map, got {type(obj).__name__}")
    if key not in obj:
        raise DecodeError(f"missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DecodeError(f"field {key!r} must be {expected}, got {type(value).__name__}")
    return value
