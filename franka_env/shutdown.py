"""Opt-in Ctrl-C / SIGTERM handling for a process that drives the arm.

Python's default SIGINT handling raises KeyboardInterrupt wherever the main thread is, and
SIGTERM kills the process at once: the arm then stops only when its last velocity command runs
out (ControlConfig.command_timeout) or libfranka notices the lost connection. Inside
`stop_on_signals(env)` either signal stops the arm first (libfranka's stop: it brakes at once),
then raises KeyboardInterrupt (SIGINT) or SystemExit(128 + signal number) (SIGTERM) in the main
thread, so the caller's `finally` / `with` blocks and env.close() still run.

Handlers run between Python bytecodes of the main thread: within ~1 ms during step() and
time.sleep, within 50 ms during a reset move (FrankaArm waits in 50 ms slices). SIGKILL and a
power cut cannot be handled: the arm then relies on its own reflexes (docs/robot.md).
"""
from __future__ import annotations

import signal
from contextlib import contextmanager

import gymnasium as gym


@contextmanager
def stop_on_signals(env: gym.Env, signals=(signal.SIGINT, signal.SIGTERM)):
    """Within the block, `signals` stop `env`'s arm before interrupting the main thread. Must be
    entered from the main thread (Python only installs signal handlers there)."""
    robot_env = env.unwrapped

    def handler(signum, frame):
        robot_env.stop()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield env
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
