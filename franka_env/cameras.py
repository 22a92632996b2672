"""Cameras for FrankaEnv: time-stamped frames, resized and cropped to the observation size, and
never silently reused when old.

A `Camera` returns its newest `Frame` (an RGB uint8 image and the `time.monotonic()` at which it
was captured). `CameraRig` reads all of an env's cameras each step, refuses a frame older than
`max_age` (StaleFrameError: a frozen camera must not feed the policy an old picture while the arm
moves), crops it and resizes it to one size.

Implementations: `RealSenseCamera` (Intel RealSense through pyrealsense2, imported on first use;
it cannot be tested on machines without the camera, so only its capture thread is tested, through
`BackgroundCapture` with a stand-in grab function) and `MujocoCamera` (renders a MuJoCo scene:
the stand-in for tests and simulations).
"""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import mujoco
import numpy as np
from gymnasium import spaces
from PIL import Image


class CameraError(RuntimeError):
    """A camera delivered no usable frame."""


class StaleFrameError(CameraError):
    """The newest frame of a camera is older than the rig's max_age."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # (height, width, 3) uint8 RGB
    timestamp: float  # time.monotonic() at capture


class Camera(ABC):
    name: str

    @abstractmethod
    def read(self) -> Frame:
        """The newest frame; returns at once (no waiting for the next exposure)."""

    def close(self) -> None:
        """Releases the device."""


class BackgroundCapture:
    """Calls a blocking `grab()` in a loop on its own thread and keeps the newest frame, so that a
    30 fps camera never blocks a 50 Hz control loop. An exception in `grab` stops the thread and is
    raised by the next `latest()`."""

    def __init__(self, grab: Callable[[], np.ndarray], name: str, clock: Callable[[], float] = time.monotonic):
        self._grab, self._clock = grab, clock
        self._frame: Frame | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{name}", daemon=True)
        self._thread.start()

    def latest(self) -> Frame:
        with self._lock:
            if self._error is not None:
                raise CameraError(f"capture failed: {type(self._error).__name__}: {self._error}") from self._error
            if self._frame is None:
                raise CameraError("no frame captured yet")
            return self._frame

    def close(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                image = self._grab()
            except Exception as error:  # noqa: BLE001  (handed to the reader, never lost)
                with self._lock:
                    self._error = error
                return
            frame = Frame(image, self._clock())
            with self._lock:
                self._frame = frame


class RealSenseCamera(Camera):
    """The colour stream of an Intel RealSense (pyrealsense2), captured on a background thread.
    Untested here (no camera on the development and CI machines): see docs/robot.md."""

    def __init__(self, name: str, serial: str | None = None, width: int = 640, height: int = 480, fps: int = 30):
        try:
            import pyrealsense2 as rs
        except ImportError as error:
            raise ImportError(f"RealSenseCamera needs pyrealsense2 ({error}): pip install pyrealsense2") from error
        self.name = name
        config = rs.config()
        if serial is not None:
            config.enable_device(serial)
        config.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
        self._pipeline = rs.pipeline()
        self._pipeline.start(config)
        self._capture = BackgroundCapture(self._grab, name)

    def _grab(self) -> np.ndarray:
        return np.asanyarray(self._pipeline.wait_for_frames().get_color_frame().get_data()).copy()

    def read(self) -> Frame:
        return self._capture.latest()

    def close(self) -> None:
        self._capture.close()
        self._pipeline.stop()


class MujocoCamera(Camera):
    """Renders camera `camera` of a MuJoCo scene at every read (offscreen: set MUJOCO_GL=egl on
    headless machines). The caller owns `model` / `data` and moves the scene as it likes."""

    def __init__(self, name: str, model: mujoco.MjModel, data: mujoco.MjData, camera: str,
                 height: int = 128, width: int = 128, clock: Callable[[], float] = time.monotonic):
        self.name, self._data, self._camera, self._clock = name, data, camera, clock
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        self._renderer = mujoco.Renderer(model, height, width)

    def read(self) -> Frame:
        self._renderer.update_scene(self._data, camera=self._camera)
        return Frame(self._renderer.render().copy(), self._clock())

    def close(self) -> None:
        self._renderer.close()


Crop = tuple[int, int, int, int]  # top, left, height, width in pixels of the camera's frame


def fit_image(image: np.ndarray, size: tuple[int, int], crop: Crop | None = None) -> np.ndarray:
    """Crops `image` to `crop` (if given), then resizes it to `size` (height, width) with an
    antialiasing bilinear filter. Returns (height, width, 3) uint8."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise CameraError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    if crop is not None:
        top, left, height, width = crop
        fits = top >= 0 and left >= 0 and top + height <= image.shape[0] and left + width <= image.shape[1]
        if not fits or height < 1 or width < 1:
            raise CameraError(f"crop {crop} (top, left, height, width) does not fit a {image.shape[:2]} frame")
        image = image[top:top + height, left:left + width]
    if image.shape[:2] == tuple(size):
        return np.ascontiguousarray(image)
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR))


class CameraRig:
    """An env's cameras: `read()` returns {name: (height, width, 3) uint8} of fresh frames."""

    def __init__(self, cameras: Sequence[Camera], size: tuple[int, int] = (128, 128),
                 crops: Mapping[str, Crop] | None = None, max_age: float = 0.1,
                 clock: Callable[[], float] = time.monotonic):
        names = [camera.name for camera in cameras]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a CameraRig needs at least one camera and unique names, got {names}")
        crops = dict(crops or {})
        if set(crops) - set(names):
            raise ValueError(f"crops given for unknown cameras {sorted(set(crops) - set(names))}; cameras: {names}")
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be (height, width) >= 1, got {size}")
        if not max_age > 0:
            raise ValueError(f"max_age must be positive, got {max_age}")
        self.cameras, self.size, self.crops = list(cameras), tuple(size), crops
        self.max_age, self._clock = max_age, clock

    @property
    def observation_space(self) -> spaces.Dict:
        image = spaces.Box(0, 255, shape=(*self.size, 3), dtype=np.uint8)
        return spaces.Dict({camera.name: image for camera in self.cameras})

    def read(self) -> dict[str, np.ndarray]:
        images = {}
        for camera in self.cameras:
            frame = camera.read()
            age = self._clock() - frame.timestamp
            if age > self.max_age:
                raise StaleFrameError(f"camera {camera.name!r}: newest frame is {age * 1e3:.0f} ms old "
                                      f"(max_age {self.max_age * 1e3:.0f} ms): is it still streaming?")
            images[camera.name] = fit_image(frame.image, self.size, self.crops.get(camera.name))
        return images

    def close(self) -> None:
        for camera in self.cameras:
            camera.close()
