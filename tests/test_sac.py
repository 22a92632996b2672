import shutil

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from serl_launcher.agents.continuous import sac
from serl_launcher.agents.continuous.sac import SACAgent
from serl_launcher.data.replay_buffer import ReplayBuffer
from serl_launcher.utils.checkpoints import AgentCheckpointer, CheckpointError, load_agent
from serl_launcher.utils.launcher import make_sac_agent

OBS_DIM, ACT_DIM = 5, 2
SMALL = {"hidden_dims": (16, 16), "activations": nn.tanh, "use_layer_norm": True}


def _small_agent(sample_obs=None, **kwargs):
    sample_obs = np.zeros(OBS_DIM, np.float32) if sample_obs is None else sample_obs
    kwargs = {"critic_ensemble_size": 4, "critic_subsample_size": 2, "temperature_init": 0.1, "discount": 0.99, **kwargs}
    return SACAgent.create_states(jax.random.PRNGKey(0), sample_obs, np.zeros(ACT_DIM, np.float32),
                                  critic_network_kwargs=SMALL, policy_network_kwargs=SMALL, **kwargs)


def _batch(n, seed=0, obs_dim=OBS_DIM):
    rng = np.random.default_rng(seed)
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "next_observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "masks": (rng.uniform(size=n) > 0.1).astype(np.float32),
        "dones": np.zeros(n, bool),
    }


@pytest.fixture(scope="module")
def agent():
    return _small_agent()


def _assert_trees_close(a, b, **tolerances):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tolerances)


def test_sample_actions_single_and_batched(agent):
    key = jax.random.PRNGKey(1)
    single = agent.sample_actions(np.zeros(OBS_DIM, np.float32), seed=key)
    batched = agent.sample_actions(np.zeros((7, OBS_DIM), np.float32), seed=key)
    assert single.shape == (ACT_DIM,) and batched.shape == (7, ACT_DIM) and single.dtype == jnp.float32
    assert np.all(np.abs(np.asarray(batched)) <= 1)
    mode = agent.sample_actions(np.ones(OBS_DIM, np.float32), argmax=True)
    np.testing.assert_array_equal(mode, agent.sample_actions(np.ones(OBS_DIM, np.float32), argmax=True))
    other = agent.sample_actions(np.zeros(OBS_DIM, np.float32), seed=jax.random.PRNGKey(2))
    assert not np.allclose(single, other)
    with pytest.raises(ValueError, match="seed"):
        agent.sample_actions(np.zeros(OBS_DIM, np.float32))


@pytest.mark.parametrize("shape", [(OBS_DIM + 3,), (7, OBS_DIM - 1), (2, 3, OBS_DIM + 1)])
def test_an_observation_of_another_shape_is_a_clear_error(agent, shape):
    """E.g. a policy trained on SERL's 10-float pick-cube state fed the 13-float one: named, not a flax error."""
    with pytest.raises(ValueError, match=rf"has shape \({shape[0]},.*the agent takes \({OBS_DIM},\)"):
        agent.sample_actions(np.zeros(shape, np.float32), argmax=True)
    with pytest.raises(ValueError, match="the agent takes"):
        agent.update(_batch(4, obs_dim=shape[-1]))


def test_update_high_utd_equals_critic_steps_then_actor_step(agent):
    batch = _batch(32)
    fused, fused_info = agent.update_high_utd(batch, utd_ratio=4)

    sequential, infos = agent, []
    for i in range(4):
        minibatch = jax.tree.map(lambda x: x[i * 8:(i + 1) * 8], batch)
        sequential, info = sequential.update(minibatch, networks_to_update=frozenset({"critic"}))
        infos.append(info)
    sequential, actor_info = sequential.update(batch, networks_to_update=frozenset({"actor", "temperature"}))

    _assert_trees_close(fused.state, sequential.state, rtol=2e-5, atol=2e-6)
    assert int(fused.state.step) == 5
    np.testing.assert_allclose(fused_info["critic_loss"], np.mean([i["critic_loss"] for i in infos]), rtol=1e-5)
    for key in ("actor_loss", "temperature", "entropy", "temperature_loss"):
        np.testing.assert_allclose(fused_info[key], actor_info[key], rtol=1e-5)
    for key in ("critic_loss", "actor_loss", "temperature", "entropy", "predicted_qs", "target_qs"):
        assert np.isfinite(fused_info[key])
    # Learning happened (warm-up makes the very first step of each optimiser a no-op; the critic took 4).
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(fused.state.params["critic"]),
                                                   jax.tree.leaves(agent.state.params["critic"]))]
    assert all(moved)


@pytest.mark.parametrize("members, rows", [(2, 64), (5, 300), (10, 200)])
def test_chunked_actor_loss_gradient_matches_plain_autodiff(members, rows):
    """The chunked actor loss evaluates the critic in row chunks (the last one padded) and member
    groups, with a hand-written gradient; it must equal autodiff of the plain SAC actor loss."""
    agent = _small_agent(critic_ensemble_size=members, critic_subsample_size=None, actor_loss_gradient="chunked")
    assert agent.networks.chunked_actor_loss
    agent, _ = agent.update(_batch(32), networks_to_update=frozenset({"critic"}))
    batch, key, nets = _batch(rows, seed=3), jax.random.PRNGKey(3), agent.networks

    def plain_loss(actor_params):
        observations = jnp.asarray(batch["observations"])
        actions, log_probs = nets.actor_def.apply({"params": actor_params}, observations).sample_and_log_prob(key)
        q = nets.critic_def.apply({"params": agent.state.params["critic"]}, observations, actions).mean(axis=0)
        temperature = nets.temperature_def.apply({"params": agent.state.params["temperature"]})
        return -jnp.mean(q - temperature * log_probs)

    (loss, _), grads = jax.value_and_grad(sac._actor_loss, has_aux=True)(agent.state.params["actor"], agent, batch, key)
    expected_loss, expected_grads = jax.value_and_grad(plain_loss)(agent.state.params["actor"])
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    for g, e in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5 * np.max(np.abs(e)))


def test_autodiff_and_chunked_actor_loss_give_the_same_update():
    batch = _batch(32, seed=4)
    chunked, _ = _small_agent(actor_loss_gradient="chunked").update_high_utd(batch, utd_ratio=4)
    autodiff, _ = _small_agent(actor_loss_gradient="autodiff").update_high_utd(batch, utd_ratio=4)
    assert not _small_agent(actor_loss_gradient="autodiff").networks.chunked_actor_loss
    _assert_trees_close(chunked.state, autodiff.state, rtol=1e-4, atol=1e-6)


def test_auto_actor_loss_gradient_is_chunked_on_cpu_only():
    assert _small_agent().networks.chunked_actor_loss == (jax.default_backend() == "cpu")


@pytest.mark.parametrize("field, value", [("rewards", np.nan), ("observations", np.inf), ("actions", np.nan)])
def test_a_nonfinite_batch_is_skipped_and_keeps_the_parameters(agent, field, value):
    batch = _batch(32)
    batch[field] = batch[field].copy()
    batch[field][3] = value
    updated, info = agent.update_high_utd(batch, utd_ratio=4)
    assert float(info["nonfinite_update"]) == 1.0
    _assert_trees_close(updated.state.params, agent.state.params, rtol=0, atol=0)
    _assert_trees_close(updated.state.opt_states, agent.state.opt_states, rtol=0, atol=0)
    assert int(updated.state.step) == int(agent.state.step)
    good, info = updated.update_high_utd(_batch(32), utd_ratio=4)
    assert float(info["nonfinite_update"]) == 0.0 and int(good.state.step) == int(agent.state.step) + 5


def test_update_high_utd_rejects_indivisible_batch(agent):
    with pytest.raises(ValueError, match="not divisible"):
        agent.update_high_utd(_batch(30), utd_ratio=4)


def test_target_moves_by_tau(agent):
    updated, _ = agent.update(_batch(16), networks_to_update=frozenset({"critic"}))
    tau = agent.config.soft_target_update_rate
    expected = jax.tree.map(lambda new, old: tau * new + (1 - tau) * old,
                            updated.state.params["critic"], agent.state.target_params["critic"])
    _assert_trees_close(updated.state.target_params["critic"], expected, rtol=1e-6, atol=1e-7)
    _assert_trees_close(updated.state.params["actor"], agent.state.params["actor"], rtol=0, atol=0)


@pytest.mark.parametrize("target_entropy, direction", [(-50.0, -1), (50.0, +1)])
def test_temperature_moves_toward_target_entropy(target_entropy, direction):
    agent = _small_agent(target_entropy=target_entropy)
    updated, info = agent.update(_batch(64), networks_to_update=frozenset({"temperature"}))
    change = float(updated.temperature() - agent.temperature())
    # Entropy above the target lowers the temperature; below it raises the temperature.
    assert np.sign(change) == direction
    _assert_trees_close(updated.state.params["actor"], agent.state.params["actor"], rtol=0, atol=0)


def test_dict_observations_work_end_to_end():
    sample = {"state": {"tcp_pos": np.zeros(3, np.float32), "gripper": np.zeros(1, np.float32)}, "cube": np.zeros(2, np.float32)}
    agent = _small_agent(sample_obs=sample)
    flat = _batch(16, obs_dim=6)

    def to_dict(x):
        return {"state": {"tcp_pos": x[:, :3], "gripper": x[:, 3:4]}, "cube": x[:, 4:]}

    batch = {**flat, "observations": to_dict(flat["observations"]), "next_observations": to_dict(flat["next_observations"])}
    updated, info = agent.update_high_utd(batch, utd_ratio=2)
    assert np.isfinite(info["critic_loss"])
    single = {"state": {"tcp_pos": np.ones(3, np.float32), "gripper": np.ones(1, np.float32)}, "cube": np.ones(2, np.float32)}
    assert updated.sample_actions(single, argmax=True).shape == (ACT_DIM,)
    with pytest.raises(ValueError, match="structure"):
        updated.sample_actions({"cube": np.ones(2, np.float32)}, argmax=True)


def test_make_sac_agent_matches_serl_defaults():
    agent = make_sac_agent(0, np.zeros(10, np.float32), np.zeros(4, np.float32))
    n_params = sum(x.size for x in jax.tree.leaves(agent.state.params))
    assert n_params == 780_819  # SERL's figure for this configuration (../shared/baselines.md)
    assert agent.networks.critic_def.members == 10 and agent.config.critic_subsample_size == 2
    assert agent.networks.target_entropy == -2.0 and agent.config.discount == 0.99 and not agent.config.backup_entropy
    np.testing.assert_allclose(agent.temperature(), 1e-2, rtol=1e-5)
    plain = make_sac_agent(0, np.zeros(10, np.float32), np.zeros(4, np.float32), critic_ensemble_size=2, critic_subsample_size=None)
    assert sum(x.size for x in jax.tree.leaves(plain.state.params)) == 213_515


def test_checkpoint_round_trip(tmp_path, agent):
    trained, _ = agent.update_high_utd(_batch(16), utd_ratio=2)
    checkpointer = AgentCheckpointer(str(tmp_path / "ckpt"))
    checkpointer.save(7, trained, {"env_steps": 123})
    restored, metadata = checkpointer.restore(_small_agent())
    assert metadata == {"env_steps": 123} and checkpointer.latest_step() == 7
    _assert_trees_close(restored.state, trained.state, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        AgentCheckpointer(str(tmp_path / "empty")).restore(_small_agent())


def test_load_agent_rebuilds_the_agent_from_the_checkpoint_alone(tmp_path, agent):
    trained, _ = agent.update_high_utd(_batch(16), utd_ratio=2)
    AgentCheckpointer(str(tmp_path / "ckpt")).save(3, trained)
    for loaded in (load_agent(str(tmp_path / "ckpt")), SACAgent.load(str(tmp_path / "ckpt"), step=3)):
        assert loaded.config == trained.config and loaded.observation_spec == trained.observation_spec
        _assert_trees_close(loaded.state, trained.state, rtol=0, atol=0)
        observations = _batch(5, seed=9)["observations"]
        np.testing.assert_array_equal(loaded.sample_actions(observations, argmax=True),
                                      trained.sample_actions(observations, argmax=True))


def test_restoring_into_another_configuration_names_what_differs(tmp_path, agent):
    AgentCheckpointer(str(tmp_path / "ckpt")).save(1, agent)
    with pytest.raises(CheckpointError, match=r"critic_ensemble_size: checkpoint=4 now=2"):
        AgentCheckpointer(str(tmp_path / "ckpt")).restore(_small_agent(critic_ensemble_size=2))


def test_a_checkpoint_without_agent_configuration_is_refused_clearly(tmp_path, agent):
    checkpointer = AgentCheckpointer(str(tmp_path / "old"))
    checkpointer.save(5, agent)
    shutil.rmtree(tmp_path / "old" / "5" / "agent")  # the layout checkpoints had before configs were saved
    with pytest.raises(CheckpointError, match="no saved agent configuration"):
        load_agent(str(tmp_path / "old"))


def test_the_state_encoder_refuses_camera_images():
    sample = {"state": np.zeros(3, np.float32), "images": {"front": np.zeros((64, 64, 3), np.uint8)}}
    with pytest.raises(ValueError, match=r"camera images \(images/front \(64, 64, 3\) uint8\).*pixel agent"):
        _small_agent(sample_obs=sample)


def test_sample_actions_accepts_serl_deterministic_flag(agent):
    observation = np.ones(OBS_DIM, np.float32)
    np.testing.assert_array_equal(agent.sample_actions(observation, deterministic=True),
                                  agent.sample_actions(observation, argmax=True))
    assert agent.sample_actions(observation, seed=jax.random.PRNGKey(0), deterministic=False).shape == (ACT_DIM,)


@pytest.mark.slow
def test_learns_pendulum():
    """A synchronous loop (act, insert, update_high_utd every 4 steps) reaches mean eval return >= -250."""
    env = gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -1.0, 1.0)
    eval_env = gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -1.0, 1.0)
    network = {"hidden_dims": (64, 64), "activations": nn.tanh, "use_layer_norm": True}
    adam = {"learning_rate": 1e-3}
    agent = SACAgent.create_states(
        jax.random.PRNGKey(0), env.observation_space.sample(), env.action_space.sample(),
        critic_network_kwargs=network, policy_network_kwargs=network, critic_ensemble_size=2,
        temperature_init=1.0, discount=0.99,
        actor_optimizer_kwargs=adam, critic_optimizer_kwargs=adam, temperature_optimizer_kwargs=adam)
    buffer = ReplayBuffer(env.observation_space, env.action_space, capacity=10_000, seed=0)
    env.action_space.seed(0)
    key = jax.random.PRNGKey(1)
    observation, _ = env.reset(seed=0)
    for step in range(8000):
        if step < 1000:
            action = env.action_space.sample() / 2
        else:
            key, sample_key = jax.random.split(key)
            action = np.asarray(agent.sample_actions(observation, seed=sample_key))
        next_observation, reward, terminated, truncated, _ = env.step(action)
        buffer.insert({"observations": observation, "next_observations": next_observation, "actions": action,
                       "rewards": reward, "masks": 1.0 - terminated, "dones": terminated or truncated})
        observation = next_observation
        if terminated or truncated:
            observation, _ = env.reset()
        if step >= 1000 and step % 4 == 0:
            agent, _ = agent.update_high_utd(buffer.sample(512), utd_ratio=4)

    returns = []
    for episode in range(5):
        observation, _ = eval_env.reset(seed=100 + episode)
        episode_return, done = 0.0, False
        while not done:
            observation, reward, terminated, truncated, _ = eval_env.step(np.asarray(agent.sample_actions(observation, argmax=True)))
            episode_return += reward
            done = terminated or truncated
        returns.append(episode_return)
    assert np.mean(returns) >= -250, returns
