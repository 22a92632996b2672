"""Deterministic policy evaluation: what the actor reports and what a checkpoint is judged by."""
from typing import Callable, Optional

import gymnasium as gym
import numpy as np


def evaluate(policy_fn: Callable, env: gym.Env, num_episodes: int, seed: Optional[int] = None,
             on_frame: Optional[Callable] = None) -> dict:
    """Mean return and episode length over `num_episodes`, and the success rate when the env reports
    success (an episode succeeds if any step has info["success"]; envs without it get no rate).

    `policy_fn(observation) -> action` (SERL's argument name); `on_frame(env)` is called after every
    step (e.g. to record video).
    """
    returns, successes, lengths, reports_success = [], [], [], False
    for episode in range(num_episodes):
        observation, _ = env.reset(seed=None if seed is None else seed + episode)
        episode_return, success, length, done = 0.0, False, 0, False
        while not done:
            observation, reward, terminated, truncated, info = env.step(policy_fn(observation))
            episode_return += float(reward)
            reports_success = reports_success or "success" in info
            success = success or bool(info.get("success", False))
            length += 1
            done = terminated or truncated
            if on_frame is not None:
                on_frame(env)
        returns.append(episode_return)
        successes.append(success)
        lengths.append(length)
    results = {"return": float(np.mean(returns)), "episode_length": float(np.mean(lengths)),
               "episodes": num_episodes}
    if reports_success:
        results["success_rate"] = float(np.mean(successes))
    return results
