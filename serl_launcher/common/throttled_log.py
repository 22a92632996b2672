"""Rate-limited logging, so a flood of bad requests (or of refused rows) cannot flood the log.

Why: every rejected request is worth a log line, but a peer can send thousands
per second; the first few lines of each interval are kept and the rest counted.
"""

import threading
import time


class ThrottledLog:
    """Emits at most `burst` records per `interval_s`; says how many it suppressed when the next interval starts."""

    def __init__(self, logger, interval_s: float = 10.0, burst: int = 5):
        self._logger = logger
        self._interval_s = interval_s
        self._burst = burst
        self._lock = threading.Lock()
        self._window_start = float("-inf")
        self._emitted = 0
        self._suppressed = 0

    def log(self, level: int, msg: str, *args, **kwargs) -> None:
        """logger.log(level, msg, *args, **kwargs) unless over this interval's budget."""
        now = time.monotonic()
        with self._lock:
            suppressed = 0
            if now - self._window_start >= self._interval_s:
                suppressed, self._suppressed = self._suppressed, 0
                self._window_start, self._emitted = now, 0
            emit = self._emitted < self._burst
            if emit:
                self._emitted += 1
            else:
                self._suppressed += 1
        if suppressed:
            self._logger.log(
                level, "(%d similar messages suppressed in the previous %g s)", suppressed, self._interval_s
            )
        if emit:
            self._logger.log(level, msg, *args, **kwargs)
