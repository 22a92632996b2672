"""Weights & Biases: online when logged in, offline otherwise, off in debug runs; SERL's `WandBLogger`."""
import os
from typing import Optional

import wandb


def wandb_mode(debug: bool) -> str:
    """"disabled" for debug runs, else $WANDB_MODE, else "online" when an API key is configured, else "offline"."""
    if debug:
        return "disabled"
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") or _netrc_has_wandb() else "offline"


def _netrc_has_wandb() -> bool:
    path = os.path.expanduser("~/.netrc")
    return os.path.exists(path) and "api.wandb.ai" in open(path).read()


def flatten_dict(data: dict, prefix: str = "") -> dict:
    """{"eval": {"return": 1}} -> {"eval/return": 1}, as SERL's logger does."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten_dict(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class WandBLogger:
    """SERL's logger interface: `log(data, step)`, nested dicts flattened to "a/b" keys."""

    def __init__(self, project: str, name: str, config: Optional[dict] = None, debug: bool = False,
                 directory: Optional[str] = None, entity: Optional[str] = None, group: Optional[str] = None):
        self.mode = wandb_mode(debug)
        self.run = wandb.init(project=project, name=name, config=config or {}, mode=self.mode, dir=directory,
                              entity=entity, group=group, settings=wandb.Settings(silent=True, console="off"))

    def log(self, data: dict, step: Optional[int] = None) -> None:
        self.run.log(flatten_dict(data), step=step)

    def finish(self) -> None:
        self.run.finish()
