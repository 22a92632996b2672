"""Experiment logging to Weights & Biases: online when configured, offline otherwise, off in debug runs."""
import os
from typing import Optional

import wandb


def _wandb_mode(debug: bool) -> str:
    if debug:
        return "disabled"
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") or _netrc_has_wandb() else "offline"


def _netrc_has_wandb() -> bool:
    path = os.path.expanduser("~/.netrc")
    return os.path.exists(path) and "api.wandb.ai" in open(path).read()


class WandBLogger:
    """A thin wrapper so training code calls `log(metrics, step)` whatever the mode."""

    def __init__(self, project: str, name: str, config: Optional[dict] = None, debug: bool = False,
                 directory: Optional[str] = None):
        self.mode = _wandb_mode(debug)
        self.run = wandb.init(project=project, name=name, config=config or {}, mode=self.mode, dir=directory,
                              settings=wandb.Settings(silent=True, console="off"))

    def log(self, metrics: dict, step: int) -> None:
        self.run.log({key: float(value) for key, value in metrics.items()}, step=step)

    def finish(self) -> None:
        self.run.finish()
