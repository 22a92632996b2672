"""The learner's replay buffer: a preallocated numpy ring of transitions.

The transport's server thread inserts batches from actors while the training loop samples, so
every access holds one lock. Memory is allocated up front (1M PandaPickCube transitions: ~110 MB)
so a long run never grows or fragments.
"""
import threading
from typing import Iterator, Optional

import gymnasium as gym
import jax
import numpy as np

from serl_launcher.data.prefetch import PrefetchIterator
from serl_launcher.transport.data_store import DataStoreBase


def _allocate(space: gym.Space, capacity: int):
    if isinstance(space, gym.spaces.Dict):
        return {key: _allocate(subspace, capacity) for key, subspace in space.spaces.items()}
    if isinstance(space, gym.spaces.Box):
        return np.empty((capacity, *space.shape), dtype=space.dtype)
    raise TypeError(f"replay buffer supports Box and Dict spaces, got {space}")


class ReplayBuffer(DataStoreBase):
    """Transitions with keys observations, next_observations, actions, rewards, masks, dones."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, capacity: int = 1_000_000,
                 seed: Optional[int] = None):
        super().__init__(capacity)
        self._storage = {
            "observations": _allocate(observation_space, capacity),
            "next_observations": _allocate(observation_space, capacity),
            "actions": _allocate(action_space, capacity),
            "rewards": np.empty((capacity,), np.float32),
            "masks": np.empty((capacity,), np.float32),
            "dones": np.empty((capacity,), bool),
        }
        self._treedef = jax.tree.structure(self._storage)
        self._size = 0
        self._next_index = 0
        self._inserted = 0
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self._size

    def latest_data_id(self) -> int:
        return self._inserted - 1

    @property
    def nbytes(self) -> int:
        """Memory held by the preallocated arrays."""
        return sum(buffer.nbytes for buffer in jax.tree.leaves(self._storage))

    def insert(self, transition) -> None:
        self.batch_insert(jax.tree.map(lambda x: np.asarray(x)[None], transition))

    def batch_insert(self, stacked) -> None:
        """Insert N transitions given column-wise (every leaf has leading axis N)."""
        leaves = self._checked_leaves(stacked)
        n = len(leaves[0])
        if n == 0:
            return
        if n > self.capacity:  # only the newest `capacity` rows can survive anyway
            leaves, n = [leaf[-self.capacity:] for leaf in leaves], self.capacity
        with self._lock:
            indices = (self._next_index + np.arange(n)) % self.capacity
            for buffer, values in zip(jax.tree.leaves(self._storage), leaves):
                buffer[indices] = values
            self._next_index = (self._next_index + n) % self.capacity
            self._size = min(self._size + n, self.capacity)
            self._inserted += n

    def insert_stacked(self, stacked) -> None:
        """The transport's vectorised path (TrainerServer calls it when a store has it): batch_insert."""
        self.batch_insert(stacked)

    def sample(self, batch_size: int):
        """`batch_size` transitions drawn uniformly with replacement."""
        with self._lock:
            if self._size == 0:
                raise ValueError("cannot sample from an empty replay buffer")
            indices = self._rng.integers(0, self._size, size=batch_size)
            return jax.tree.map(lambda buffer: buffer[indices], self._storage)

    def get_iterator(self, batch_size: int, queue_size: int = 2, device=None) -> Iterator:
        """Batches sampled and copied to `device` by a background thread, `queue_size` ahead."""
        return PrefetchIterator(lambda: self.sample(batch_size), queue_size=queue_size, device=device)

    def _checked_leaves(self, stacked) -> list:
        if not isinstance(stacked, dict) or set(stacked) != set(self._storage):
            got = sorted(stacked) if isinstance(stacked, dict) else type(stacked).__name__
            raise ValueError(f"transition keys {got} != expected {sorted(self._storage)}")
        leaves, treedef = jax.tree.flatten(stacked)
        if treedef != self._treedef:
            raise ValueError(f"transition structure {treedef} != replay buffer's {self._treedef}")
        leaves = [np.asarray(leaf) for leaf in leaves]
        n = len(leaves[0]) if leaves[0].ndim else -1
        for path, buffer, leaf in zip(_paths(self._storage), jax.tree.leaves(self._storage), leaves):
            if leaf.ndim == 0 or leaf.shape != (n, *buffer.shape[1:]):
                raise ValueError(f"{path}: got shape {leaf.shape}, expected ({n}, {', '.join(map(str, buffer.shape[1:]))})")
        return leaves


def _paths(tree) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
