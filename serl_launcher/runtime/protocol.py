"""What actors and the learner say to each other beyond transitions and params: names and handlers in one place.

Requests (TrainerConfig.request_types):
    "send-stats"      actor -> learner: episode / evaluation statistics, one flat or nested dict of
                      numbers (SERL sends {"eval": {...}}); each becomes one metrics row.
    "learner-status"  actor -> learner, with {"pending": transitions it holds unsent}: how many more
                      env steps may I take? The learner is the single source of truth for throttling
                      (its target_utd); it answers with a step budget the actor counts down locally,
                      so the actor pauses exactly when the budget runs out, between two questions.
Data stores: actors send transitions to "actor_env" (SERL's name). A transition may carry an
"intervened" flag (a person took over, e.g. with a SpaceMouse): the learner also puts it in the
demo buffer.
"""
import collections
import math
import threading

import numpy as np

STATS = "send-stats"
STATUS = "learner-status"
REQUEST_TYPES = (STATS, STATUS)
TRAINING_STORE = "actor_env"
INTERVENED = "intervened"

# Limits on what one actor can make the learner hold: stats rows are small and few.
MAX_STATS_KEYS = 64
MAX_STATS_KEY_CHARS = 100
MAX_QUEUED_STATS = 1000
THROTTLE_SLACK_STEPS = 100  # env steps an actor may run ahead of the UTD budget (send and poll latency)


class LearnerStatus:
    """What actors ask the learner about: updated by the training loop, read by the transport's serving thread."""

    def __init__(self, target_utd: float, training_starts: int):
        self.target_utd = target_utd
        self.training_starts = training_starts
        self.learner_step = 0
        self.critic_steps = 0  # since this process started: the throttle concerns new data
        self.env_steps = 0  # transitions received from actors since this process started
        self.dropped_stats = 0
        self._stats = collections.deque(maxlen=MAX_QUEUED_STATS)
        self._lock = threading.Lock()

    def step_budget(self, pending: int = 0):
        """Env steps an actor holding `pending` unsent transitions may still take before the learner's
        critic steps fall below `target_utd` per env step (plus a slack); None: unthrottled."""
        if self.target_utd <= 0:
            return None
        allowed = self.training_starts + self.critic_steps / self.target_utd + THROTTLE_SLACK_STEPS
        return max(0, int(allowed) - self.env_steps - pending)

    def should_wait(self) -> bool:
        """True while actors are ahead of `target_utd` critic steps per env step (never when it is 0)."""
        return self.step_budget() == 0

    def handle_request(self, request_type: str, payload):
        """TrainerServer's request_callback."""
        if request_type == STATS:
            row = parse_stats(payload)
            with self._lock:
                if len(self._stats) == self._stats.maxlen:
                    self.dropped_stats += 1
                self._stats.append(row)
            return {"ok": True}
        if request_type == STATUS:
            pending = payload.get("pending", 0) if isinstance(payload, dict) else 0
            if isinstance(pending, bool) or not isinstance(pending, int) or not 0 <= pending < 2**31:
                raise ValueError(f"learner-status: pending must be an int in [0, 2**31), got {pending!r}")
            budget = self.step_budget(pending)
            return {"budget": budget, "wait": budget == 0, "throttled": budget is not None,
                    "learner_step": self.learner_step, "env_steps": self.env_steps}
        raise ValueError(f"unknown request type {request_type!r}")

    def pop_stats(self) -> list:
        """The stats rows received since the last call, oldest first."""
        with self._lock:
            rows = list(self._stats)
            self._stats.clear()
        return rows


def parse_stats(payload) -> dict:
    """A stats payload as one flat {"a/b": float} row; nested dicts are joined with "/".

    Refuses (ValueError, sent back to the actor) anything but str keys and finite numbers, and
    payloads over MAX_STATS_KEYS keys: one actor must not make the learner hold arbitrary data.
    """
    if not isinstance(payload, dict):
        raise ValueError(f"stats must be a dict of numbers, got {type(payload).__name__}")
    row = {}
    _flatten_stats(payload, "", row, depth=0)
    return row


def _flatten_stats(tree: dict, prefix: str, row: dict, depth: int) -> None:
    if depth > 2:
        raise ValueError("stats nest deeper than 3 levels")
    for key, value in tree.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_STATS_KEY_CHARS:
            raise ValueError(f"stats keys must be str of 1-{MAX_STATS_KEY_CHARS} chars, got {str(key)[:40]!r}")
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten_stats(value, f"{name}/", row, depth + 1)
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"stats value {name!r} must be a number, got {type(value).__name__}")
        if not math.isfinite(float(value)):
            raise ValueError(f"stats value {name!r} is not finite")
        row[name] = float(value)
        if len(row) > MAX_STATS_KEYS:
            raise ValueError(f"stats hold more than {MAX_STATS_KEYS} values")
