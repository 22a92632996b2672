"""Agent checkpoints with orbax: the train state, the agent's description, and a small JSON of counters.

Every checkpoint carries `agent.describe()` (agent class, SACConfig, observation spec, action size),
so `load_agent(path)` rebuilds the agent from the checkpoint alone, as Brax saves its network config:

    agent = load_agent("runs/pick_cube/2026-11-29_10-00-00/checkpoints")
    action = agent.sample_actions(observation, argmax=True)
"""
import json
import logging
import os
from typing import Optional

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from serl_launcher.agents.continuous import AGENT_CLASSES

_AGENT_ITEM = "agent"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked (missing, from another configuration, too old)."""


def _hide_orbax_info(record: logging.LogRecord) -> bool:
    """orbax logs a dozen INFO lines per save through absl; keep only its warnings and errors."""
    return record.levelno >= logging.WARNING or "orbax" not in record.pathname


absl_logging.get_absl_logger().addFilter(_hide_orbax_info)


class AgentCheckpointer:
    """Saves the agent (state + description) with a counters dict, keeping the newest `max_to_keep` (None: all)."""

    def __init__(self, directory: str, max_to_keep: Optional[int] = 10):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def all_steps(self) -> list:
        return list(self._manager.all_steps())

    def save(self, step: int, agent, metadata: Optional[dict] = None) -> None:
        """Write checkpoint `step` and wait until it is complete on disk."""
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(agent.state), metadata=ocp.args.JsonSave(metadata or {}),
            **{_AGENT_ITEM: ocp.args.JsonSave(agent.describe())}))
        self._manager.wait_until_finished()

    def description(self, step: Optional[int] = None) -> dict:
        """The saved `agent.describe()` of checkpoint `step` (default: the newest)."""
        step = self._step(step)
        path = self._item_path(step, _AGENT_ITEM)
        if not os.path.exists(path):
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} has no saved agent configuration (written by an older "
                "serl-jax): rebuild the agent with the flags it was trained with and call "
                "AgentCheckpointer(path).restore(agent)")
        with open(path) as file:
            return json.load(file)

    def metadata(self, step: Optional[int] = None) -> dict:
        """The counters dict saved with checkpoint `step` (default: the newest), e.g. learner_step, env."""
        with open(self._item_path(self._step(step), "metadata")) as file:
            return json.load(file)

    def _item_path(self, step: int, item: str) -> str:
        return os.path.join(self.directory, str(step), item, "metadata")

    def restore(self, agent, step: Optional[int] = None):
        """(agent with the saved state, metadata) from `step` (default: the newest).

        `agent` is a freshly built agent of the same configuration: it supplies shapes and dtypes.
        A checkpoint of another configuration raises CheckpointError naming what differs.
        """
        step = self._step(step)
        current = json.loads(json.dumps(agent.describe()))  # tuples as lists, as they were saved
        mismatch = _describe_mismatch(self.description(step), current)
        if mismatch:
            raise CheckpointError(f"checkpoint {step} in {self.directory} was trained with another agent "
                                  f"configuration: {mismatch}")
        abstract_state = jax.tree.map(ocp.utils.to_shape_dtype_struct, agent.state)
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), metadata=ocp.args.JsonRestore()))
        return agent.replace(state=restored.state), dict(restored.metadata or {})

    def close(self) -> None:
        self._manager.close()

    def _step(self, step: Optional[int]) -> int:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        if step not in self._manager.all_steps():
            raise CheckpointError(f"no checkpoint {step} in {self.directory}; have {self.all_steps()}")
        return step


def load_agent(path: str, step: Optional[int] = None):
    """The agent saved in checkpoint directory `path` (newest step by default), rebuilt from its saved description."""
    if not os.path.isdir(path):
        raise CheckpointError(f"{path} is not a checkpoint directory")
    checkpointer = AgentCheckpointer(path, max_to_keep=None)
    try:
        description = checkpointer.description(step)
        cls = AGENT_CLASSES.get(description.get("agent"))
        if cls is None:
            raise CheckpointError(f"{path}: unknown agent class {description.get('agent')!r}; "
                                  f"known: {sorted(AGENT_CLASSES)}")
        agent, _ = checkpointer.restore(cls.from_description(description), step)
        return agent
    finally:
        checkpointer.close()


def _describe_mismatch(saved: dict, current: dict, prefix: str = "") -> str:
    """'; '-joined `path: saved=... now=...` for every leaf that differs ('' when equal)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        keys = sorted(set(saved) | set(current))
        parts = [_describe_mismatch(saved.get(k), current.get(k), f"{prefix}{k}.") for k in keys]
        return "; ".join(p for p in parts if p)
    if saved != current:
        return f"{prefix.rstrip('.')}: checkpoint={_short(saved)} now={_short(current)}"
    return ""


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."
