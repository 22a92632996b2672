"""Overlap batch sampling and host-to-device copies with training: the one prefetch path of the learner."""
import queue
import threading
from typing import Callable

import jax


class PrefetchIterator:
    """Calls `sample_fn` on a background thread and keeps `queue_size` device-resident batches ready.

    An exception in `sample_fn` is re-raised by `next()`; `sample_fn` raising StopIteration (or
    `close()`) ends the iteration.
    """

    def __init__(self, sample_fn: Callable, queue_size: int = 2, device=None):
        self._sample_fn = sample_fn
        self._device = device
        self._queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replay-prefetch", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = jax.device_put(self._sample_fn(), self._device)
            except StopIteration:
                item = StopIteration()
            except Exception as error:  # handed to the consumer, which re-raises it
                item = error
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, Exception):
                return

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self.closed:
                raise StopIteration
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if not self._thread.is_alive():
                    raise StopIteration from None
                continue
            if isinstance(item, StopIteration):
                raise StopIteration
            if isinstance(item, Exception):
                raise item
            return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
