"""The learner's replay buffer: a preallocated numpy ring of transitions, safe to fill and sample concurrently.

The transport's server thread inserts batches from actors while the training loop samples. Memory
is allocated up front (1M PandaPickCube transitions: ~110 MB) so a long run never grows or
fragments. Every insert is validated against the env's spaces (`data.validation`).

Sampling gathers rows without holding the lock, so an insert never waits for a whole gather: it
notes the insert count before, and afterwards re-reads, under the lock, only the sampled rows that
inserts overwrote meanwhile (none, unless the ring wrapped onto them).
"""
import threading
from typing import Iterator, Optional

import gymnasium as gym
import jax
import numpy as np

from serl_launcher.data.prefetch import PrefetchIterator
from serl_launcher.data.validation import TransitionValidator, stack_rows


def _allocate(space: gym.Space, capacity: int):
    if isinstance(space, gym.spaces.Dict):
        return {key: _allocate(subspace, capacity) for key, subspace in space.spaces.items()}
    if isinstance(space, gym.spaces.Box):
        return np.empty((capacity, *space.shape), dtype=space.dtype)
    raise TypeError(f"replay buffer supports Box and Dict spaces, got {space}")


class BufferBase:
    """What every replay buffer offers on top of insert_stacked / sample / wait_for_data / __len__."""

    def insert(self, transition) -> None:
        """Add one transition (a dict of arrays or scalars, no batch axis)."""
        self.insert_stacked(jax.tree.map(lambda x: np.asarray(x)[None], transition))

    def batch_insert(self, transitions: list) -> None:
        """Add a list of transitions (agentlace's DataStoreBase signature)."""
        if transitions:
            self.insert_stacked(stack_rows(transitions))

    def get_iterator(self, queue_size: int = 2, sample_args: Optional[dict] = None, device=None,
                     batch_size: Optional[int] = None) -> Iterator:
        """Batches sampled and copied to `device` by a background thread, `queue_size` ahead.

        SERL's call `get_iterator(sample_args={"batch_size": N}, device=...)` works; sampling waits
        for the first transition, so the iterator may be made before any data arrived.
        """
        batch_size = batch_size or (sample_args or {}).get("batch_size")
        if not batch_size:
            raise ValueError("get_iterator needs batch_size (or sample_args={'batch_size': N})")

        def sample():
            while not self.wait_for_data(1, timeout=0.5):
                if iterator.closed:
                    raise StopIteration
            return self.sample(batch_size)

        iterator = PrefetchIterator(sample, queue_size=queue_size, device=device)
        return iterator


class ReplayBuffer(BufferBase):
    """Transitions with keys observations, next_observations, actions, rewards, masks, dones."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, capacity: int = 1_000_000,
                 seed: Optional[int] = None):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.observation_space, self.action_space = observation_space, action_space
        self._validate = TransitionValidator(observation_space, action_space)
        self._storage = {
            "observations": _allocate(observation_space, capacity),
            "next_observations": _allocate(observation_space, capacity),
            "actions": _allocate(action_space, capacity),
            "rewards": np.empty((capacity,), np.float32),
            "masks": np.empty((capacity,), np.float32),
            "dones": np.empty((capacity,), bool),
        }
        self._size = 0
        self._inserted = 0  # ever; the next row goes to index _inserted % capacity
        self._lock = threading.Lock()
        self._has_data = threading.Condition(self._lock)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self._size

    def latest_data_id(self) -> int:
        """Id of the newest transition ever inserted (-1 while empty): the count of inserts minus one."""
        return self._inserted - 1

    @property
    def nbytes(self) -> int:
        """Memory held by the preallocated arrays."""
        return sum(buffer.nbytes for buffer in jax.tree.leaves(self._storage))

    def insert_stacked(self, columns) -> None:
        """Add N transitions given column-wise (every leaf has leading axis N): the vectorised path.

        Raises data.validation.InvalidTransitions, storing nothing, if any row does not fit the spaces.
        """
        columns, n = self._validate(columns)
        if n == 0:
            return
        leaves = jax.tree.leaves(columns)
        if n > self.capacity:  # only the newest `capacity` rows can survive anyway
            leaves = [leaf[-self.capacity:] for leaf in leaves]
        with self._lock:
            indices = (self._inserted + np.arange(n - len(leaves[0]), n)) % self.capacity
            for buffer, values in zip(jax.tree.leaves(self._storage), leaves):
                buffer[indices] = values
            self._inserted += n
            self._size = min(self._size + n, self.capacity)
            self._has_data.notify_all()

    def sample(self, batch_size: int):
        """`batch_size` transitions drawn uniformly with replacement."""
        with self._lock:
            size, inserted_before = self._size, self._inserted
        if size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        indices = self._rng.integers(0, size, size=batch_size)
        batch = jax.tree.map(lambda buffer: buffer[indices], self._storage)
        with self._lock:
            overwritten = self._overwritten_since(inserted_before, indices)
            if overwritten.any():  # torn rows: re-read them, consistent now that we hold the lock
                rows = indices[overwritten]
                for out, buffer in zip(jax.tree.leaves(batch), jax.tree.leaves(self._storage)):
                    out[overwritten] = buffer[rows]
        return batch

    def wait_for_data(self, min_size: int = 1, timeout: Optional[float] = None) -> bool:
        """Block until the buffer holds `min_size` transitions (True) or `timeout` seconds passed (False)."""
        with self._has_data:
            return self._has_data.wait_for(lambda: self._size >= min_size, timeout)

    def _overwritten_since(self, inserted_before: int, indices: np.ndarray) -> np.ndarray:
        """Which sampled rows inserts since `inserted_before` wrote to (call with the lock held)."""
        written = self._inserted - inserted_before
        if written == 0:
            return np.zeros(len(indices), bool)
        if written >= self.capacity:
            return np.ones(len(indices), bool)
        return (indices - inserted_before) % self.capacity < written
