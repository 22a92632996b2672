"""Every bound the learner puts on what a peer sends, in one place, and how peer values are echoed.

Why: anyone who can reach the learner's ports can send anything. Each value a
peer supplies must be small before it is stored, compared, logged or echoed,
so one bad or malicious actor cannot bloat the learner's memory or its logs.
Tests lower some of these (they are read when a server or table is built).
"""

import reprlib

# Wire decoding (codec): the msgpack part of a message, where a byte can become a 72-byte
# Python object, is bounded; arrays travel as raw bytes after it and cost what they weigh.
MAX_SKELETON_BYTES = 1 << 20
BYTES_PER_CONTAINER = 4  # a message may hold one list/map per 4 skeleton bytes (legit data: far fewer)
MAX_DEPTH = 32  # nesting of a transition batch or a compatibility value

# Request fields.
MAX_NAME_CHARS = 256  # data store names, request types
MAX_SESSION_CHARS = 64  # TrainerClient session ids are 16 hex characters
MAX_TOKEN_CHARS = 128  # the secret a session is re-bound with (64 hex characters)
MAX_BATCH_ROWS = 1 << 16  # transitions in one batch (TrainerClient sends at most max_batch)
MAX_ID = (1 << 63) - 1  # transition ids and counters must fit an int64

# Learner state kept per peer.
MAX_SESSIONS = 1024  # actor sessions the learner tracks at once
SESSION_IDLE_S = 600.0  # a session silent this long may be forgotten (it re-handshakes if it returns)
MAX_SUBSCRIBERS = 1024  # actors the learner pushes params to directly (others poll every second)

# Echoing peer-supplied values in error replies and log lines.
MAX_ECHO_CHARS = 200
MAX_ERROR_CHARS = 2000


class _BoundedRepr(reprlib.Repr):
    """reprlib with larger limits and bytes cut before repr, so a 32 MiB value costs 200 characters."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist = 3, 8, 8
        self.maxstring = self.maxother = self.maxlong = MAX_ECHO_CHARS

    def repr_bytes(self, value, level):
        text = repr(value[: self.maxstring])
        return text if len(value) <= self.maxstring else text + "..."


_REPR = _BoundedRepr()


def clip(value) -> str:
    """repr(value), at most MAX_ECHO_CHARS characters, built without ever making the full repr."""
    try:
        text = _REPR.repr(value)
    except Exception as exc:  # a hostile object's __repr__ must not break an error path
        text = f"<unprintable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= MAX_ECHO_CHARS else text[: MAX_ECHO_CHARS - 3] + "..."


def cut(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """text cut to `limit` characters (error messages and log lines)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
