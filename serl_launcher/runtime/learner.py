"""The learner loop: receive transitions -> replay buffer (+ demos) -> update_high_utd -> publish the policy.

    result = run_learner(LearnerConfig(...), agent, observation_space, action_space, trainer_config,
                         progress_fn=print_or_sink)

It serves actors (any number, on any machine) through the transport, throttles them to
`target_utd` when asked, checkpoints, resumes, and reports metrics rows through `progress_fn`:
"learner/..." every `log_period` updates, and the rows actors send ("eval/...", "episode/...").
Setting `stop` (or Ctrl-C) ends it after the current update with a final checkpoint.
"""
import dataclasses
import logging
import threading
import time
from typing import Optional

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from serl_launcher.common.throttled_log import ThrottledLog
from serl_launcher.data.demo_mixing import MixedSampler
from serl_launcher.data.image_replay_buffer import ImageReplayBuffer, image_leaves_of
from serl_launcher.data.prefetch import PrefetchIterator
from serl_launcher.data.replay_buffer import ReplayBuffer
from serl_launcher.data.validation import InvalidTransitions
from serl_launcher.runtime.config import LearnerConfig
from serl_launcher.runtime.data_stores import LearnerDataStore, RLDSLog
from serl_launcher.runtime.metrics import ProgressFn
from serl_launcher.runtime.protocol import TRAINING_STORE, LearnerStatus
from serl_launcher.transport import TrainerConfig, TrainerServer
from serl_launcher.utils.checkpoints import AgentCheckpointer

logger = logging.getLogger(__name__)
STATE_BUFFER_CAPACITY = 1_000_000  # replay_buffer_capacity=None: ~110 MB of PandaPickCube transitions
IMAGE_BUFFER_CAPACITY = 50_000  # ~5 GB with two 128x128 RGB cameras (frames stored once)
UTD_DRIFT_WARNING = 0.5  # warn when the real UTD since training began falls below this fraction of the target
UTD_DRIFT_MIN_ENV_STEPS = 1000  # ... once that many env steps came in since then (short windows are bursty)


@dataclasses.dataclass
class LearnerResult:
    agent: object
    learner_step: int
    env_steps: int
    nonfinite_updates: int


def run_learner(config: LearnerConfig, agent, observation_space: gym.Space, action_space: gym.Space,
                trainer_config: TrainerConfig, progress_fn: Optional[ProgressFn] = None,
                stop: Optional[threading.Event] = None, checkpoint_metadata: Optional[dict] = None) -> LearnerResult:
    """Train `agent` on what actors send until `config.max_steps` updates or `stop` is set."""
    progress_fn = progress_fn or (lambda env_steps, metrics: None)
    stop = stop or threading.Event()
    buffer, demos = make_buffers(config, observation_space, action_space)
    status = LearnerStatus(config.target_utd, config.training_starts)
    checkpointer = AgentCheckpointer(config.checkpoint_dir, config.max_checkpoints) if config.checkpoint_dir else None
    start_step, env_steps_before = 0, 0
    if checkpointer is not None and checkpointer.latest_step() is not None:
        agent, metadata = checkpointer.restore(agent)
        start_step = int(metadata.get("learner_step", checkpointer.latest_step()))
        env_steps_before = int(metadata.get("env_steps", 0))
        logger.info("resumed from %s at learner step %d (%d env steps); the replay buffer starts empty",
                    checkpointer.directory, start_step, env_steps_before)
    status.learner_step = start_step

    if config.pretrain_steps and start_step == 0:  # a resumed learner was pretrained already
        agent = pretrain(config, agent, MixedSampler(buffer, demos, config.demo_ratio, config.utd_ratio,
                                                     config.seed), progress_fn, start_step)
        start_step = status.learner_step = start_step + config.pretrain_steps
    rlds_log = RLDSLog(config.log_rlds_path) if config.log_rlds_path else None
    server = TrainerServer(trainer_config, data_callback=rlds_log, request_callback=status.handle_request)
    server.register_data_store(TRAINING_STORE, _CountingStore(LearnerDataStore(buffer, demos), status))
    server.start(threaded=True)
    loop = _Loop(config, agent, status, server, progress_fn, stop, checkpointer,
                 {**(checkpoint_metadata or {})}, env_steps_before)
    try:
        server.publish_network(agent.policy_params())  # actors act with it while the buffer fills
        if _wait_for_transitions(status, config.training_starts, stop):
            sampler = MixedSampler(buffer, demos, config.demo_ratio, minibatches=config.utd_ratio, seed=config.seed)
            batches = PrefetchIterator(lambda: sampler.sample(config.batch_size * config.utd_ratio))
            try:
                loop.train(batches)
            finally:
                batches.close()
    except KeyboardInterrupt:
        logger.info("interrupted at learner step %d", status.learner_step)
    finally:
        loop.save_final_checkpoint()
        server.stop()
        if rlds_log is not None:
            rlds_log.close()
        if checkpointer is not None:
            checkpointer.close()
    return LearnerResult(loop.agent, status.learner_step, loop.env_steps(), loop.nonfinite_updates())


class _CountingStore:
    """Counts received transitions for the throttle and the metrics as they are stored."""

    def __init__(self, store: LearnerDataStore, status: LearnerStatus):
        self._store, self._status = store, status

    def __len__(self) -> int:
        return len(self._store)

    def insert_stacked(self, columns) -> None:
        self._store.insert_stacked(columns)
        self._status.env_steps += len(np.asarray(columns["rewards"]))

    def batch_insert(self, transitions: list) -> None:
        self._store.batch_insert(transitions)
        self._status.env_steps += len(transitions)

    def insert(self, transition) -> None:
        self.batch_insert([transition])


def make_replay_buffer(observation_space, action_space, capacity: int, seed: int):
    """A ReplayBuffer, or for camera observations an ImageReplayBuffer (each frame stored once)."""
    if image_leaves_of(observation_space):
        return ImageReplayBuffer(observation_space, action_space, capacity, seed=seed)
    return ReplayBuffer(observation_space, action_space, capacity, seed=seed)


def make_buffers(config: LearnerConfig, observation_space, action_space):
    """The online replay buffer and the demo buffer (None when demos go into the online buffer or there are none)."""
    capacity = config.replay_buffer_capacity or (
        IMAGE_BUFFER_CAPACITY if image_leaves_of(observation_space) else STATE_BUFFER_CAPACITY)
    buffer = make_replay_buffer(observation_space, action_space, capacity, config.seed)
    logger.info("replay buffer: capacity %d transitions, %.0f MB (%s per transition)", buffer.capacity,
                buffer.nbytes / 1e6, _bytes(buffer.nbytes / buffer.capacity))
    demos = None
    if config.demos_path:
        from serl_launcher.data.rlds import read_rlds_dataset, stack_transitions

        transitions = conform_to_space(stack_transitions(read_rlds_dataset(config.demos_path)), observation_space)
        count = len(transitions["rewards"])
        try:
            if config.demo_ratio > 0:  # a buffer of their own, sampled at a fixed fraction of every batch
                demos = make_replay_buffer(observation_space, action_space, count + config.demo_buffer_capacity,
                                           config.seed + 1)
                demos.insert_stacked(transitions)
            else:
                buffer.insert_stacked(transitions)
        except InvalidTransitions as error:
            raise ValueError(f"demos {config.demos_path} do not fit the env's spaces ({error}): were they recorded "
                             "with other env options? (demos/README.md)") from error
        logger.info("loaded %d demonstration transitions from %s (%s)", count, config.demos_path,
                    f"{config.demo_ratio:.0%} of every batch" if demos is not None else "into the replay buffer")
    elif config.demo_ratio > 0:
        demos = make_replay_buffer(observation_space, action_space, config.demo_buffer_capacity, config.seed + 1)
    return buffer, demos


def _bytes(n: float) -> str:
    return f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n:.0f} bytes"


def conform_to_space(transitions: dict, observation_space: gym.Space) -> dict:
    """Demo transitions with observations keyed as the env's: RLDS splits dict keys at "/", so
    "panda/tcp_pos" comes back from a dataset as {"panda": {"tcp_pos": ...}} and is joined again."""
    return {**transitions, "observations": _conform(transitions["observations"], observation_space, "observations"),
            "next_observations": _conform(transitions["next_observations"], observation_space, "next_observations")}


def _conform(tree, space: gym.Space, where: str):
    if not isinstance(space, gym.spaces.Dict):
        return tree
    if not isinstance(tree, dict):
        raise ValueError(f"demos: {where} is an array, the env observes a dict {sorted(space.spaces)}")
    result = {}
    for key, subspace in space.spaces.items():
        node = tree
        for part in ([key] if key in tree else key.split("/")):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"demos: {where} has no {key!r} (the env's observation keys: {sorted(space.spaces)}; "
                                 f"the dataset's: {sorted(tree)})")
            node = node[part]
        result[key] = _conform(node, subspace, f"{where}/{key}")
    return result


def pretrain(config: LearnerConfig, agent, sampler: MixedSampler, progress_fn: ProgressFn, start_step: int = 0):
    """`config.pretrain_steps` updates on the demonstrations alone, before any actor data (pretraining
    from recorded play); returns the agent. Rows: "learner/..." with "learner/pretraining": 1."""
    if not config.pretrain_steps:
        return agent
    source = sampler.demos if sampler.demos is not None else sampler.online
    if len(source) == 0:
        raise ValueError("pretrain_steps needs demonstrations (demos_path)")
    logger.info("pretraining: %d updates on %d demonstration transitions", config.pretrain_steps, len(source))
    for step in range(1, config.pretrain_steps + 1):
        batch = jax.device_put(source.sample(config.batch_size * config.utd_ratio))
        agent, info = agent.update_high_utd(batch, utd_ratio=config.utd_ratio)
        if step % config.log_period == 0 or step == config.pretrain_steps:
            metrics = {f"learner/{key}": float(value) for key, value in jax.device_get(info).items()}
            progress_fn(0, {**metrics, "learner/step": start_step + step, "learner/pretraining": 1.0})
    return agent


def _wait_for_transitions(status: LearnerStatus, needed: int, stop: threading.Event) -> bool:
    """Show a progress bar until actors sent `needed` transitions; False if stopped first."""
    logger.info("waiting for %d transitions from actors (start one with --actor --ip <this host>)", needed)
    # disable=None: no bar when stderr is a log file, not a terminal (launch.sh's background mode)
    with tqdm.tqdm(total=needed, desc="waiting for actors", unit="transition", dynamic_ncols=True,
                   disable=None) as bar:
        while status.env_steps < needed:
            if stop.wait(0.2):
                return False
            bar.update(min(status.env_steps, needed) - bar.n)
        bar.update(needed - bar.n)
    return True


class _Loop:
    """The training loop's state: the agent, counters, and what it reports and saves."""

    def __init__(self, config, agent, status, server, progress_fn, stop, checkpointer, metadata, env_steps_before):
        self.config, self.agent, self.status, self.server = config, agent, status, server
        self.progress_fn, self.stop, self.checkpointer, self.metadata = progress_fn, stop, checkpointer, metadata
        self._env_steps_before = env_steps_before
        self._nonfinite = jnp.zeros((), jnp.float32)  # summed on the device: no sync per update
        self._reported_nonfinite = 0
        self._published_at = -float("inf")
        self._training_start = (status.critic_steps, status.env_steps)
        self._utd_warnings = ThrottledLog(logger, interval_s=60.0, burst=1)
        self._window = (time.monotonic(), status.learner_step)
        self._saved_step = status.learner_step  # the final checkpoint is written only if training moved on

    def env_steps(self) -> int:
        return self._env_steps_before + self.status.env_steps

    def nonfinite_updates(self) -> int:
        return int(self._nonfinite)

    def train(self, batches) -> None:
        cfg, status = self.config, self.status
        logger.info("training: updates of %d critic steps x %d transitions, then one actor step", cfg.utd_ratio,
                    cfg.batch_size)
        self._window = (time.monotonic(), status.learner_step)
        self._training_start = (status.critic_steps, status.env_steps)
        info, reported = None, status.learner_step
        while status.learner_step < cfg.max_steps and not self.stop.is_set():
            self.agent, info = self.agent.update_high_utd(next(batches), utd_ratio=cfg.utd_ratio)
            self._nonfinite = self._nonfinite + info["nonfinite_update"]
            status.learner_step += 1
            status.critic_steps += cfg.utd_ratio
            self._publish()
            if status.learner_step % cfg.log_period == 0:
                self._report(info)
                reported = status.learner_step
            if self.checkpointer and cfg.checkpoint_period and status.learner_step % cfg.checkpoint_period == 0:
                self._save()
        if info is not None:
            self._publish(force=True)  # actors get the final policy
        if info is not None and reported != status.learner_step:
            self._report(info)  # the last update's row, wherever the loop stopped
        self._report_actor_rows()

    def _publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._published_at >= self.config.publish_period_s:
            self.server.publish_network(self.agent.policy_params())
            self._published_at = now

    def _report(self, info: dict) -> None:
        status, cfg = self.status, self.config
        now = time.monotonic()
        last_time, last_step = self._window
        self._window = (now, status.learner_step)
        metrics = {f"learner/{key}": float(value) for key, value in jax.device_get(info).items()}
        metrics.pop("learner/nonfinite_update")
        nonfinite = self.nonfinite_updates()
        if nonfinite > self._reported_nonfinite:
            logger.error("%d updates so far were skipped because a loss was not finite (bad data or divergence); "
                         "the last good parameters were kept", nonfinite)
        self._reported_nonfinite = nonfinite
        metrics.update({
            "learner/step": status.learner_step,
            "learner/updates_per_s": (status.learner_step - last_step) / max(now - last_time, 1e-9),
            "learner/utd": status.critic_steps / max(1, status.env_steps),
            "learner/target_utd": cfg.target_utd,
            "learner/nonfinite_updates": nonfinite,
            "learner/dropped_stats": status.dropped_stats,
        })
        self._warn_if_utd_drifts()
        self._report_actor_rows()
        self.progress_fn(self.env_steps(), metrics)

    def _warn_if_utd_drifts(self) -> None:
        """Loudly, when actors deliver far more data than target_utd allows (they are not throttled)."""
        critic_start, env_start = self._training_start
        env_steps = self.status.env_steps - env_start
        if self.config.target_utd <= 0 or env_steps < UTD_DRIFT_MIN_ENV_STEPS:
            return
        utd = (self.status.critic_steps - critic_start) / env_steps
        if utd < UTD_DRIFT_WARNING * self.config.target_utd:
            self._utd_warnings.log(logging.WARNING, "real UTD %.2g over the %d env steps since training began is far "
                                   "below --target_utd %g: actors are not being throttled (do they ask this learner? "
                                   "another learner on the same ports?)", utd, env_steps, self.config.target_utd)

    def _report_actor_rows(self) -> None:
        for row in self.status.pop_stats():
            env_steps = int(row.pop("env_steps", self.env_steps()))
            self.progress_fn(env_steps, row)

    def _save(self) -> None:
        step = self.status.learner_step
        self.checkpointer.save(step, self.agent, {**self.metadata, "learner_step": step, "env_steps": self.env_steps()})
        self._saved_step = step
        logger.info("saved checkpoint %d in %s", step, self.checkpointer.directory)

    def save_final_checkpoint(self) -> None:
        if self.checkpointer is not None and self._saved_step != self.status.learner_step:
            self._save()
