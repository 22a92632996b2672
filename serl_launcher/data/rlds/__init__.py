"""RLDS datasets in the TFDS on-disk layout (SERL's demos, Open X-Embodiment), without TensorFlow.

A dataset directory holds dataset_info.json, features.json and `<name>-<split>.tfrecord-NNNNN`
shards with one tf.train.Example per episode; `tfds.builder_from_directory` reads what we write and
we read what TFDS writes. tfrecord registers its own copy of the tf.train.Example protos, which
protobuf refuses to load next to TensorFlow's: use this package and TensorFlow in separate processes.
"""
try:
    import tfrecord  # noqa: F401  (imported here only to explain the clash below)
except TypeError as error:
    raise ImportError(
        "serl_launcher.data.rlds cannot be imported after TensorFlow: tfrecord and TensorFlow both define "
        "the tf.train.Example protos and protobuf refuses the second copy. Use them in separate processes."
    ) from error

from serl_launcher.data.rlds.errors import RLDSError
from serl_launcher.data.rlds.reader import read_rlds_dataset
from serl_launcher.data.rlds.transitions import (
    ACTION_EVERY_STEP,
    FINAL_OBSERVATION,
    EpisodeRecorder,
    episode_to_transitions,
    episodes_to_transitions,
    stack_transitions,
    transitions_to_episode,
)
from serl_launcher.data.rlds.writer import RLDSWriter, write_rlds_dataset

__all__ = [
    "ACTION_EVERY_STEP",
    "FINAL_OBSERVATION",
    "EpisodeRecorder",
    "RLDSError",
    "RLDSWriter",
    "episode_to_transitions",
    "episodes_to_transitions",
    "read_rlds_dataset",
    "stack_transitions",
    "transitions_to_episode",
    "write_rlds_dataset",
]
