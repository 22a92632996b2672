"""The pixel agent: image encoders inside the networks, random shifts, the critic-only encoder gradient."""
import pickle

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from serl_launcher.agents.continuous import sac
from serl_launcher.agents.continuous.drq import DrQAgent
from serl_launcher.utils.checkpoints import AgentCheckpointer, load_agent
from serl_launcher.utils.launcher import make_drq_agent
from serl_launcher.vision.augmentations import random_shift
from serl_launcher.vision.convert_serl_weights import SERL_BLOCK_NAMES, convert
from serl_launcher.vision.pretrained import load_backbone, save_backbone

SIZE = 32
SMALL = {"hidden_dims": (16, 16), "activations": nn.tanh, "use_layer_norm": True}


def _observation(rng=None, batch=()):
    rng = rng or np.random.default_rng(0)
    return {"state": {"panda/tcp_pos": rng.normal(size=batch + (3,)).astype(np.float32)},
            "images": {"front": rng.integers(0, 256, batch + (SIZE, SIZE, 3), dtype=np.uint8),
                       "wrist": rng.integers(0, 256, batch + (SIZE, SIZE, 3), dtype=np.uint8)}}


def _agent(encoder_type="small", pad=4, **kwargs):
    return DrQAgent.create_drq(jax.random.PRNGKey(0), _observation(), np.zeros(4, np.float32),
                               encoder_type=encoder_type, image_keys=("front", "wrist"), critic_network_kwargs=SMALL,
                               policy_network_kwargs=SMALL, augmentation_pad=pad, bottleneck_dim=8, **kwargs)


def _batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"observations": _observation(rng, (n,)), "next_observations": _observation(rng, (n,)),
            "actions": rng.uniform(-1, 1, (n, 4)).astype(np.float32), "rewards": rng.normal(size=n).astype(np.float32),
            "masks": np.ones(n, np.float32), "dones": np.zeros(n, bool)}


@pytest.fixture(scope="module")
def agent():
    return _agent()


def test_acts_on_single_and_batched_image_observations(agent):
    single = agent.sample_actions(_observation(), seed=jax.random.PRNGKey(0))
    batched = agent.sample_actions(_observation(batch=(5,)), argmax=True)
    assert single.shape == (4,) and batched.shape == (5, 4) and batched.dtype == jnp.float32
    encoder = agent.state.params["critic"]["encoder"]
    assert set(encoder) == {"image_images_front", "image_images_wrist", "proprio", "proprio_norm"}
    # The policy acts on the critic's encoder (a copy kept in sync), not one of its own.
    for a, c in zip(jax.tree.leaves(agent.state.params["actor"]["encoder"]), jax.tree.leaves(encoder)):
        np.testing.assert_array_equal(a, c)


def test_random_shift_moves_content_by_at_most_the_pad_and_differs_per_sample():
    images = np.zeros((64, 12, 12, 1), np.uint8)
    images[:, 6, 6, 0] = 255  # one bright pixel, in the middle of each image
    shifted = np.asarray(random_shift(jnp.asarray(images), jax.random.PRNGKey(0), pad=2))
    positions = np.array([np.argwhere(image[..., 0] == 255)[0] for image in shifted])
    assert np.all(np.abs(positions - 6) <= 2)
    assert len({tuple(p) for p in positions}) > 10  # a different shift per sample
    again = np.asarray(random_shift(jnp.asarray(images), jax.random.PRNGKey(0), pad=2))
    np.testing.assert_array_equal(shifted, again)  # the key fixes the shift
    stacked = np.stack([images, images], axis=1)  # (B, S, H, W, C): one shift for all frames of a sample
    out = np.asarray(random_shift(jnp.asarray(stacked), jax.random.PRNGKey(1), pad=2))
    np.testing.assert_array_equal(out[:, 0], out[:, 1])


def test_augmentation_shifts_observations_and_next_observations_independently(agent):
    batch = _batch(8)
    augmented = agent.augment_batch(batch, jax.random.PRNGKey(3))
    for field in ("observations", "next_observations"):
        assert not np.array_equal(augmented[field]["images"]["front"], batch[field]["images"]["front"])
        np.testing.assert_array_equal(augmented[field]["state"]["panda/tcp_pos"], batch[field]["state"]["panda/tcp_pos"])
    assert _agent(pad=0).augment_batch(batch, jax.random.PRNGKey(3)) is batch


def test_the_actor_loss_does_not_train_the_encoder_and_the_critic_loss_does(agent):
    batch = jax.tree.map(jnp.asarray, _batch(8))
    actor_grads, _ = jax.grad(sac._actor_loss, has_aux=True)(agent.state.params["actor"], agent, batch,
                                                             jax.random.PRNGKey(0))
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(actor_grads["encoder"]))
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(actor_grads["network"]))
    critic_grads, _ = jax.grad(sac._critic_loss, has_aux=True)(agent.state.params["critic"], agent, batch,
                                                               jax.random.PRNGKey(0))
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(critic_grads["encoder"]["image_images_front"]))


def test_update_high_utd_equals_critic_steps_then_actor_step_and_polyak_moves_the_target_encoder():
    agent = _agent(pad=0)
    batch = _batch(16)
    fused, _ = agent.update_high_utd(batch, utd_ratio=2)
    sequential = agent
    for i in range(2):
        minibatch = jax.tree.map(lambda x: x[i * 8:(i + 1) * 8], batch)
        sequential, _ = sequential.update(minibatch, networks_to_update=frozenset({"critic"}))
    sequential, _ = sequential.update(batch, networks_to_update=frozenset({"actor", "temperature"}))
    for a, b in zip(jax.tree.leaves(fused.state), jax.tree.leaves(sequential.state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
    before = agent.state.target_params["critic"]["encoder"]["proprio"]["kernel"]
    after = fused.state.target_params["critic"]["encoder"]["proprio"]["kernel"]
    online = fused.state.params["critic"]["encoder"]["proprio"]["kernel"]
    assert not np.array_equal(before, after) and not np.array_equal(after, online)
    for a, c in zip(jax.tree.leaves(fused.state.params["actor"]["encoder"]),
                    jax.tree.leaves(fused.state.params["critic"]["encoder"])):
        np.testing.assert_array_equal(a, c)  # the policy's encoder copy followed the critic's


def test_drq_checkpoint_rebuilds_without_flags(tmp_path, agent):
    trained, _ = agent.update_high_utd(_batch(8), utd_ratio=2)
    AgentCheckpointer(str(tmp_path)).save(1, trained)
    loaded = load_agent(str(tmp_path))
    assert isinstance(loaded, DrQAgent) and loaded.config == trained.config
    observation = _observation(np.random.default_rng(5))
    np.testing.assert_array_equal(loaded.sample_actions(observation, argmax=True),
                                  trained.sample_actions(observation, argmax=True))


def test_pretrained_resnet_weights_load_from_a_safe_file_and_stay_frozen(tmp_path):
    source = _agent("resnet")
    backbone = source.state.params["critic"]["encoder"]["image_images_front"]["backbone"]
    path = str(tmp_path / "resnet10.msgpack")
    save_backbone(path, backbone)
    pretrained = _agent("resnet-pretrained", pretrained_weights=path)
    for camera in ("image_images_front", "image_images_wrist"):
        loaded = pretrained.state.params["critic"]["encoder"][camera]["backbone"]
        for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(backbone)):
            np.testing.assert_array_equal(a, b)
    grads, _ = jax.grad(sac._critic_loss, has_aux=True)(pretrained.state.params["critic"], pretrained,
                                                        jax.tree.map(jnp.asarray, _batch(4)), jax.random.PRNGKey(0))
    camera_grads = grads["encoder"]["image_images_front"]
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(camera_grads["backbone"]))
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(camera_grads["Bottleneck_0"]))
    wrong = {"conv_init": {"kernel": np.zeros((3, 3, 3, 64), np.float32)}}
    save_backbone(str(tmp_path / "wrong.msgpack"), wrong)
    with pytest.raises(ValueError, match="backbone"):
        _agent("resnet-pretrained", pretrained_weights=str(tmp_path / "wrong.msgpack"))


def test_serl_pickled_resnet_layout_converts_to_the_same_backbone(tmp_path):
    backbone = jax.tree.map(np.asarray, _agent("resnet").state.params["critic"]["encoder"]["image_images_front"]["backbone"])
    ours_to_serl = {v: k for k, v in SERL_BLOCK_NAMES.items()}
    serl = {"conv_init": backbone["conv_init"], "norm_init": backbone["norm_init"],
            **{f"ResNetBlock_{i}": {ours_to_serl[name]: value for name, value in backbone[f"block_{i}"].items()}
               for i in range(4)}}
    with open(tmp_path / "resnet10_params.pkl", "wb") as file:
        pickle.dump({"params": serl}, file)
    convert(str(tmp_path / "resnet10_params.pkl"), str(tmp_path / "converted.msgpack"))
    converted = load_backbone(str(tmp_path / "converted.msgpack"))
    assert jax.tree.structure(converted) == jax.tree.structure(backbone)
    for a, b in zip(jax.tree.leaves(converted), jax.tree.leaves(backbone)):
        np.testing.assert_array_equal(a, b)


def test_make_drq_agent_uses_serl_defaults_and_refuses_unlisted_cameras():
    agent = make_drq_agent(0, _observation(), np.zeros(4, np.float32), image_keys=("front", "wrist"))
    assert agent.config.critic_ensemble_size == 10 and agent.config.critic_subsample_size == 2
    assert agent.config.discount == 0.96 and agent.config.encoder.kind == "small"
    with pytest.raises(ValueError, match=r"\['images/wrist'\] are not in image_keys"):
        make_drq_agent(0, _observation(), np.zeros(4, np.float32), image_keys=("front",))


def _sac_ae_agent(**config):
    from serl_launcher.agents.continuous.drq import DrQConfig
    from serl_launcher.agents.continuous.sac import NetworkConfig, OptimizerConfig
    from serl_launcher.networks.encoders import EncoderConfig

    network = NetworkConfig((16, 16))
    fast = OptimizerConfig(1e-3, 0)
    defaults = dict(policy_network=network, critic_network=network, critic_ensemble_size=2,
                    critic_subsample_size=None, encoder=EncoderConfig("sac_ae", bottleneck_dim=16), reconstruction=True,
                    critic_optimizer=fast, actor_optimizer=fast)
    return DrQAgent.create(0, {"pixels": np.zeros((2, 32, 32, 3), np.uint8)}, np.zeros(2, np.float32),
                           DrQConfig(**{**defaults, **config}))


def _pixel_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (n, 1, 1, 1, 3))  # a flat colour per sample: easy to reconstruct
    images = np.broadcast_to(colours, (n, 2, 32, 32, 3)).astype(np.uint8)
    return {"observations": {"pixels": images}, "next_observations": {"pixels": images},
            "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32), "rewards": np.zeros(n, np.float32),
            "masks": np.ones(n, np.float32), "dones": np.zeros(n, bool)}


def test_sac_ae_learns_to_reconstruct_and_trains_the_encoder_with_the_critic():
    fast = sac.OptimizerConfig(3e-3, 0)
    agent = _sac_ae_agent(augmentation_pad=0, decoder_learning_rate=3e-3, critic_optimizer=fast)
    batch = _pixel_batch(8)
    first = None
    for _ in range(60):
        agent, info = agent.update_high_utd(batch, utd_ratio=2)
        first = first if first is not None else float(info["reconstruction_loss"])
    assert float(info["reconstruction_loss"]) < 0.8 * first  # 0.72x after 60 updates (0.12x after 300)
    critic, actor = agent.state.params["critic"]["encoder"]["image_pixels"], agent.state.params["actor"]["encoder"]["image_pixels"]
    for name in critic:
        same = all(np.array_equal(a, c) for a, c in zip(jax.tree.leaves(actor[name]), jax.tree.leaves(critic[name])))
        assert same == name.startswith("trunk_"), name  # shared convolutions, the policy's own projection


def test_sac_ae_policy_loss_trains_its_projection_but_not_the_convolutions():
    agent = _sac_ae_agent()
    grads, _ = jax.grad(sac._actor_loss, has_aux=True)(agent.state.params["actor"], agent,
                                                       jax.tree.map(jnp.asarray, _pixel_batch(8)), jax.random.PRNGKey(0))
    encoder = grads["encoder"]["image_pixels"]
    assert all(np.all(np.asarray(g) == 0) for name in encoder if name.startswith("trunk_")
               for g in jax.tree.leaves(encoder[name]))
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(encoder["projection"]))


def test_delta_orthogonal_init_is_an_orthogonal_centre_tap():
    from serl_launcher.vision.encoders import delta_orthogonal

    kernel = np.array(delta_orthogonal(1.0)(jax.random.PRNGKey(0), (3, 3, 16, 16)))
    centre = kernel[1, 1]
    np.testing.assert_allclose(centre.T @ centre, np.eye(16), atol=1e-5)
    kernel[1, 1] = 0
    assert not kernel.any()


def test_sac_ae_settings_are_checked():
    from serl_launcher.networks.encoders import EncoderConfig

    with pytest.raises(ValueError, match="needs encoder kind 'sac_ae'"):
        _sac_ae_agent(encoder=EncoderConfig("small"))
    with pytest.raises(ValueError, match="exactly one camera"):
        DrQAgent.create(0, _observation(), np.zeros(4, np.float32), DrQAgent.config_class(
            encoder=EncoderConfig("sac_ae", bottleneck_dim=8), reconstruction=True))
