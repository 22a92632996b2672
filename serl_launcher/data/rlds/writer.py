"""Writes RLDS episodes to a dataset directory in the TFDS layout, without TensorFlow.

The files are those `tfds.core.SequentialWriter` makes, so `tfds.builder_from_directory(path)` loads
them; tfrecord's `TFRecordWriter` does the record framing and protobuf serialization.
"""
import os
from typing import Iterable, Mapping, Sequence, Union

import numpy as np
from tfrecord.writer import TFRecordWriter

from serl_launcher.data.rlds import features as F
from serl_launcher.data.rlds import layout
from serl_launcher.data.rlds.errors import RLDSError

STEP_KEYS = ("observation", "action", "reward", "discount", "is_first", "is_last", "is_terminal")
Episode = Union[Mapping, Sequence[Mapping]]


class RLDSWriter:
    """Appends episodes, one tf.train.Example each, to `<path>/<name>-<split>.tfrecord-NNNNN` shards.

    An episode is a list of step dicts or a dict of arrays stacked over steps, with the keys of
    STEP_KEYS (a dict observation nests; uint8 HxWxC arrays become PNG images) and any extra step
    fields, plus optional episode-level fields under "episode_metadata". The first episode fixes
    features.json; later ones must match its keys, shapes and dtypes. dataset_info.json is rewritten
    each time a shard closes, so a writer that dies (say, a learner logging with --log_rlds_path)
    leaves a readable dataset of its closed shards: lower `episodes_per_shard` to lose less.
    """

    def __init__(self, path: str, name: str = "serl_rlds", split: str = "train",
                 episodes_per_shard: int = 100, version: str = "1.0.0"):
        layout.check_name("dataset name", name)
        layout.check_name("split", split)
        if episodes_per_shard < 1:
            raise ValueError(f"episodes_per_shard must be >= 1, got {episodes_per_shard}")
        if any(os.path.exists(os.path.join(path, f)) for f in (layout.DATASET_INFO, layout.FEATURES)):
            raise RLDSError(f"{path}: already holds a dataset; write to a new directory")
        os.makedirs(path, exist_ok=True)
        self.path, self.name, self.split, self.version = path, name, split, version
        self.episodes_per_shard = episodes_per_shard
        self.num_episodes = 0
        self._spec = None
        self._shard, self._shard_path, self._in_shard = None, None, 0
        self._shard_lengths = []
        self._num_bytes = 0
        self._closed = False

    def add_episode(self, episode: Episode) -> None:
        """Checks and appends one episode (see the class docstring for its form)."""
        if self._closed:
            raise RLDSError(f"{self.path}: writer is closed")
        where = f"{self.path}: episode {self.num_episodes}"
        try:
            steps, metadata, num_steps = _stack(episode)
            spec = self._spec or _infer_spec(steps, metadata)
            record = _encode(spec, steps, metadata, num_steps)
        except RLDSError as error:
            raise RLDSError(f"{where}: {error}") from error
        if self._spec is None:
            layout.write_json(os.path.join(self.path, layout.FEATURES), F.spec_to_json(spec))
            self._spec = spec
        if self._shard is None:
            paths = layout.shard_paths(self.path, self.name, self.split, layout.SEQUENTIAL_TEMPLATE,
                                       len(self._shard_lengths) + 1)
            self._shard, self._shard_path, self._in_shard = TFRecordWriter(paths[-1]), paths[-1], 0
        self._shard.write(record)
        self._in_shard += 1
        self.num_episodes += 1
        if self._in_shard == self.episodes_per_shard:
            self._close_shard()

    def close(self) -> None:
        """Closes the open shard and writes the final dataset_info.json (nothing if no episode came)."""
        if self._shard is not None:
            self._close_shard()
        self._closed = True

    def __enter__(self) -> "RLDSWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _close_shard(self) -> None:
        self._shard.close()
        self._shard = None
        self._shard_lengths.append(self._in_shard)
        self._num_bytes += os.path.getsize(self._shard_path)
        info = layout.dataset_info(self.name, self.version, self.split, self._shard_lengths, self._num_bytes)
        layout.write_json(os.path.join(self.path, layout.DATASET_INFO), info)


def write_rlds_dataset(path: str, episodes: Iterable[Episode], name: str = "serl_rlds",
                       split: str = "train", episodes_per_shard: int = 100) -> int:
    """Writes all `episodes` (see RLDSWriter) as a new dataset at `path`; returns how many."""
    with RLDSWriter(path, name=name, split=split, episodes_per_shard=episodes_per_shard) as writer:
        for episode in episodes:
            writer.add_episode(episode)
    return writer.num_episodes


def _stack(episode: Episode) -> tuple:
    """-> (flat step arrays stacked over steps, flat episode-level arrays, number of steps)."""
    if isinstance(episode, Mapping):
        episode = dict(episode)
        metadata = F.flatten(episode.pop(F.EPISODE_METADATA, {}))
        steps = {path: np.asarray(value) for path, value in F.flatten(episode).items()}
    else:
        metadata, flat_steps = {}, [F.flatten(step) for step in episode]
        if not flat_steps:
            raise RLDSError("has no steps")
        keys = list(flat_steps[0])
        if any(step.keys() != flat_steps[0].keys() for step in flat_steps):
            raise RLDSError(f"steps have different keys (first step: {sorted(keys)})")
        try:
            steps = {key: np.stack([np.asarray(step[key]) for step in flat_steps]) for key in keys}
        except ValueError as error:
            raise RLDSError(f"a step field changes shape within the episode ({error})") from error
    missing = [key for key in STEP_KEYS if key not in steps and not any(p.startswith(key + "/") for p in steps)]
    if missing:
        raise RLDSError(f"misses step fields {missing}")
    lengths = {path: value.shape[0] if value.ndim else None for path, value in steps.items()}
    num_steps = lengths["is_first"]
    if not num_steps or any(n != num_steps for n in lengths.values()):
        raise RLDSError(f"needs at least one step and one leading step axis for every field, got {lengths}")
    _check_boundaries(steps)
    return steps, {path: np.asarray(value) for path, value in metadata.items()}, num_steps


def _check_boundaries(steps: dict) -> None:
    """RLDS: is_first on the first step only, is_last on the last only, is_terminal only there."""
    first, last, terminal = (steps[key].astype(bool) for key in ("is_first", "is_last", "is_terminal"))
    expected_first = np.arange(len(first)) == 0
    if not (np.array_equal(first, expected_first) and np.array_equal(last, expected_first[::-1])):
        raise RLDSError(
            f"is_first {first.astype(int)} / is_last {last.astype(int)}: must mark the first / last step only"
        )
    if np.any(terminal & ~last):
        raise RLDSError("is_terminal is set on a step that is not the last")


def _infer_spec(steps: dict, metadata: dict) -> F.EpisodeSpec:
    if F.STEPS in {path.split("/")[0] for path in metadata}:
        raise RLDSError(f"'{F.STEPS}' is reserved and cannot be an episode_metadata key")
    return F.EpisodeSpec(
        steps={path: F.infer_feature(path, value) for path, value in steps.items()},
        metadata={path: F.infer_feature(path, value[None]) for path, value in metadata.items()},
    )


def _encode(spec: F.EpisodeSpec, steps: dict, metadata: dict, num_steps: int) -> dict:
    """-> the Example as `{key: (values, kind)}` for TFRecordWriter.write."""
    for kind, given, expected in (("step", steps, spec.steps), ("episode_metadata", metadata, spec.metadata)):
        if set(given) != set(expected):
            raise RLDSError(f"{kind} fields {sorted(given)} differ from the dataset's {sorted(expected)}")
    record = {f"{F.STEPS}/{p}": F.encode(f, f"{F.STEPS}/{p}", steps[p], (num_steps,)) for p, f in spec.steps.items()}
    record.update({p: F.encode(f, p, metadata[p], ()) for p, f in spec.metadata.items()})
    return record
