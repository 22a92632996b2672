"""TrainerConfig (agentlace-compatible) and the fingerprint learner and actors compare at handshake.

Fields that legitimately differ between machines (where to bind, which key files
to read) are local; all others are shared and must be equal on both sides.
"""

import dataclasses
import hashlib
import json
from typing import List, Optional

from serl_launcher.transport.limits import MAX_ECHO_CHARS, clip, cut

# Bumped whenever the wire format changes, so old and new peers refuse each other clearly.
PROTOCOL_VERSION = 2
_MAX_LISTED = 8  # differing fields named in a mismatch message
LOCAL_FIELDS = (
    "bind_address",
    "curve_server_secret_key",
    "curve_server_public_key",
    "curve_client_secret_key",
    "curve_authorized_clients",
)


@dataclasses.dataclass
class TrainerConfig:
    """Ports, request types and limits shared by learner and actors (build both from one function).

    `rate_limit`: most custom requests per second a client may make (None: no limit).
    `max_message_bytes`: largest message either side accepts; ZeroMQ drops bigger frames.
    `max_request_bytes`: largest custom request (request_types) the learner accepts (and at
    most max_message_bytes).
    `compatibility`: JSON-able values the application must agree on (observation and action
    spaces, network shapes...), compared at the handshake so a mismatched actor is refused
    with the differing key named instead of when its first batch reaches the replay buffer.
    `bind_address`: interface the learner listens on ("0.0.0.0": all, as SERL; "127.0.0.1": local only).
    `curve_*`: paths of ZeroMQ CURVE key files (see docs/transport.md); all None: plain TCP.
    """

    port_number: int = 5488
    broadcast_port: int = 5489
    request_types: List[str] = dataclasses.field(default_factory=list)
    rate_limit: Optional[float] = None
    version: str = "1"
    max_message_bytes: int = 256 * 2**20
    max_request_bytes: int = 2**20
    compatibility: dict = dataclasses.field(default_factory=dict)
    bind_address: str = "0.0.0.0"
    curve_server_secret_key: Optional[str] = None
    curve_server_public_key: Optional[str] = None
    curve_client_secret_key: Optional[str] = None
    curve_authorized_clients: Optional[str] = None

    def __post_init__(self):
        for port in (self.port_number, self.broadcast_port):
            if not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"ports must be ints in 1..65535, got {port!r}")
        if self.port_number == self.broadcast_port:
            raise ValueError("port_number and broadcast_port must differ")
        for name in self.request_types:
            if not isinstance(name, str) or not name or name.startswith("__"):
                raise ValueError(f"request type {name!r} must be a non-empty str not starting with '__'")
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be >= 1024, got {self.max_message_bytes}")
        if self.max_request_bytes < 1024:
            raise ValueError(f"max_request_bytes must be >= 1024, got {self.max_request_bytes}")
        if not isinstance(self.compatibility, dict):
            raise ValueError(f"compatibility must be a dict, got {type(self.compatibility).__name__}")
        try:
            json.dumps(self.compatibility, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"compatibility must hold JSON values (str keys, finite numbers): {exc}") from None


def shared_view(config: TrainerConfig) -> dict:
    """The fields both sides must agree on, plus the wire protocol version."""
    view = {k: v for k, v in dataclasses.asdict(config).items() if k not in LOCAL_FIELDS}
    view["request_types"] = sorted(view["request_types"])
    view["rate_limit"] = None if config.rate_limit is None else float(config.rate_limit)
    view["compatibility"] = json.loads(json.dumps(config.compatibility))  # tuples -> lists, as the actor's arrive
    view["protocol"] = PROTOCOL_VERSION
    return view


def fingerprint(config: TrainerConfig) -> str:
    """Short hash of the shared view, sent with every request so a mismatch is caught at once."""
    return hashlib.sha256(json.dumps(shared_view(config), sort_keys=True).encode()).hexdigest()[:16]


def describe_mismatch(learner: dict, actor) -> str:
    """The shared fields (and compatibility keys) that differ, each value cut to ~200 characters ('' when equal).

    `actor` comes off the wire: any value, of any size; at most a few fields are listed.
    """
    if not isinstance(actor, dict):
        return f"the actor's config is a {type(actor).__name__}, not a map"
    diffs = _differences("", learner, actor)
    listed = "; ".join(diffs[:_MAX_LISTED])
    return listed + (f"; and {len(diffs) - _MAX_LISTED} more" if len(diffs) > _MAX_LISTED else "")


def _differences(prefix: str, learner: dict, actor: dict) -> list:
    diffs = []
    for key in sorted(set(learner) | set(actor)):  # keys off the wire are str (the codec refuses others)
        mine, theirs = learner.get(key), actor.get(key)
        if not prefix and key == "compatibility" and isinstance(mine, dict) and isinstance(theirs, dict):
            diffs += _differences("compatibility", mine, theirs)
        elif not _equal(mine, theirs):
            name = f"{prefix}[{clip(key)}]" if prefix else cut(key, MAX_ECHO_CHARS)
            diffs.append(f"{name}: learner={clip(mine)} actor={clip(theirs)}")
    return diffs


def _equal(a, b) -> bool:
    try:
        return type(a) is type(b) and a == b
    except RecursionError:  # a deeply nested value from the wire
        return False
