"""SERL's data-store names over this project's replay buffer (`make_replay_buffer` builds them)."""
from typing import Optional

import gymnasium as gym

from serl_launcher.data.replay_buffer import ReplayBuffer


class ReplayBufferDataStore(ReplayBuffer):
    """A ReplayBuffer the transport can feed (it already has `insert`, `batch_insert(list)` and
    `insert_stacked`), optionally writing every inserted transition to an RLDS dataset directory."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, capacity: int,
                 rlds_logger_path: Optional[str] = None):
        super().__init__(observation_space, action_space, capacity)
        self._recorder = None
        if rlds_logger_path:
            from serl_launcher.data.rlds import EpisodeRecorder, RLDSWriter

            self._recorder = EpisodeRecorder(RLDSWriter(rlds_logger_path, name="serl_rlds_dataset"))

    def insert_stacked(self, columns) -> None:
        super().insert_stacked(columns)
        if self._recorder is not None:
            for i in range(len(columns["rewards"])):
                self._recorder.add({key: _row(value, i) for key, value in columns.items()})

    def close(self) -> None:
        """Write the pending episode and close the RLDS dataset (if logging)."""
        if self._recorder is not None:
            self._recorder.close()


def _row(value, i: int):
    if isinstance(value, dict):
        return {key: _row(v, i) for key, v in value.items()}
    return value[i]
