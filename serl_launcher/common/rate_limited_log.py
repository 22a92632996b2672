"""Repeated warnings at most once per period, with a count of what was held back.

Why: a learner that is down makes an actor fail many times per second; one line every few
seconds says the same without burying everything else.
"""
import logging
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, period_s: float = 10.0):
        self._logger, self._period_s = logger, period_s
        self._last = {}  # key -> (time of the last line, messages held back since)

    def log(self, level: int, key: str, message: str, *args) -> None:
        now = time.monotonic()
        last, held = self._last.get(key, (-float("inf"), 0))
        if now - last < self._period_s:
            self._last[key] = (last, held + 1)
            return
        suffix = f" (and {held} more like it in the last {now - last:.0f} s)" if held else ""
        self._logger.log(level, message + suffix, *args)
        self._last[key] = (now, 0)

    def warning(self, key: str, message: str, *args) -> None:
        self.log(logging.WARNING, key, message, *args)
