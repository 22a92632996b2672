"""Data stores: what an actor queues transitions in, and what the learner registers to receive them.

Ids follow agentlace: the first inserted item has id 0, `latest_data_id()` is -1
while empty, and `get_latest_data(from_id)` returns the items with id > from_id
that are still held.
"""

import abc
import itertools
import threading
from collections import deque


class DataStoreBase(abc.ABC):
    """A store the transport can feed (learner side) or drain (actor side), with agentlace's methods.

    A learner's store only needs `insert` and `__len__`; the server hands it each
    batch through `batch_insert(list of transitions)` (default: `insert` each), or,
    if the store defines it, through `insert_stacked(columns)`: the same rows
    column-wise (every leaf with a leading axis N), the vectorised path a replay
    buffer should provide. Both run on the server thread, so a buffer also sampled
    by the learner must do its own locking. To refuse rows, raise ValueError,
    TypeError, KeyError or IndexError (see TrainerServer.register_data_store).
    """

    def __init__(self, capacity: int):
        self.capacity = capacity

    @abc.abstractmethod
    def insert(self, data) -> None:
        """Add one transition (a dict of arrays / scalars)."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of items currently held."""

    def batch_insert(self, items: list) -> None:
        """Add transitions in order (agentlace's signature); default: `insert` each."""
        for item in items:
            self.insert(item)

    def latest_data_id(self) -> int:
        """Id of the newest item; needed only by a store a TrainerClient sends from."""
        raise NotImplementedError(f"{type(self).__name__} cannot be sent from: no latest_data_id()")

    def get_latest_data(self, from_id: int) -> list:
        """Items with id > from_id; needed only by a store a TrainerClient sends from."""
        raise NotImplementedError(f"{type(self).__name__} cannot be sent from: no get_latest_data()")

    def get_latest_data_with_id(self, from_id: int) -> tuple:
        """(id of the first returned item, items with id > from_id).

        Not atomic here: a store written by another thread while a client sends
        from it must override this under its lock (QueuedDataStore does).
        """
        items = self.get_latest_data(from_id)
        return self.latest_data_id() - len(items) + 1, items


class QueuedDataStore(DataStoreBase):
    """Bounded FIFO of transitions on the actor; the oldest are evicted when it is full.

    Thread-safe: the actor inserts while `TrainerClient.update()` may read from another thread.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        super().__init__(capacity)
        self._items = deque(maxlen=capacity)
        self._latest_id = -1
        self._lock = threading.Lock()

    def insert(self, data) -> None:
        with self._lock:
            self._items.append(data)
            self._latest_id += 1

    def latest_data_id(self) -> int:
        return self._latest_id

    def get_latest_data(self, from_id: int) -> list:
        return self.get_latest_data_with_id(from_id)[1]

    def get_latest_data_with_id(self, from_id: int) -> tuple:
        with self._lock:
            oldest_id = self._latest_id - len(self._items) + 1
            start = max(from_id + 1, oldest_id)
            return start, list(itertools.islice(self._items, start - oldest_id, None))

    def __len__(self) -> int:
        return len(self._items)
