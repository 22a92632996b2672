"""Continuous-action agents. `AGENT_CLASSES` maps the names checkpoints record to the classes."""
from serl_launcher.agents.continuous.drq import DrQAgent, DrQConfig
from serl_launcher.agents.continuous.sac import SACAgent, SACConfig

AGENT_CLASSES = {cls.__name__: cls for cls in (SACAgent, DrQAgent)}

__all__ = ["AGENT_CLASSES", "DrQAgent", "DrQConfig", "SACAgent", "SACConfig"]
