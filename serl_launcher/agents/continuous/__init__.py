"""Continuous-action agents. `AGENT_CLASSES` maps the names checkpoints record to the classes."""
from serl_launcher.agents.continuous.sac import SACAgent, SACConfig

AGENT_CLASSES = {cls.__name__: cls for cls in (SACAgent,)}

__all__ = ["AGENT_CLASSES", "SACAgent", "SACConfig"]
