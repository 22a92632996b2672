"""A loop pacer for the 50 Hz control loop that measures how well it kept time.

A real arm is commanded at a fixed rate, so the time between two steps must not depend on how
long the policy took. `RateKeeper.wait()` sleeps to the next deadline; a call that arrives after
its deadline does not sleep, counts as a missed deadline and restarts the schedule from now (no
burst of short periods to catch up, which would command the arm faster than intended).
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import numpy as np


class RateKeeper:
    """Paces calls of `wait()` to one per `period` seconds and records the periods it achieved.

    `clock` and `sleep` are injectable so tests can drive it with a fake clock.
    """

    def __init__(self, period: float, window: int = 10_000, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep):
        if not period > 0:
            raise ValueError(f"period must be positive, got {period}")
        self.period = float(period)
        self._clock, self._sleep = clock, sleep
        self._periods: deque[float] = deque(maxlen=window)
        self._slacks: deque[float] = deque(maxlen=window)  # time left before each deadline (< 0: missed)
        self.missed_deadlines = 0
        self.ticks = 0
        self._deadline: float | None = None
        self.last_slack = 0.0  # seconds the last wait() had left before its deadline (< 0: missed by that much)
        self._last_tick = 0.0

    def start(self) -> None:
        """(Re)starts the schedule: the first deadline is one period from now. Counters are kept."""
        self._last_tick = self._clock()
        self._deadline = self._last_tick + self.period

    def wait(self) -> float:
        """Sleeps until the current deadline and returns the period that just ended, in seconds."""
        if self._deadline is None:
            raise RuntimeError("RateKeeper.start() must be called before wait()")
        now = self._clock()
        self.last_slack = self._deadline - now
        self._slacks.append(self.last_slack)
        if now > self._deadline:
            self.missed_deadlines += 1
            self._deadline = now
        else:
            self._sleep(self._deadline - now)
        tick = self._clock()
        period = tick - self._last_tick
        self._last_tick = tick
        self._deadline += self.period
        self._periods.append(period)
        self.ticks += 1
        return period

    def stats(self) -> dict:
        """Over the last `window` ticks: periods (ms), their jitter, and the slack (ms left before
        each deadline when wait() was called: the loop's headroom; p1 is the tightest typical one).
        Ticks and missed deadlines count since construction."""
        periods, slacks = np.asarray(self._periods) * 1e3, np.asarray(self._slacks) * 1e3
        summary = {"ticks": self.ticks, "missed_deadlines": self.missed_deadlines,
                   "target_period_ms": self.period * 1e3}
        if periods.size:
            jitter = np.abs(periods - self.period * 1e3)
            summary.update(period_ms_mean=float(periods.mean()), period_ms_p50=float(np.percentile(periods, 50)),
                           period_ms_p99=float(np.percentile(periods, 99)), period_ms_max=float(periods.max()),
                           jitter_ms_p99=float(np.percentile(jitter, 99)),
                           slack_ms_p50=float(np.percentile(slacks, 50)), slack_ms_p1=float(np.percentile(slacks, 1)))
        return summary
