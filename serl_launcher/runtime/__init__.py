"""The loops every example shares: the learner and the actor, their configs, and metrics sinks.

Data flows one way: env -> actor loop -> transport -> replay buffer -> agent update -> params ->
transport -> actor loop. `cli` turns SERL-style flags into these configs for the example scripts.
"""
from serl_launcher.runtime.actor import ActorResult, run_actor
from serl_launcher.runtime.config import ActorConfig, LearnerConfig
from serl_launcher.runtime.learner import LearnerResult, run_learner
from serl_launcher.runtime.metrics import ConsoleSink, Fanout, JsonlSink, WandbSink, read_jsonl

__all__ = ["ActorConfig", "ActorResult", "ConsoleSink", "Fanout", "JsonlSink", "LearnerConfig", "LearnerResult",
           "WandbSink", "read_jsonl", "run_actor", "run_learner"]
