"""Synchronous training in one process: act, store, update, as the papers that report pixel benchmarks do.

The same actor loop as the asynchronous runtime (runtime.actor), with the learner inline instead of
behind the transport: transitions go straight into the replay buffer, and after every env step the
learner runs as many `update_high_utd` calls as keep `target_utd` critic steps per env step. The
policy the actor uses is always the newest. Metrics rows are the same ("learner/...", "eval/...",
"episode/...").

    result = run_sync(LearnerConfig(target_utd=1, ...), ActorConfig(...), agent, env, eval_env, progress_fn)
"""
import dataclasses
import threading
from typing import Optional

import gymnasium as gym
import jax
import numpy as np

from serl_launcher.data.demo_mixing import MixedSampler
from serl_launcher.runtime.actor import ActorLoop, PolicyHolder
from serl_launcher.runtime.config import ActorConfig, LearnerConfig
from serl_launcher.runtime.data_stores import LearnerDataStore
from serl_launcher.runtime.learner import make_buffers, pretrain
from serl_launcher.runtime.metrics import ProgressFn


@dataclasses.dataclass
class SyncResult:
    agent: object
    env_steps: int
    learner_step: int


class _InlineLearner:
    """Stands where the actor's network link stands: counts env steps and trains to keep the UTD."""

    def __init__(self, config: LearnerConfig, holder: PolicyHolder, sampler: MixedSampler, buffer,
                 progress_fn: ProgressFn):
        if config.target_utd <= 0:
            raise ValueError("synchronous training needs target_utd > 0 (critic steps per env step)")
        self.config, self.holder, self.sampler, self.buffer = config, holder, sampler, buffer
        self.progress_fn = progress_fn
        self.allowed, self.fatal = threading.Event(), None
        self.allowed.set()
        self.env_steps = self.learner_step = self.critic_steps = 0
        self._info = None

    def take_step(self) -> None:
        self.env_steps += 1
        cfg = self.config
        if self.env_steps < cfg.training_starts:
            return
        while self.critic_steps < cfg.target_utd * (self.env_steps - cfg.training_starts + 1):
            batch = jax.device_put(self.sampler.sample(cfg.batch_size * cfg.utd_ratio))
            self.holder.agent, self._info = self.holder.agent.update_high_utd(batch, utd_ratio=cfg.utd_ratio)
            self.learner_step += 1
            self.critic_steps += cfg.utd_ratio
            if self.learner_step % cfg.log_period == 0:
                self._report()

    def queue_stats(self, row: dict) -> None:
        """Episode and evaluation rows also carry the learner's latest losses and the real UTD."""
        if self._info is not None and "episode/return" in row:
            row = {**row, **self._learner_metrics()}
        self.progress_fn(row.get("env_steps", self.env_steps), {k: v for k, v in row.items() if k != "env_steps"})

    def unsent(self) -> int:
        return 0

    def _learner_metrics(self) -> dict:
        metrics = {f"learner/{k}": float(v) for k, v in jax.device_get(self._info).items()}
        return {**metrics, "learner/step": self.learner_step,
                "learner/utd": self.critic_steps / max(1, self.env_steps)}

    def _report(self) -> None:
        self.progress_fn(self.env_steps, self._learner_metrics())


class _BufferStore:
    """The actor's data store, writing straight into the learner's buffers."""

    def __init__(self, store: LearnerDataStore):
        self._store = store

    def insert(self, transition: dict) -> None:
        self._store.insert(transition)

    def __len__(self) -> int:
        return len(self._store)


def run_sync(learner_config: LearnerConfig, actor_config: ActorConfig, agent, env: gym.Env,
             eval_env: Optional[gym.Env] = None, progress_fn: Optional[ProgressFn] = None,
             stop: Optional[threading.Event] = None) -> SyncResult:
    """Train `agent` on `env` in this process for `actor_config.max_steps` env steps (or until `stop`)."""
    progress_fn = progress_fn or (lambda env_steps, metrics: None)
    buffer, demos = make_buffers(learner_config, env.observation_space, env.action_space)
    sampler = MixedSampler(buffer, demos, learner_config.demo_ratio, minibatches=learner_config.utd_ratio,
                           seed=learner_config.seed)
    agent = pretrain(learner_config, agent, sampler, progress_fn)
    holder = PolicyHolder(agent)
    holder.updates = 1  # the inline policy is always the learner's current one
    learner = _InlineLearner(learner_config, holder, sampler, buffer, progress_fn)
    # The actor's own rows ("actor/...") go to progress_fn directly; its episode and evaluation rows
    # once, through the learner (which adds its losses), as they reach the learner in async mode.
    def actor_rows(env_steps: int, row: dict) -> None:
        if any(key.startswith("actor/") for key in row):
            progress_fn(env_steps, row)

    loop = ActorLoop(actor_config, holder, env, eval_env or env, _BufferStore(LearnerDataStore(buffer, demos)),
                      learner, actor_rows, stop or threading.Event())
    loop.run()
    return SyncResult(holder.agent, loop.step, learner.learner_step)
