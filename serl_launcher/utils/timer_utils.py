"""SERL's `Timer`: average wall time per named section, for the timing rows SERL scripts log."""
import time
from collections import defaultdict
from contextlib import contextmanager


class Timer:
    """`with timer.context("env_step"): ...` (or tick/tock); `get_average_times()` -> {name: mean seconds}."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.counts, self.times, self.start_times = defaultdict(int), defaultdict(float), {}

    def tick(self, key: str) -> None:
        if key in self.start_times:
            raise ValueError(f"timer {key!r} is already running")
        self.start_times[key] = time.perf_counter()

    def tock(self, key: str) -> None:
        if key not in self.start_times:
            raise ValueError(f"timer {key!r} was not started")
        self.times[key] += time.perf_counter() - self.start_times.pop(key)
        self.counts[key] += 1

    @contextmanager
    def context(self, key: str):
        self.tick(key)
        try:
            yield
        finally:
            self.tock(key)

    def get_average_times(self, reset: bool = True) -> dict:
        averages = {key: self.times[key] / self.counts[key] for key in self.counts}
        if reset:
            self.reset()
        return averages
