"""The TFDS directory layout: `dataset_info.json`, `features.json` and the split's TFRecord shards.

dataset_info.json lists each split with its shard lengths and a `filepathTemplate`. `tfds build`
writes `{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}` (name-train.tfrecord-00000-of-00004), which is
also what TFDS assumes when the template is missing; `tfds.core.SequentialWriter`, which cannot
know the shard count up front, writes `{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_INDEX}`
(name-train.tfrecord-00000). Our writer is in the same position and uses the latter.
"""
import json
import os
import re

from serl_launcher.data.rlds.errors import RLDSError

DATASET_INFO = "dataset_info.json"
FEATURES = "features.json"
FILE_FORMAT = "tfrecord"
DEFAULT_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
SEQUENTIAL_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_INDEX}"
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def check_name(kind: str, value: str) -> None:
    """Dataset and split names go into file names and TFDS's registry: keep them snake_case."""
    if not _NAME.fullmatch(value):
        raise RLDSError(f"{kind} {value!r} must be snake_case: lowercase letters, digits and '_'")


def shard_paths(directory: str, name: str, split: str, template: str, num_shards: int) -> list:
    """Paths of a split's shards, formatted as TFDS does (indices at least 5 digits wide)."""
    digits = max(len(str(num_shards)), 5)
    paths = []
    for index in range(num_shards):
        fields = {
            "DATASET": name,
            "SPLIT": split,
            "FILEFORMAT": FILE_FORMAT,
            "SHARD_INDEX": f"{index:0{digits}d}",
            "NUM_SHARDS": f"{num_shards:0{digits}d}",
            "SHARD_X_OF_Y": f"{index:0{digits}d}-of-{num_shards:0{digits}d}",
        }
        try:
            paths.append(os.path.join(directory, template.format(**fields)))
        except (KeyError, IndexError, ValueError) as error:
            raise RLDSError(f"{os.path.join(directory, DATASET_INFO)}: bad filepathTemplate {template!r}") from error
    return paths


def read_json(path: str) -> dict:
    """A metadata file's content, or an RLDSError naming the file."""
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except FileNotFoundError as error:
        raise RLDSError(f"{path}: missing (not a TFDS/RLDS dataset directory?)") from error
    except (OSError, ValueError) as error:
        raise RLDSError(f"{path}: unreadable JSON ({error})") from error
    if not isinstance(content, dict):
        raise RLDSError(f"{path}: expected a JSON object")
    return content


def write_json(path: str, content: dict) -> None:
    """Writes atomically, so a reader (or a crash) never sees half a metadata file."""
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        json.dump(content, file, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def split_shards(directory: str, split: str) -> list:
    """`[(shard_path, num_episodes), ...]` for one split, checked against dataset_info.json."""
    info_path = os.path.join(directory, DATASET_INFO)
    info = read_json(info_path)
    file_format = info.get("fileFormat", FILE_FORMAT)
    if file_format != FILE_FORMAT:
        raise RLDSError(f"{info_path}: file format {file_format!r} is not supported, only {FILE_FORMAT!r}")
    try:
        splits = {entry["name"]: entry for entry in info.get("splits", [])}
        lengths = {name: [int(n) for n in entry.get("shardLengths", [])] for name, entry in splits.items()}
    except (KeyError, TypeError, ValueError) as error:
        raise RLDSError(f"{info_path}: malformed splits ({error!r})") from error
    if split not in splits:
        raise RLDSError(f"{info_path}: no split {split!r} (has {sorted(splits)})")
    entry, lengths = splits[split], lengths[split]
    template = entry.get("filepathTemplate", DEFAULT_TEMPLATE)
    paths = shard_paths(directory, info.get("name", ""), split, template, len(lengths))
    for path in paths:
        if not os.path.isfile(path):
            raise RLDSError(f"{path}: shard listed in {info_path} is missing")
    return list(zip(paths, lengths))


def dataset_info(name: str, version: str, split: str, shard_lengths: list, num_bytes: int) -> dict:
    """dataset_info.json content with the fields TFDS's SequentialWriter writes."""
    return {
        "fileFormat": FILE_FORMAT,
        "name": name,
        "version": version,
        "splits": [
            {
                "filepathTemplate": SEQUENTIAL_TEMPLATE,
                "name": split,
                "numBytes": str(num_bytes),
                "shardLengths": [str(n) for n in shard_lengths],
            }
        ],
    }
