"""Reads an RLDS dataset in the TFDS layout into numpy episodes, without TensorFlow.

records.py does the record framing (checking CRCs and lengths), tfrecord's `example_pb2` the
protobuf parsing; this module reshapes the flat Example lists with features.json and turns every
failure, whatever raised it, into an RLDSError that names the file (and episode) at fault.

Datasets may come from anywhere (Open X-Embodiment, a colleague's demos), so a file is not trusted
to be well-formed: records are at most `max_record_bytes`, and an episode is decoded only if its
declared shapes times its step count fit `max_episode_bytes`.
"""
import os
from typing import Iterator

from tfrecord import example_pb2

from serl_launcher.data.rlds import features as F
from serl_launcher.data.rlds.errors import RLDSError
from serl_launcher.data.rlds.layout import DATASET_INFO, FEATURES, read_json, split_shards
from serl_launcher.data.rlds.records import read_records

MAX_RECORD_BYTES = 1 << 30
MAX_EPISODE_BYTES = 2 << 30


def read_rlds_dataset(path: str, split: str = "train", max_record_bytes: int = MAX_RECORD_BYTES,
                      max_episode_bytes: int = MAX_EPISODE_BYTES) -> Iterator[dict]:
    """The episodes of one split, one dict per episode, in shard order.

    Each episode maps the step fields (observation, action, reward, discount, is_first, is_last,
    is_terminal, and any others) to numpy arrays stacked over steps; a dict observation stays a dict,
    images come back as uint8 HxWxC, text as bytes objects. Episode-level fields, if the dataset has
    any, sit under `episode["episode_metadata"]`. The metadata files and the presence of every shard
    are checked before this returns, so a broken dataset fails here rather than mid-training.
    max_record_bytes bounds one stored episode, max_episode_bytes one decoded episode (its steps
    times the per-step sizes features.json declares); raise them for unusually large episodes.
    """
    if not os.path.isdir(path):
        raise RLDSError(f"{path}: not a directory")
    spec = load_spec(path)
    return _episodes(spec, split_shards(path, split), max_record_bytes, max_episode_bytes)


def load_spec(path: str) -> F.EpisodeSpec:
    """The dataset's features.json, parsed."""
    file = os.path.join(path, FEATURES)
    content = read_json(file)
    try:
        return F.spec_from_json(content)
    except RLDSError as error:
        raise RLDSError(f"{file}: {error}") from error
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
        raise RLDSError(f"{file}: malformed ({error!r})") from error


def _episodes(spec: F.EpisodeSpec, shards: list, max_record_bytes: int, max_episode_bytes: int) -> Iterator[dict]:
    for shard, expected in shards:
        count = 0
        records = read_records(shard, max_record_bytes)
        while True:
            where = f"{shard}, episode {count}"
            try:
                record = next(records, None)
                if record is None:
                    break
                example = example_pb2.Example.FromString(record)
                episode = _decode_episode(spec, example.features.feature, where, max_episode_bytes)
            except RLDSError as error:
                if str(error).startswith(shard):
                    raise
                raise RLDSError(f"{where}: {error}") from error
            except Exception as error:  # protobuf, numpy, PIL, MemoryError...: still name the file
                raise RLDSError(f"{where}: {type(error).__name__}: {error}") from error
            yield episode
            count += 1
        if count != expected:
            raise RLDSError(f"{shard}: holds {count} episodes, but {DATASET_INFO} lists {expected}")


def _decode_episode(spec: F.EpisodeSpec, features, where: str, max_episode_bytes: int) -> dict:
    raw = {path: _values(features, f"{F.STEPS}/{path}", feature, where) for path, feature in spec.steps.items()}
    counts = {path: len(raw[path]) / f.values_per_item for path, f in spec.steps.items() if f.values_per_item}
    reference = "is_first" if "is_first" in counts else next(iter(counts), None)
    num_steps = counts.get(reference, 0)
    wrong = [path for path, n in counts.items() if n != num_steps or n != int(n)]
    wrong += [path for path, f in spec.steps.items() if not f.values_per_item and len(raw[path])]
    if wrong:
        details = ", ".join(f"{F.STEPS}/{p} has {len(raw[p])} values for per-step shape {spec.steps[p].shape}"
                            for p in wrong)
        raise RLDSError(f"{where}: {details}, but {F.STEPS}/{reference} has {num_steps:g} steps")
    num_steps = int(num_steps)
    decoded_bytes = num_steps * sum(f.step_bytes for f in spec.steps.values())
    if decoded_bytes > max_episode_bytes:
        raise RLDSError(f"{where}: {num_steps} steps of the declared shapes take {decoded_bytes} bytes, "
                        f"over max_episode_bytes={max_episode_bytes}")
    episode = F.unflatten(
        {path: F.decode(f, f"{where}: {F.STEPS}/{path}", raw[path], num_steps) for path, f in spec.steps.items()}
    )
    if spec.metadata:
        metadata = {}
        for path, feature in spec.metadata.items():
            values = _values(features, path, feature, where)
            if len(values) != feature.values_per_item:
                raise RLDSError(f"{where}: {path} has {len(values)} values for shape {feature.shape}")
            metadata[path] = F.decode(feature, f"{where}: {path}", values, 1)[0]
        episode[F.EPISODE_METADATA] = F.unflatten(metadata)
    return episode


def _values(features, key: str, feature: F.Feature, where: str):
    if key not in features:
        raise RLDSError(f"{where}: no {key!r} in the tf.train.Example")
    kind = features[key].WhichOneof("kind")
    if kind not in (None, feature.proto_list):
        raise RLDSError(f"{where}: {key} is a {kind}, but features.json implies {feature.proto_list}")
    return getattr(features[key], feature.proto_list).value
