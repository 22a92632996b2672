"""The learner's end of the data path: what the transport's server feeds, and the RLDS episode log."""
import jax
import numpy as np

from serl_launcher.data.replay_buffer import ReplayBuffer
from serl_launcher.data.validation import InvalidTransitions, stack_rows
from serl_launcher.runtime.protocol import INTERVENED


class LearnerDataStore:
    """Actor transitions into the online buffer; those flagged "intervened" (a person took over) also
    into the demo buffer, as HIL-SERL does. Registered with TrainerServer.register_data_store."""

    def __init__(self, online: ReplayBuffer, demos: ReplayBuffer | None = None):
        self.online, self.demos = online, demos

    def __len__(self) -> int:
        return len(self.online)

    def insert_stacked(self, columns) -> None:
        """The transport's vectorised path: N transitions column-wise."""
        if not isinstance(columns, dict):
            raise InvalidTransitions(f"expected a dict of columns, got {type(columns).__name__}")
        columns = dict(columns)
        intervened = columns.pop(INTERVENED, None)
        if intervened is not None:
            intervened = np.asarray(intervened)
            if intervened.dtype != np.bool_ or intervened.shape != np.shape(columns.get("rewards")):
                raise InvalidTransitions(f"{INTERVENED}: expected one bool per transition, got "
                                         f"{intervened.dtype} {intervened.shape}")
        self.online.insert_stacked(columns)
        if self.demos is not None and intervened is not None and intervened.any():
            self.demos.insert_stacked(jax.tree.map(lambda x: np.asarray(x)[intervened], columns))

    def batch_insert(self, transitions: list) -> None:
        """agentlace's signature: a list of transitions."""
        if transitions:
            self.insert_stacked(stack_rows(transitions))

    def insert(self, transition) -> None:
        self.insert_stacked(jax.tree.map(lambda x: np.asarray(x)[None], transition))


class RLDSLog:
    """Every received episode into one RLDS dataset, one episode recorder per actor session (their
    episodes interleave on the wire). The transport's data_callback."""

    def __init__(self, path: str):
        from serl_launcher.data.rlds import EpisodeRecorder, RLDSWriter

        self._writer = RLDSWriter(path, name="serl_rlds_dataset")
        self._new_recorder = lambda: EpisodeRecorder(self._writer)
        self._recorders = {}

    def __call__(self, store_name: str, rows, client: str) -> None:
        rows = {key: value for key, value in rows.items() if key != INTERVENED}
        recorder = self._recorders.setdefault(client, self._new_recorder())
        for i in range(len(rows["rewards"])):
            recorder.add(jax.tree.map(lambda x: x[i], rows))

    def close(self) -> None:
        for recorder in self._recorders.values():
            recorder.flush()
        self._writer.close()
