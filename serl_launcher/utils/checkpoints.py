"""Agent checkpoints with orbax: the whole train state plus a small JSON of counters."""
import logging
import os
from typing import Optional

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging


def _hide_orbax_info(record: logging.LogRecord) -> bool:
    """orbax logs a dozen INFO lines per save through absl; keep only its warnings and errors."""
    return record.levelno >= logging.WARNING or "orbax" not in record.pathname


absl_logging.get_absl_logger().addFilter(_hide_orbax_info)


class AgentCheckpointer:
    """Saves `agent.state` (params, targets, optimiser states, rng, step) every call, keeping the newest `max_to_keep`."""

    def __init__(self, directory: str, max_to_keep: int = 3):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def save(self, step: int, agent, metadata: Optional[dict] = None) -> None:
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(agent.state), metadata=ocp.args.JsonSave(metadata or {})))
        self._manager.wait_until_finished()

    def restore(self, agent, step: Optional[int] = None):
        """(agent with the saved state, metadata) from `step` (default: the newest).

        `agent` is a freshly built agent of the same configuration: it supplies shapes and dtypes.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract_state = jax.tree.map(ocp.utils.to_shape_dtype_struct, agent.state)
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), metadata=ocp.args.JsonRestore()))
        return agent.replace(state=restored.state), dict(restored.metadata or {})

    def close(self) -> None:
        self._manager.close()
