"""Layout of messages on the request socket, and validation of everything read from a socket.

A request is one frame {"t": type, "id": int, "cfg": config fingerprint, "p": payload};
a reply is {"id": request id or None, "ok": true, "p": payload} or
{"id": ..., "ok": false, "err": kind, "msg": text}. Published params are
{"server": learner instance id, "seq": publish number, "params": pytree}.
Types starting with "__" are the transport's own; custom ones come from
TrainerConfig.request_types.
"""

from typing import NamedTuple

from serl_launcher.transport.errors import DecodeError

HELLO = "__hello__"  # handshake: compare configs, register the actor session
DATA = "__data__"  # a stacked batch of transitions for one data store
PARAMS = "__params__"  # latest published params (late joiners, missed publishes)


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


class Batch(NamedTuple):
    name: str
    session: str
    first_id: int
    dropped: int
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
    return {"id": request_id, "ok": False, "err": kind, "msg": message}


def parse_request(obj) -> Request:
    return Request(field(obj, "t", str), field(obj, "id", int), field(obj, "cfg", str), field(obj, "p", object))


def parse_reply(obj) -> Reply:
    ok = field(obj, "ok", bool)
    if ok:
        return Reply(obj.get("id"), True, field(obj, "p", object), "", "")
    return Reply(obj.get("id"), False, None, field(obj, "err", str), field(obj, "msg", str))


def parse_batch(payload) -> Batch:
    batch = Batch(
        field(payload, "name", str),
        field(payload, "session", str),
        field(payload, "first_id", int),
        field(payload, "dropped", int),
        field(payload, "pending", int),
        field(payload, "data", dict),
    )
    if min(batch.first_id, batch.dropped, batch.pending) < 0:
        raise DecodeError("first_id, dropped and pending must be >= 0")
    return batch


def parse_published(obj) -> Published:
    return Published(field(obj, "server", str), field(obj, "seq", int), field(obj, "params", object))


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
