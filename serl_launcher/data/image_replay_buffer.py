"""A replay buffer for camera observations that stores every frame once (SERL's memory-efficient idea).

A transition's next observation is, almost always, the next transition's observation: storing both
doubles the memory images take. Here each camera image lives once in a ring of frames; transitions
hold frame numbers instead. While inserting, a transition whose observation images equal the
previous transition's next-observation images reuses that frame (compared by content, so episode
boundaries, actor restarts and interleaved actors stay correct: a frame is shared only when its
pixels are identical). Everything else (state, actions, rewards...) goes to an ordinary ReplayBuffer.

The frame ring holds a few more frames than there are transitions (one extra per episode start);
the oldest transitions of a buffer full of very short episodes can lose a frame, and are then no
longer sampled. Sampling re-checks, after gathering without the lock, that no frame it read was
overwritten meanwhile, and draws those rows again.
"""
import threading
from typing import Optional

import gymnasium as gym
import jax
import numpy as np

from serl_launcher.common.observations import drop_leaves, get_leaf
from serl_launcher.data.replay_buffer import BufferBase, ReplayBuffer
from serl_launcher.data.validation import TransitionValidator

_FRAME_ID = gym.spaces.Box(0, np.iinfo(np.int64).max, (), np.int64)
_LOCK_FREE_ATTEMPTS = 3
_MAX_RESAMPLES = 20


class ImageReplayBuffer(BufferBase):
    """Same interface as ReplayBuffer; `image_keys` are leaf key tuples (default: every uint8 image leaf)."""

    def __init__(self, observation_space: gym.spaces.Dict, action_space: gym.Space, capacity: int,
                 seed: Optional[int] = None, image_keys: Optional[tuple] = None,
                 frame_capacity: Optional[int] = None):
        self.capacity = capacity
        self.observation_space, self.action_space = observation_space, action_space
        self.image_keys = tuple(image_keys) if image_keys is not None else image_leaves_of(observation_space)
        if not self.image_keys:
            raise ValueError("ImageReplayBuffer needs image observations; use ReplayBuffer for state vectors")
        self.frame_capacity = frame_capacity or capacity + capacity // 16 + 64
        self._validate = TransitionValidator(observation_space, action_space)
        index_space = _with_frame_ids(observation_space, set(self.image_keys))
        self._transitions = ReplayBuffer(index_space, action_space, capacity, seed)
        self._frames = {keys: np.empty((self.frame_capacity, *_space_at(observation_space, keys).shape), np.uint8)
                        for keys in self.image_keys}
        self._frames_written = 0  # frame numbers 0.. are stored at number % frame_capacity
        self._last_next_frame: Optional[int] = None  # the previous insert's last next-observation frame
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._transitions)

    def latest_data_id(self) -> int:
        return self._transitions.latest_data_id()

    @property
    def nbytes(self) -> int:
        return self._transitions.nbytes + sum(frames.nbytes for frames in self._frames.values())

    def wait_for_data(self, min_size: int = 1, timeout: Optional[float] = None) -> bool:
        return self._transitions.wait_for_data(min_size, timeout)

    def insert_stacked(self, columns) -> None:
        """Add N transitions column-wise; validated like ReplayBuffer.insert_stacked."""
        columns, n = self._validate(columns)
        if n == 0:
            return
        observed = [np.stack([get_leaf(columns["observations"], k)[i] for k in self.image_keys]) for i in range(n)]
        following = [np.stack([get_leaf(columns["next_observations"], k)[i] for k in self.image_keys])
                     for i in range(n)]
        with self._lock:
            obs_ids, next_ids = np.empty(n, np.int64), np.empty(n, np.int64)
            previous = self._last_next_frame
            for i in range(n):
                if i > 0:
                    shared = np.array_equal(observed[i], following[i - 1])
                    previous = next_ids[i - 1]
                else:
                    shared = previous is not None and self._holds(previous) and np.array_equal(
                        observed[0], self._read(previous))
                obs_ids[i] = previous if shared else self._write(observed[i])
                next_ids[i] = self._write(following[i])
            self._last_next_frame = int(next_ids[-1])
        indexed = dict(columns)
        indexed["observations"] = _replace_images(columns["observations"], self.image_keys, obs_ids)
        indexed["next_observations"] = _replace_images(columns["next_observations"], self.image_keys, next_ids)
        self._transitions.insert_stacked(indexed)

    def sample(self, batch_size: int):
        """`batch_size` transitions drawn uniformly with replacement, images rebuilt from their frames.

        Gathers without the lock (inserts go on); rows whose frames were overwritten are drawn again.
        Should inserts keep outrunning it, the last attempts hold the lock, so sampling always ends.
        """
        ids = self._transitions.sample(batch_size)
        for _ in range(_LOCK_FREE_ATTEMPTS):
            batch, stale = self._with_images(ids)
            if not stale.any():
                return batch
            ids = self._redraw(ids, stale)
        with self._lock:  # inserts keep outrunning the gather: stop them while drawing valid rows
            for _ in range(_MAX_RESAMPLES):
                batch, stale = self._with_images(ids, locked=True)
                if not stale.any():
                    return batch
                ids = self._redraw(ids, stale)
        raise RuntimeError("could not draw transitions whose frames are still stored: the buffer holds too many "
                           "very short episodes for its frame_capacity")

    def _redraw(self, ids: dict, rows: np.ndarray) -> dict:
        redrawn = self._transitions.sample(int(rows.sum()))
        return jax.tree.map(lambda full, part: _put(full, rows, part), ids, redrawn)

    def _with_images(self, ids: dict, locked: bool = False) -> tuple:
        """(the batch with frame ids replaced by images, rows whose frames were overwritten meanwhile)."""
        batch, stale = dict(ids), np.zeros(len(ids["rewards"]), bool)
        gathered = {}
        for field in ("observations", "next_observations"):
            numbers = [np.asarray(get_leaf(ids[field], k)) for k in self.image_keys]
            gathered[field] = (numbers, [self._frames[k][n % self.frame_capacity]
                                         for k, n in zip(self.image_keys, numbers)])
        if locked:
            oldest = self._frames_written - self.frame_capacity
        else:
            with self._lock:  # after the gather: a frame rewritten meanwhile has a number below `oldest`
                oldest = self._frames_written - self.frame_capacity
        for field, (numbers, images) in gathered.items():
            for frame_numbers in numbers:
                stale |= frame_numbers < oldest
            batch[field] = _replace_images(ids[field], self.image_keys, images, per_key=True)
        return batch, stale

    def _write(self, images: np.ndarray) -> int:
        number = self._frames_written
        for k, image in zip(self.image_keys, images):
            self._frames[k][number % self.frame_capacity] = image
        self._frames_written += 1
        return number

    def _holds(self, number: int) -> bool:
        return number >= self._frames_written - self.frame_capacity

    def _read(self, number: int) -> np.ndarray:
        return np.stack([self._frames[k][number % self.frame_capacity] for k in self.image_keys])


def image_leaves_of(space: gym.Space, prefix: tuple = ()) -> tuple:
    """Key tuples of the uint8 image leaves of an observation space."""
    if isinstance(space, gym.spaces.Dict):
        return tuple(keys for key, sub in space.spaces.items() for keys in image_leaves_of(sub, prefix + (key,)))
    is_image = isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) >= 2
    return (prefix,) if is_image else ()


def _space_at(space: gym.spaces.Dict, keys: tuple) -> gym.spaces.Box:
    for key in keys:
        space = space.spaces[key]
    return space


def _with_frame_ids(space: gym.Space, image_keys: set, prefix: tuple = ()) -> gym.Space:
    if prefix in image_keys:
        return _FRAME_ID
    if isinstance(space, gym.spaces.Dict):
        return gym.spaces.Dict({key: _with_frame_ids(sub, image_keys, prefix + (key,))
                                for key, sub in space.spaces.items()})
    return space


def _replace_images(tree, image_keys: tuple, values, per_key: bool = False):
    """`tree` with each image leaf replaced: by values[i] (per_key) or, for ids, the same id column."""
    replacements = {keys: (values[i] if per_key else values) for i, keys in enumerate(image_keys)}
    kept = drop_leaves(tree, set(image_keys)) or {}
    return _merge(kept, replacements)


def _merge(tree: dict, replacements: dict) -> dict:
    result = dict(tree)
    for keys, value in replacements.items():
        node = result
        for key in keys[:-1]:
            node[key] = dict(node.get(key, {}))
            node = node[key]
        node[keys[-1]] = value
    return result


def _put(full: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    full = np.array(full, copy=True)
    full[rows] = values
    return full
