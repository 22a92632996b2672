"""Shared fixtures. JAX compiles are the slow part of this suite, so small agents are built once per session."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")
