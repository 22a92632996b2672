"""Videos of episodes: frames from `env.render()` streamed to an MP4 or GIF file as they come."""
import os
import warnings

import imageio.v2 as imageio
import numpy as np


class VideoRecorder:
    """`add_frame(env)` after every step (evaluate()'s on_frame), then `close()`. Frames are written as
    they arrive, so a long evaluation never holds its whole video in memory."""

    def __init__(self, path: str, fps: int = 25):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        options = {"fps": fps, "macro_block_size": 1} if path.endswith(".mp4") else {"duration": 1000 / fps, "loop": 0}
        self.path, self.frames = path, 0
        self._writer = imageio.get_writer(path, **options)

    def add_frame(self, env) -> None:
        frame = env.render()
        if frame is None:
            raise ValueError("env.render() returned no frame: make the env with render_mode='rgb_array'")
        with warnings.catch_warnings():
            # The first frame starts ffmpeg (fork + exec, which is safe); JAX warns about any fork.
            warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
            self._writer.append_data(np.asarray(frame, np.uint8))
        self.frames += 1

    def close(self) -> None:
        self._writer.close()
