"""Binary gripper control that never blocks the control loop.

The action's gripper component is continuous; the gripper is open or closed. `GripperHysteresis`
turns one into the other like SERL does: above +threshold close, below -threshold open, in
between keep the current state, so a policy hovering around 0 does not chatter the fingers.

franky's gripper commands block for the whole finger motion (up to ~1 s), its `*_async` variants
still block while a previous command runs, and reading the Franka Hand's state takes up to
~100 ms on a real hand (it reports at ~10 Hz). `GripperController` therefore runs commands on
one worker thread and reads the width on another, and the control loop only sets the wanted state
and reads the latest width.
"""
from __future__ import annotations

import threading
import time


class GripperError(RuntimeError):
    """The gripper failed (a franky gripper exception in a worker thread, or no state arriving)."""


class GripperHysteresis:
    """Continuous command in [-1, 1] -> wanted state (True = closed), with a dead band."""

    def __init__(self, threshold: float = 0.5):
        if not 0 <= threshold < 1:
            raise ValueError(f"gripper threshold must be in [0, 1), got {threshold}")
        self.threshold = threshold
        self.closed = False

    def update(self, command: float) -> bool:
        if command > self.threshold:
            self.closed = True
        elif command < -self.threshold:
            self.closed = False
        return self.closed


class GripperController:
    """Drives a franky-like gripper (`grasp`, `open`, `state` with `.width` / `.max_width`) from
    background threads.

    A close is a grasp towards width 0 whose tolerance covers the whole stroke, so it counts as
    done whether the fingers closed on an object or on nothing. Only the latest wanted state
    matters: a close and an open requested while a grasp runs leave the gripper open afterwards.
    """

    def __init__(self, gripper, speed: float = 0.1, force: float = 20.0, read_period: float = 0.02):
        self._gripper = gripper
        self._speed, self._force, self._read_period = speed, force, read_period
        self._wanted_closed: bool | None = None  # nothing moves until the first set_closed()
        self._applied_closed: bool | None = None
        self._width: float | None = None
        self._max_width: float | None = None
        self._width_time = -float("inf")  # time.monotonic() of the reading's request
        self._applied_time = float("inf")  # ... of the end of the last command
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run_commands, name="gripper-commands", daemon=True),
                         threading.Thread(target=self._run_reads, name="gripper-state", daemon=True)]
        for thread in self._threads:
            thread.start()

    def set_closed(self, closed: bool) -> None:
        """Asks for the gripper to be closed (True) or open; returns at once."""
        with self._changed:
            self._wanted_closed = bool(closed)
            self._changed.notify_all()

    def wait_until_applied(self, timeout: float) -> None:
        """Blocks until the wanted state has been reached (the command returned) and a width read
        after that has arrived, so the next observation shows it; for resets."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._applied_closed != self._wanted_closed or self._width_time < self._applied_time:
                self._raise_error()
                if not self._changed.wait(timeout=max(0.0, deadline - time.monotonic())):
                    self._raise_error()
                    raise GripperError(f"the gripper did not reach its {'closed' if self._wanted_closed else 'open'} "
                                       f"state within {timeout} s")

    def closure(self) -> float:
        """Latest measured closure: 0 fully open, 1 fully closed (1 - width / max_width)."""
        with self._changed:
            self._raise_error()
            if self._width is None:
                raise GripperError("no gripper state received yet")
            if self._max_width <= 0:
                raise GripperError("the gripper reports a maximum width of 0: home it once "
                                   "(franky.Gripper(ip).homing()) after switching it on")
            return min(max(1.0 - self._width / self._max_width, 0.0), 1.0)

    def close(self) -> None:
        """Stops both threads (a running finger motion finishes on the hand) and lets go of the
        gripper: franky closes its connection when the last reference goes, and a hand serves one
        connection at a time."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._gripper = None

    def _raise_error(self) -> None:
        if self._error is not None:
            raise GripperError(f"gripper failed: {type(self._error).__name__}: {self._error}") from self._error

    def _run_commands(self) -> None:
        while True:
            with self._changed:
                while self._applied_closed == self._wanted_closed and not self._stopping.is_set():
                    self._changed.wait()
                if self._stopping.is_set():
                    return
                closed = self._wanted_closed
            try:
                if closed:
                    self._gripper.grasp(0.0, self._speed, self._force, epsilon_inner=1.0, epsilon_outer=1.0)
                else:
                    self._gripper.open(self._speed)
            except Exception as error:  # noqa: BLE001  (reported to the control loop, never lost)
                with self._changed:
                    self._error = error
                    self._changed.notify_all()
                return
            with self._changed:
                self._applied_closed = closed
                self._applied_time = time.monotonic()
                self._changed.notify_all()

    def _run_reads(self) -> None:
        while not self._stopping.is_set():
            requested = time.monotonic()
            try:
                state = self._gripper.state
            except Exception as error:  # noqa: BLE001
                with self._changed:
                    self._error = error
                    self._changed.notify_all()
                return
            with self._changed:
                self._width, self._max_width = float(state.width), float(state.max_width)
                self._width_time = requested
                self._changed.notify_all()
            self._stopping.wait(self._read_period)
