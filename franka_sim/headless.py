"""Import before mujoco: picks EGL for off-screen rendering on a Linux machine without a display.

MuJoCo otherwise tries GLFW, which needs a display, and eval videos or the vision env fail. An
explicit MUJOCO_GL (egl, osmesa, glfw) is always respected.
"""
import os
import sys

if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("MUJOCO_GL", "egl")
