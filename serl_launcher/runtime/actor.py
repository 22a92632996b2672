"""The actor loop: observe -> newest policy -> env.step -> queue the transition; network I/O off the loop.

    result = run_actor(ActorConfig(...), agent, env, trainer_config, learner_host="10.0.0.2",
                       eval_env=eval_env, progress_fn=sink)

Real-time safe: the control loop never waits on the network. A background thread (`ActorLink`)
sends queued transitions every `send_period_s`, delivers stats, and asks the learner whether to
pause (the UTD throttle); the transport's subscriber thread swaps in new policy parameters. The
policy is compiled before the first step. Evaluation runs at episode boundaries (on `eval_env`, or
on `env` itself for a robot, which has only one), while the sender keeps delivering.

When the env reports `info["intervene_action"]` (a person took over, e.g. with a SpaceMouse), that
action is stored instead of the policy's and the transition is flagged `intervened`.
"""
import dataclasses
import logging
import os
import queue
import threading
import time
from typing import Optional

import gymnasium as gym
import jax
import numpy as np

from serl_launcher.common.evaluation import evaluate
from serl_launcher.common.throttled_log import ThrottledLog
from serl_launcher.runtime.config import ActorConfig
from serl_launcher.runtime.metrics import ProgressFn
from serl_launcher.runtime.protocol import INTERVENED, STATS, STATUS, TRAINING_STORE
from serl_launcher.utils.video import VideoRecorder
from serl_launcher.transport import (ConfigMismatchError, QueuedDataStore, RemoteError, TrainerClient,
                                     TrainerConfig, TransportError)

logger = logging.getLogger(__name__)
STATUS_PERIOD_THROTTLED_S = 0.05  # how often to ask "may I act?" while the learner throttles
STATUS_PERIOD_FREE_S = 2.0  # ... and while it does not (to notice a learner restarted with a throttle)
ACTOR_ROW_PERIOD_S = 10.0
MAX_QUEUED_STATS = 1000


@dataclasses.dataclass
class ActorResult:
    env_steps: int
    episodes: int
    transport: dict  # TrainerClient.stats() at the end: sent, dropped, pending, ...
    policy_updates: int


class PolicyHolder:
    """The actor's newest policy, swapped in by the transport's subscriber thread."""

    def __init__(self, agent):
        self.agent = agent
        self.updates = 0

    def set_policy_params(self, params) -> None:
        self.agent = self.agent.with_policy_params(jax.device_put(params))
        self.updates += 1


class ActorLink:
    """All of an actor's network I/O, on one background thread: send transitions, deliver stats,
    ask whether to pause. The control loop only queues and reads `allowed`."""

    def __init__(self, client: TrainerClient, send_period_s: float):
        self._client, self._send_period_s = client, send_period_s
        self.allowed = threading.Event()
        self.allowed.set()
        self.fatal: Optional[Exception] = None
        self._budget = None  # env steps the learner last allowed (None: unthrottled)
        self._budget_lock = threading.Lock()
        self._stats = queue.Queue(maxsize=MAX_QUEUED_STATS)
        self._closing = threading.Event()
        self._warnings = {kind: ThrottledLog(logger, interval_s=10.0, burst=1)
                          for kind in ("stats", "refused", "unreachable")}
        self._throttled_at_start = self._poll_status()  # before the first step: no unthrottled burst
        self._thread = threading.Thread(target=self._run, name="actor-link", daemon=True)
        self._thread.start()

    def queue_stats(self, row: dict) -> None:
        try:
            self._stats.put_nowait(row)
        except queue.Full:
            self._warnings["stats"].log(logging.WARNING, "stats queue full (learner unreachable?): a stats row was dropped")

    def close(self, flush_timeout_s: float = 3.0) -> None:
        """Stop the thread, then try to deliver what is still queued for at most `flush_timeout_s`."""
        self._closing.set()
        self._thread.join()
        deadline = time.monotonic() + flush_timeout_s
        while time.monotonic() < deadline and not self._flush():
            time.sleep(0.1)

    def _run(self) -> None:
        next_status = time.monotonic() + (STATUS_PERIOD_THROTTLED_S if self._throttled_at_start
                                          else STATUS_PERIOD_FREE_S)
        while not self._closing.is_set():
            try:
                self._flush()
                if time.monotonic() >= next_status:
                    throttled = self._poll_status()
                    next_status = time.monotonic() + (STATUS_PERIOD_THROTTLED_S if throttled else STATUS_PERIOD_FREE_S)
            except ConfigMismatchError as error:  # nothing will ever get through: stop the actor
                self.fatal = error
                self.allowed.set()
                return
            except Exception:
                logger.exception("actor link error; retrying")
            self._closing.wait(min(self._send_period_s, max(0.0, next_status - time.monotonic())))

    def _flush(self) -> bool:
        """Send queued transitions and stats; True when everything got through."""
        try:
            delivered = self._client.update()
        except RemoteError as error:
            self._warnings["refused"].log(logging.WARNING, "the learner refused transitions: %s", error)
            delivered = False
        while not self._stats.empty():
            row = self._stats.queue[0]
            if not self._request(STATS, row):
                return False
            self._stats.get_nowait()
        return bool(delivered)

    def unsent(self) -> int:
        """Transitions queued here that the learner has not acknowledged yet."""
        return int(self._client.stats()["pending"])

    def take_step(self) -> None:
        """The control loop took one env step: count it against the learner's budget (no network)."""
        with self._budget_lock:
            if self._budget is not None:
                self._budget -= 1
                if self._budget <= 0:
                    self.allowed.clear()

    def _poll_status(self) -> bool:
        """Ask the learner how many more steps to take; True while it throttles.

        Unreachable: the last budget stands, so an actor a learner throttles pauses when it runs out
        (a simulated actor would otherwise run away); one that does not throttle (a robot's) acts
        on, its data queueing.
        """
        reply = self._request(STATUS, {"pending": self.unsent()})
        with self._budget_lock:
            if isinstance(reply, dict) and "budget" in reply:
                self._budget = reply["budget"]
            if self._budget is None or self._budget > 0:
                self.allowed.set()
            else:
                self.allowed.clear()
            return self._budget is not None

    def _request(self, request_type: str, payload):
        """The reply, or None if the learner could not be reached (or refused the request: logged)."""
        try:
            reply = self._client.request(request_type, payload)
        except RemoteError as error:
            logger.warning("the learner refused a %s request: %s", request_type, error)
            return {}
        except ConfigMismatchError:
            raise
        except TransportError as error:
            self._warnings["unreachable"].log(logging.WARNING, "learner unreachable (%s); %s", error,
                                              self._unreachable_policy())
            return None
        if reply is None:
            self._warnings["unreachable"].log(logging.WARNING, "learner unreachable; %s", self._unreachable_policy())
        return reply

    def _unreachable_policy(self) -> str:
        if self._budget is not None:
            return "pausing until it is back (it throttles actors: --target_utd); Ctrl-C stops"
        return "acting on, transitions queue"


def connect(name: str, learner_host: str, trainer_config: TrainerConfig, data_store,
            stop: threading.Event) -> Optional[TrainerClient]:
    """A TrainerClient, waiting (and saying so every few seconds) until the learner answers; None if stopped."""
    warnings = ThrottledLog(logger, interval_s=10.0, burst=1)
    logger.info("connecting to the learner at %s:%d", learner_host, trainer_config.port_number)
    while not stop.is_set():
        try:
            return TrainerClient(name, learner_host, trainer_config, data_store, wait_for_server=False)
        except TransportError as error:
            warnings.log(logging.WARNING, "waiting for the learner: %s", error)
            stop.wait(0.5)
    return None


def run_actor(config: ActorConfig, agent, env: gym.Env, trainer_config: TrainerConfig, learner_host: str,
              eval_env: Optional[gym.Env] = None, progress_fn: Optional[ProgressFn] = None,
              stop: Optional[threading.Event] = None) -> ActorResult:
    """Act in `env` with the learner's newest policy for `config.max_steps` steps or until `stop` is set."""
    progress_fn = progress_fn or (lambda env_steps, metrics: None)
    stop = stop or threading.Event()
    data_store = QueuedDataStore(config.queue_size)
    client = connect(TRAINING_STORE, learner_host, trainer_config, data_store, stop)
    if client is None:
        return ActorResult(0, 0, {}, 0)
    holder = PolicyHolder(agent)
    client.recv_network_callback(holder.set_policy_params)
    link = ActorLink(client, config.send_period_s)
    loop = ActorLoop(config, holder, env, eval_env or env, data_store, link, progress_fn, stop)
    try:
        loop.run()
    except KeyboardInterrupt:
        logger.info("actor interrupted at env step %d", loop.step)
    finally:
        link.close()
        stats = client.stats()
        client.stop()
    if link.fatal is not None:
        raise link.fatal
    logger.info("actor finished: %d env steps, %d episodes; transport %s", loop.step, loop.episodes, stats)
    return ActorResult(loop.step, loop.episodes, stats, holder.updates)


class ActorLoop:
    """The control loop, with its data store and its link to the learner given: run_actor passes the
    transport's, run_sync (runtime.sync) an inline learner."""

    def __init__(self, config, holder, env, eval_env, data_store, link, progress_fn, stop):
        self.config, self.holder, self.env, self.eval_env = config, holder, env, eval_env
        self.data_store, self.link, self.progress_fn, self.stop = data_store, link, progress_fn, stop
        self.step = 0
        self.episodes = 0
        self._key = jax.random.PRNGKey(config.seed)
        self._next_eval = config.eval_period
        self._evaluations = 0
        self._control = _ControlStats()
        self._window = (time.monotonic(), 0)

    def run(self) -> None:
        cfg = self.config
        observation, _ = self.env.reset(seed=cfg.seed)
        self._compile_policy(observation)
        episode = _Episode()
        while self.step < cfg.max_steps and not self.stop.is_set():
            self._wait_while_throttled()
            action = self._act(observation)
            next_observation, reward, terminated, truncated, info = self.env.step(action)
            intervened = "intervene_action" in info
            executed = np.asarray(info["intervene_action"], np.float32) if intervened else action
            self.data_store.insert({"observations": observation, "actions": executed,
                                    "next_observations": next_observation, "rewards": float(reward),
                                    "masks": 1.0 - float(terminated), "dones": bool(terminated or truncated),
                                    INTERVENED: intervened})
            self.step += 1
            self.link.take_step()
            episode.add(float(reward), info, intervened)
            self._control.add(info.get("control"))
            observation = next_observation
            if terminated or truncated:
                self._report(episode.row())
                self.episodes += 1
                if cfg.eval_period and self.step >= self._next_eval:
                    self._evaluate()
                observation, _ = self.env.reset()
                episode = _Episode()
            self._report_actor_row()

    def _compile_policy(self, observation) -> None:
        """Trace and compile both policy paths now, not during the first real-time steps."""
        key = jax.random.PRNGKey(0)
        jax.block_until_ready(self.holder.agent.sample_actions(observation, seed=key))
        jax.block_until_ready(self.holder.agent.sample_actions(observation, argmax=True))

    def _act(self, observation) -> np.ndarray:
        if self.step < self.config.random_steps or self.holder.updates == 0:
            return self.env.action_space.sample()
        self._key, key = jax.random.split(self._key)
        return np.asarray(self.holder.agent.sample_actions(observation, seed=key))

    def _wait_while_throttled(self) -> None:
        while not self.link.allowed.wait(0.1):
            if self.stop.is_set():
                return
        if self.link.fatal is not None:
            raise self.link.fatal

    def _evaluate(self) -> None:
        agent, cfg = self.holder.agent, self.config
        self._evaluations += 1
        recorder = None
        if cfg.video_period and self._evaluations % cfg.video_period == 0:
            recorder = VideoRecorder(os.path.join(cfg.video_dir or "videos", f"eval_{self.step:09d}.mp4"),
                                     fps=self.eval_env.metadata.get("render_fps", 25))
        results = evaluate(lambda obs: np.asarray(agent.sample_actions(obs, argmax=True)), self.eval_env,
                           cfg.eval_episodes, on_frame=recorder.add_frame if recorder else None)
        if recorder is not None:
            recorder.close()
            logger.info("evaluation video: %s", os.path.abspath(recorder.path))
        self._next_eval = self.step + cfg.eval_period
        row = {f"eval/{key}": value for key, value in results.items() if key != "episodes"}
        self._report({**row, "eval/episodes": results["episodes"]})

    def _report(self, row: dict) -> None:
        self.progress_fn(self.step, row)
        self.link.queue_stats({**row, "env_steps": self.step})

    def _report_actor_row(self) -> None:
        last_time, last_step = self._window
        now = time.monotonic()
        if now - last_time < ACTOR_ROW_PERIOD_S:
            return
        self._window = (now, self.step)
        self.progress_fn(self.step, {"actor/steps_per_s": (self.step - last_step) / (now - last_time),
                                     "actor/policy_updates": self.holder.updates,
                                     "actor/throttled": float(not self.link.allowed.is_set()),
                                     "actor/unsent": self.link.unsent(), **self._control.pop()})


class _Episode:
    """Return, length, duration, success and interventions of the running episode."""

    def __init__(self):
        self.total, self.length, self.success, self.reports_success, self.interventions = 0.0, 0, False, False, 0
        self.start = time.monotonic()

    def add(self, reward: float, info: dict, intervened: bool) -> None:
        self.total += reward
        self.length += 1
        self.reports_success = self.reports_success or "success" in info
        self.success = self.success or bool(info.get("success", False))
        self.interventions += intervened

    def row(self) -> dict:
        row = {"episode/return": self.total, "episode/length": self.length, "episode/interventions": self.interventions,
               "episode/duration_s": time.monotonic() - self.start}
        if self.reports_success:
            row["episode/success"] = float(self.success)
        return row


class _ControlStats:
    """A real-time env's control periods (info["control"], e.g. FrankaEnv's) over one report window."""

    def __init__(self):
        self._periods, self._missed = [], None

    def add(self, control) -> None:
        if isinstance(control, dict) and control.get("period_ms") is not None:
            self._periods.append(control["period_ms"])
            self._missed = control.get("missed_deadlines", self._missed)

    def pop(self) -> dict:
        """{"actor/period_p50_ms", "actor/period_p99_ms", "actor/missed_deadlines"} ({} for other envs)."""
        if not self._periods:
            return {}
        p50, p99 = np.percentile(self._periods, [50, 99])
        row = {"actor/period_p50_ms": float(p50), "actor/period_p99_ms": float(p99)}
        if self._missed is not None:
            row["actor/missed_deadlines"] = float(self._missed)
        self._periods = []
        return row
