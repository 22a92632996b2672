"""Camera images and the interactive viewer, both created on first use.

Nothing here touches OpenGL until an image or a window is actually requested, so the state
environment can be built and stepped on machines without any GL library. Shadows, reflections
and multisampling cost ~8x on a CPU renderer (llvmpipe): they are off unless asked for.
"""
from __future__ import annotations

import atexit
import os
import sys
import weakref

import mujoco
import numpy as np

_OPEN_RENDERERS = weakref.WeakSet()


@atexit.register
def _close_open_renderers() -> None:
    """Free GL contexts before interpreter teardown (afterwards EGL's own cleanup fails noisily)."""
    for cameras in list(_OPEN_RENDERERS):
        cameras.close()


class OffscreenCameras:
    """Renders square RGB uint8 images from named cameras of one model."""

    def __init__(self, model: mujoco.MjModel, size: int, shadows: bool = False, multisamples: int = 0):
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"image size must be a positive integer, got {size!r}")
        if not isinstance(multisamples, (int, np.integer)) or multisamples < 0:
            raise ValueError(f"multisamples must be a non-negative integer, got {multisamples!r}")
        self._model = model
        self._size = int(size)
        self._shadows = bool(shadows)
        self._multisamples = int(multisamples)
        self._renderer: mujoco.Renderer | None = None

    def _make_renderer(self) -> mujoco.Renderer:
        vis = self._model.vis
        vis.global_.offwidth = max(vis.global_.offwidth, self._size)
        vis.global_.offheight = max(vis.global_.offheight, self._size)
        vis.quality.offsamples = self._multisamples
        renderer = mujoco.Renderer(self._model, self._size, self._size)
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self._shadows
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        return renderer

    def render(self, data: mujoco.MjData, camera: str) -> np.ndarray:
        """Returns a fresh (size, size, 3) uint8 image of `camera`."""
        if self._renderer is None:
            self._renderer = self._make_renderer()
            _OPEN_RENDERERS.add(self)
        self._renderer.update_scene(data, camera=camera)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class HumanViewer:
    """MuJoCo's passive viewer window, synchronised with the simulation on `sync()`."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData):
        self._model, self._data = model, data
        self._viewer = None

    def sync(self) -> None:
        if self._viewer is None:
            # Without a display MuJoCo's GLFW start-up aborts the whole process: check first.
            if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
                raise RuntimeError(
                    'render_mode="human" needs a display (DISPLAY or WAYLAND_DISPLAY is unset); '
                    'use render_mode="rgb_array" with MUJOCO_GL=egl on headless machines'
                )
            import mujoco.viewer

            self._viewer = mujoco.viewer.launch_passive(self._model, self._data)
        self._viewer.sync()

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
