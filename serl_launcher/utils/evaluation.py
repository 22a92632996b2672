"""Deterministic policy evaluation: what the actor reports and what a checkpoint is judged by."""
from typing import Callable, Optional

import gymnasium as gym
import numpy as np


def evaluate(policy: Callable, env: gym.Env, num_episodes: int, seed: Optional[int] = None,
             on_frame: Optional[Callable] = None) -> dict:
    """Mean return, success rate (an episode succeeds if any step reports info["success"]) and length.

    `policy(observation) -> action`; `on_frame(env)` is called after every step (e.g. to record video).
    """
    returns, successes, lengths = [], [], []
    for episode in range(num_episodes):
        observation, _ = env.reset(seed=None if seed is None else seed + episode)
        episode_return, success, length, done = 0.0, False, 0, False
        while not done:
            observation, reward, terminated, truncated, info = env.step(policy(observation))
            episode_return += float(reward)
            success = success or bool(info.get("success", False))
            length += 1
            done = terminated or truncated
            if on_frame is not None:
                on_frame(env)
        returns.append(episode_return)
        successes.append(success)
        lengths.append(length)
    return {"return": float(np.mean(returns)), "success_rate": float(np.mean(successes)),
            "episode_length": float(np.mean(lengths)), "episodes": num_episodes}
