"""Learner/actor transport on ZeroMQ, API-compatible with agentlace (see docs/transport.md).

Port a SERL script by replacing `from agentlace.trainer import ...` and
`from agentlace.data.data_store import QueuedDataStore` with imports from here.
"""

from serl_launcher.transport.client import TrainerClient
from serl_launcher.transport.config import TrainerConfig
from serl_launcher.transport.data_store import DataStoreBase, QueuedDataStore
from serl_launcher.transport.errors import (
    ConfigMismatchError,
    MessageTooLarge,
    RateLimited,
    RemoteError,
    TransportError,
    TransportTimeout,
)
from serl_launcher.transport.server import TrainerServer

__all__ = [
    "TrainerConfig",
    "TrainerServer",
    "TrainerClient",
    "DataStoreBase",
    "QueuedDataStore",
    "TransportError",
    "TransportTimeout",
    "RemoteError",
    "ConfigMismatchError",
    "MessageTooLarge",
    "RateLimited",
]
