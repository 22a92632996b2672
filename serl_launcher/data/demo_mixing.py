"""RLPD-style batches: a fixed fraction of every minibatch from a demonstration buffer, the rest online data."""
from typing import Optional

import jax
import numpy as np

from serl_launcher.data.replay_buffer import ReplayBuffer


class MixedSampler:
    """`sample(n)`: n rows as `minibatches` consecutive minibatches (the critic steps of a high-UTD
    update), each with round(size * demo_ratio) rows from `demos` and the rest from `online`,
    shuffled within the minibatch. Without demos (or demo_ratio 0) it samples `online` alone.
    """

    def __init__(self, online: ReplayBuffer, demos: Optional[ReplayBuffer] = None, demo_ratio: float = 0.0,
                 minibatches: int = 1, seed: Optional[int] = None):
        if not 0 <= demo_ratio < 1:
            raise ValueError(f"demo_ratio must be in [0, 1), got {demo_ratio}")
        if demo_ratio > 0 and demos is None:
            raise ValueError("demo_ratio > 0 needs a demo buffer")
        self.online, self.demos, self.demo_ratio, self.minibatches = online, demos, demo_ratio, minibatches
        self._rng = np.random.default_rng(seed)

    def sample(self, batch_size: int):
        if batch_size % self.minibatches:
            raise ValueError(f"batch size {batch_size} is not divisible into {self.minibatches} minibatches")
        size = batch_size // self.minibatches
        n_demo = int(round(size * self.demo_ratio)) if self.demos is not None else 0
        if n_demo == 0 or len(self.demos) == 0:
            return self.online.sample(batch_size)
        demos = self.demos.sample(n_demo * self.minibatches)
        online = self.online.sample((size - n_demo) * self.minibatches)
        # Row r of minibatch m: from demos if its shuffled slot is < n_demo, else online.
        slots = np.argsort(self._rng.random((self.minibatches, size)), axis=1)
        from_demo = slots < n_demo
        demo_index = np.cumsum(from_demo.ravel()) - 1
        online_index = np.cumsum(~from_demo.ravel()) - 1
        take_demo = from_demo.ravel()

        def mix(d, o):
            out = np.empty((batch_size,) + d.shape[1:], d.dtype)
            out[take_demo] = d[demo_index[take_demo]]
            out[~take_demo] = o[online_index[~take_demo]]
            return out

        return jax.tree.map(mix, demos, online)
