"""The classic pixel benchmarks' envs, and the pixel agent training on one of them in sync mode."""
import numpy as np
import pytest

import classic_envs  # noqa: F401
from serl_launcher.runtime import ActorConfig, LearnerConfig
from serl_launcher.runtime.sync import run_sync
from serl_launcher.utils.launcher import make_drq_agent, make_env


@pytest.mark.parametrize("env_id, shape, action_dim", [
    ("classic_envs:dmc/cheetah-run-v0", (3, 84, 84, 3), 6),
    ("classic_envs:VisualPendulum-v0", (3, 84, 84, 3), 1),
    ("classic_envs:CarRacingPixels-v0", (4, 96, 96, 3), 3),
])
def test_pixel_envs_give_stacked_uint8_frames_and_unit_actions(env_id, shape, action_dim):
    env = make_env(env_id, seed=0)
    observation, _ = env.reset(seed=0)
    assert env.observation_space["pixels"].shape == shape and observation["pixels"].dtype == np.uint8
    assert env.action_space.shape == (action_dim,) and np.all(env.action_space.low == -1)
    first = observation["pixels"]
    observation, *_ = env.step(env.action_space.sample())
    np.testing.assert_array_equal(observation["pixels"][:-1], first[1:])  # the stack shifts by one frame
    assert observation["pixels"].std() > 1  # a rendered scene, not a blank frame
    env.close()


def test_dmc_counts_the_papers_env_steps():
    env = make_env("classic_envs:dmc/cheetah-run-v0", seed=0)
    env.reset(seed=0)
    steps = 0
    while True:
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            break
    assert steps == 250 and not terminated  # 1000 control steps at action repeat 4; DMC never terminates
    env.close()


@pytest.mark.slow
def test_sac_ae_trains_on_visual_pendulum_in_sync_mode():
    """Small frames (32 x 32, 2 stacked): the CPU cost of 84 x 84 convolutions belongs in benchmarks."""
    env = make_env("classic_envs:VisualPendulum-v0", seed=0, size=32, frame_stack=2)
    agent = make_drq_agent(0, env.observation_space.sample(), env.action_space.sample(), encoder_type="sac_ae",
                           reconstruction=True, hidden_dims=(16, 16), critic_ensemble_size=2,
                           critic_subsample_size=None, latent_dim=16)
    rows = []
    result = run_sync(LearnerConfig(batch_size=8, utd_ratio=1, training_starts=50, target_utd=0.5, log_period=5,
                                    replay_buffer_capacity=500),
                      ActorConfig(max_steps=200, random_steps=50, eval_period=200, eval_episodes=1), agent, env,
                      make_env("classic_envs:VisualPendulum-v0", seed=1, size=32, frame_stack=2),
                      progress_fn=lambda steps, row: rows.append((steps, row)))
    assert result.env_steps == 200 and result.learner_step >= 70
    losses = [row["learner/reconstruction_loss"] for _, row in rows if "learner/reconstruction_loss" in row]
    assert losses and all(np.isfinite(losses))
    assert [steps for steps, row in rows if "eval/return" in row] == [200]
