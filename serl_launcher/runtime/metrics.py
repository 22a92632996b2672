"""Metrics as data: the loops call `progress_fn(env_steps, metrics)`; sinks turn rows into a console
line, a JSONL file, a wandb run. Tests and benchmarks pass their own function and read the rows.

Every call is one row, indexed by env steps (the actor's, for evaluations): nothing is merged or
overwritten. Keys are namespaced: "learner/...", "eval/...", "episode/...", "actor/...".
"""
import json
import logging
import math
import os
import sys
import time
from typing import Callable, Iterable, Optional

logger = logging.getLogger(__name__)
ProgressFn = Callable[[int, dict], None]


class Fanout:
    """One progress_fn that hands every row to several sinks; a failing sink is logged, not fatal."""

    def __init__(self, sinks: Iterable[ProgressFn]):
        self.sinks = list(sinks)

    def __call__(self, env_steps: int, metrics: dict) -> None:
        for sink in self.sinks:
            try:
                sink(env_steps, metrics)
            except Exception:
                logger.exception("metrics sink %s failed", type(sink).__name__)

    def close(self) -> None:
        for sink in self.sinks:
            if hasattr(sink, "close"):
                sink.close()


class JsonlSink:
    """Appends each row to `path` as one JSON object {"env_steps", "time", **metrics} (flushed per row)."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._file = open(path, "a", buffering=1)

    def __call__(self, env_steps: int, metrics: dict) -> None:
        self._file.write(json.dumps({"env_steps": int(env_steps), "time": time.time(), **metrics}) + "\n")

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: str) -> list:
    """The rows a JsonlSink wrote."""
    with open(path) as file:
        return [json.loads(line) for line in file if line.strip()]


class ConsoleSink:
    """Short human lines: every evaluation at once, learner progress at most every `period_s` seconds;
    with `episode_lines`, one line per episode (the papers' training log) with the latest losses."""

    def __init__(self, period_s: float = 10.0, stream=None, episode_lines: bool = False):
        self.period_s, self.episode_lines = period_s, episode_lines
        self._stream = stream or sys.stdout
        self._last_line = {"learner": -math.inf, "actor": -math.inf}
        self._episodes = []
        self._episode_count = 0
        self._learner = {}

    def __call__(self, env_steps: int, metrics: dict) -> None:
        if "learner/step" in metrics:
            self._learner = metrics
        if "eval/return" in metrics:
            self._print(f"eval   @ {env_steps:>9,} env steps: {_eval_summary(metrics)}")
        elif "episode/return" in metrics:
            self._episode_count += 1
            if self.episode_lines:
                self._print(_episode_line(self._episode_count, env_steps, {**self._learner, **metrics}))
            else:
                self._episodes.append(metrics)
        elif "learner/step" in metrics and self._due("learner"):
            self._print(f"learner @ {env_steps:>9,} env steps: {_learner_summary(metrics)}{self._episode_summary()}")
        elif "actor/steps_per_s" in metrics and self._due("actor"):
            self._print(f"actor  @ {env_steps:>9,} env steps: {_actor_summary(metrics)}{self._episode_summary()}")

    def _due(self, kind: str) -> bool:
        if time.monotonic() - self._last_line[kind] < self.period_s:
            return False
        self._last_line[kind] = time.monotonic()
        return True

    def _episode_summary(self) -> str:
        if not self._episodes:
            return ""
        returns = [row["episode/return"] for row in self._episodes]
        text = f" | {len(returns)} episodes, return {sum(returns) / len(returns):.3g}"
        successes = [row["episode/success"] for row in self._episodes if "episode/success" in row]
        if successes:
            text += f", success {sum(successes) / len(successes):.2f}"
        self._episodes = []
        return text

    def _print(self, line: str) -> None:
        print(line, file=self._stream, flush=True)


def _episode_line(index: int, env_steps: int, metrics: dict) -> str:
    parts = [f"episode {index:>5}", f"{env_steps:>9,} env steps", f"{metrics.get('episode/duration_s', 0):5.1f} s",
             f"return {metrics['episode/return']:9.2f}"]
    for key, label in (("learner/batch_reward", "batch reward"), ("learner/actor_loss", "actor loss"),
                       ("learner/critic_loss", "critic loss"), ("learner/utd", "UTD")):
        if key in metrics:
            parts.append(f"{label} {metrics[key]:.3g}")
    return " | ".join(parts)


def _eval_summary(metrics: dict) -> str:
    text = f"return {metrics['eval/return']:.3g}"
    if "eval/success_rate" in metrics:
        text += f", success {metrics['eval/success_rate']:.2f}"
    if "eval/episodes" in metrics:
        text += f" ({int(metrics['eval/episodes'])} episodes)"
    return text


def _learner_summary(metrics: dict) -> str:
    parts = [f"{int(metrics['learner/step']):,} updates", f"{metrics.get('learner/updates_per_s', 0):.1f}/s"]
    if "learner/utd" in metrics:
        target = metrics.get("learner/target_utd", 0)
        parts.append(f"UTD {metrics['learner/utd']:.2g}" + (f" (target {target:g})" if target else ""))
    for key, label in (("learner/critic_loss", "critic"), ("learner/actor_loss", "actor"),
                       ("learner/temperature", "alpha")):
        if key in metrics:
            parts.append(f"{label} {metrics[key]:.3g}")
    return ", ".join(parts)


def _actor_summary(metrics: dict) -> str:
    text = f"{metrics['actor/steps_per_s']:.0f} steps/s, policy v{int(metrics.get('actor/policy_updates', 0))}"
    if "actor/period_p50_ms" in metrics:
        text += (f", control period p50 {metrics['actor/period_p50_ms']:.2f} / p99 "
                 f"{metrics['actor/period_p99_ms']:.2f} ms, {int(metrics.get('actor/missed_deadlines', 0))} missed")
    if metrics.get("actor/throttled"):
        text += ", paused by the learner (UTD throttle)"
    return text


class WandbSink:
    """Logs every row to a wandb run with env_steps as its x axis (rows are never merged by step).

    mode: "online" when logged in, "offline" otherwise (sync later with `wandb sync DIR`), "disabled".
    """

    def __init__(self, project: str, name: str, config: dict, directory: str, mode: Optional[str] = None,
                 entity: Optional[str] = None, group: Optional[str] = None):
        import wandb

        from serl_launcher.common.wandb import wandb_mode

        self.mode = mode or wandb_mode(debug=False)
        os.makedirs(directory, exist_ok=True)
        self.run = wandb.init(project=project, name=name, config=config, mode=self.mode, dir=directory,
                              entity=entity, group=group, settings=wandb.Settings(silent=True, console="off"))
        self.run.define_metric("env_steps")
        self.run.define_metric("*", step_metric="env_steps")
        if self.mode == "offline":
            logger.info("wandb is offline (not logged in): sync later with `wandb sync %s`", self.run.dir)

    def __call__(self, env_steps: int, metrics: dict) -> None:
        self.run.log({**metrics, "env_steps": int(env_steps)})

    def close(self) -> None:
        self.run.finish()
