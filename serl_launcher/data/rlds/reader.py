"""Reads an RLDS dataset in the TFDS layout into numpy episodes, without TensorFlow.

tfrecord's reader does the record framing and its `example_pb2` the protobuf parsing; this module
only reshapes the flat Example lists with features.json and turns every failure into an RLDSError
that names the file (and episode) at fault.
"""
import os
from typing import Iterator

from google.protobuf.message import DecodeError
from tfrecord import example_pb2
from tfrecord.reader import tfrecord_iterator

from serl_launcher.data.rlds import features as F
from serl_launcher.data.rlds.errors import RLDSError
from serl_launcher.data.rlds.layout import DATASET_INFO, FEATURES, read_json, split_shards


def read_rlds_dataset(path: str, split: str = "train") -> Iterator[dict]:
    """The episodes of one split, one dict per episode, in shard order.

    Each episode maps the step fields (observation, action, reward, discount, is_first, is_last,
    is_terminal, and any others) to numpy arrays stacked over steps; a dict observation stays a dict,
    images come back as uint8 HxWxC, text as bytes objects. Episode-level fields, if the dataset has
    any, sit under `episode["episode_metadata"]`. The metadata files and the presence of every shard
    are checked before this returns, so a broken dataset fails here rather than mid-training.
    """
    if not os.path.isdir(path):
        raise RLDSError(f"{path}: not a directory")
    spec = load_spec(path)
    return _episodes(spec, split_shards(path, split))


def load_spec(path: str) -> F.EpisodeSpec:
    """The dataset's features.json, parsed."""
    file = os.path.join(path, FEATURES)
    content = read_json(file)
    try:
        return F.spec_from_json(content)
    except RLDSError as error:
        raise RLDSError(f"{file}: {error}") from error
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise RLDSError(f"{file}: malformed ({error!r})") from error


def _episodes(spec: F.EpisodeSpec, shards: list) -> Iterator[dict]:
    for shard, expected in shards:
        count = 0
        try:
            for record in tfrecord_iterator(shard):
                example = example_pb2.Example.FromString(bytes(record))
                yield _decode_episode(spec, example.features.feature, f"{shard}, episode {count}")
                count += 1
        except RuntimeError as error:  # tfrecord's framing check: the file ends inside a record
            raise RLDSError(f"{shard}: truncated after {count} episodes ({error})") from error
        except DecodeError as error:
            raise RLDSError(f"{shard}, episode {count}: corrupt tf.train.Example ({error})") from error
        if count != expected:
            raise RLDSError(f"{shard}: holds {count} episodes, but {DATASET_INFO} lists {expected}")


def _decode_episode(spec: F.EpisodeSpec, features, where: str) -> dict:
    raw = {path: _values(features, f"{F.STEPS}/{path}", feature, where) for path, feature in spec.steps.items()}
    counts = {path: len(raw[path]) / f.values_per_item for path, f in spec.steps.items() if f.values_per_item}
    reference = "is_first" if "is_first" in counts else next(iter(counts), None)
    num_steps = counts.get(reference, 0)
    wrong = [path for path, n in counts.items() if n != num_steps or n != int(n)]
    if wrong:
        details = ", ".join(f"{F.STEPS}/{p} has {len(raw[p])} values for per-step shape {spec.steps[p].shape}"
                            for p in wrong)
        raise RLDSError(f"{where}: {details}, but {F.STEPS}/{reference} has {num_steps:g} steps")
    num_steps = int(num_steps)
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
