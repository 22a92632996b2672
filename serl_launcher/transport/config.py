"""TrainerConfig (agentlace-compatible) and the fingerprint learner and actors compare at handshake.

Fields that legitimately differ between machines (where to bind, which key files
to read) are local; all others are shared and must be equal on both sides.
"""

import dataclasses
import hashlib
import json
from typing import List, Optional

# Bumped whenever the wire format changes, so old and new peers refuse each other clearly.
PROTOCOL_VERSION = 1
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
    `bind_address`: interface the learner listens on ("0.0.0.0": all, as SERL; "127.0.0.1": local only).
    `curve_*`: paths of ZeroMQ CURVE key files (see docs/transport.md); all None: plain TCP.
    """

    port_number: int = 5488
    broadcast_port: int = 5489
    request_types: List[str] = dataclasses.field(default_factory=list)
    rate_limit: Optional[float] = None
    version: str = "1"
    max_message_bytes: int = 256 * 2**20
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


def shared_view(config: TrainerConfig) -> dict:
    """The fields both sides must agree on, plus the wire protocol version."""
    view = {k: v for k, v in dataclasses.asdict(config).items() if k not in LOCAL_FIELDS}
    view["request_types"] = sorted(view["request_types"])
    view["rate_limit"] = None if config.rate_limit is None else float(config.rate_limit)
    view["protocol"] = PROTOCOL_VERSION
    return view


def fingerprint(config: TrainerConfig) -> str:
    """Short hash of the shared view, sent with every request so a mismatch is caught at once."""
    return hashlib.sha256(json.dumps(shared_view(config), sort_keys=True).encode()).hexdigest()[:16]


def describe_mismatch(learner: dict, actor: dict) -> str:
    """Human-readable list of the shared fields that differ ('' when they agree)."""
    keys = sorted(set(learner) | set(actor))
    diffs = [f"{k}: learner={learner.get(k)!r} actor={actor.get(k)!r}" for k in keys if learner.get(k) != actor.get(k)]
    return "; ".join(diffs)
