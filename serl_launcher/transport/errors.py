"""Exceptions raised by the transport, so callers can tell transient trouble from bugs.

`TransportTimeout` is transient (learner down or busy): retry later. The others
point at a programming or deployment error and should not be retried blindly.
"""


class TransportError(Exception):
    """Base class of every error the transport raises on purpose."""


class TransportTimeout(TransportError):
    """No reply within the client's timeout (learner unreachable, busy or restarting)."""


class RemoteError(TransportError):
    """The learner received the request but answered with an error (bad request, callback raised)."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"learner replied with error [{kind}]: {message}")
        self.kind = kind


class ConfigMismatchError(TransportError):
    """Learner and actor were built with different `TrainerConfig`s (or transport versions)."""


class MessageTooLarge(TransportError):
    """An outgoing message exceeds `TrainerConfig.max_message_bytes`; it was not sent."""


class RateLimited(TransportError):
    """`request()` was called more often than `TrainerConfig.rate_limit` allows."""


class DecodeError(ValueError):
    """Bytes that are not a valid transport message (malformed, wrong types, unsafe dtype)."""
