"""One-call constructors with SERL's names and defaults, so scripts stay short."""
import gymnasium as gym
import jax
import numpy as np

from serl_launcher.agents.continuous.drq import DrQAgent, DrQConfig
from serl_launcher.agents.continuous.sac import NetworkConfig, SACAgent, SACConfig
from serl_launcher.networks.encoders import EncoderConfig
from serl_launcher.common.wandb import WandBLogger
from serl_launcher.runtime.protocol import REQUEST_TYPES
from serl_launcher.transport import TrainerConfig


def make_sac_agent(seed: int, sample_obs, sample_action, discount: float = 0.99,
                   critic_ensemble_size: int = 10, critic_subsample_size: int | None = 2,
                   hidden_dims=(256, 256), **config_overrides) -> SACAgent:
    """SERL's state-based SAC: [256, 256] tanh MLPs with LayerNorm, REDQ ensemble 10 / subsample 2, alpha0 = 1e-2.

    Plain SAC: `critic_ensemble_size=2, critic_subsample_size=None`. Other SACConfig fields can be
    overridden by keyword (e.g. `actor_loss_gradient="autodiff"`).
    """
    network = NetworkConfig(tuple(int(d) for d in hidden_dims), "tanh", use_layer_norm=True)
    config = SACConfig(policy_network=network, critic_network=network, critic_ensemble_size=critic_ensemble_size,
                       critic_subsample_size=critic_subsample_size, discount=discount, temperature_init=1e-2,
                       **config_overrides)
    return SACAgent.create(jax.random.PRNGKey(seed), sample_obs, sample_action, config)


def make_drq_agent(seed: int, sample_obs, sample_action, image_keys=(), encoder_type: str = "small",
                   discount: float = 0.96, critic_ensemble_size: int = 10, critic_subsample_size: int | None = 2,
                   hidden_dims=(256, 256), pretrained_weights: str | None = None, latent_dim: int | None = None,
                   **config_overrides) -> DrQAgent:
    """SERL's pixel agent: an image encoder per camera + projected state, [256, 256] tanh MLPs with
    LayerNorm, REDQ ensemble 10 / subsample 2, alpha0 = 1e-2, random shifts of 4 pixels.

    image_keys: cameras by leaf path or last key, e.g. ("front", "wrist"); () encodes every image.
    latent_dim: features per camera (default 256; 50 for encoder_type "sac_ae" as in SAC-AE).
    """
    network = NetworkConfig(tuple(int(d) for d in hidden_dims), "tanh", use_layer_norm=True)
    latent_dim = latent_dim or (50 if encoder_type == "sac_ae" else 256)
    encoder = EncoderConfig(encoder_type, tuple(image_keys), bottleneck_dim=latent_dim,
                            pretrained_weights=pretrained_weights)
    config = DrQConfig(policy_network=network, critic_network=network, critic_ensemble_size=critic_ensemble_size,
                       critic_subsample_size=critic_subsample_size, discount=discount, temperature_init=1e-2,
                       encoder=encoder, **config_overrides)
    return DrQAgent.create(jax.random.PRNGKey(seed), sample_obs, sample_action, config)


def make_trainer_config(port_number: int = 5488, broadcast_port: int = 5489, bind_address: str = "0.0.0.0",
                        server_secret_key: str | None = None, authorized_keys_dir: str | None = None,
                        server_public_key: str | None = None, client_secret_key: str | None = None,
                        compatibility: dict | None = None) -> TrainerConfig:
    """The transport configuration learner and actors share (the key files are each side's own).

    compatibility: JSON values both sides must agree on (spaces, agent description), checked at the handshake.
    """
    return TrainerConfig(port_number=port_number, broadcast_port=broadcast_port, request_types=list(REQUEST_TYPES),
                         bind_address=bind_address, compatibility=compatibility or {}, curve_server_secret_key=server_secret_key,
                         curve_authorized_clients=authorized_keys_dir, curve_server_public_key=server_public_key,
                         curve_client_secret_key=client_secret_key)


def make_replay_buffer(env: gym.Env, capacity: int = 1_000_000, rlds_logger_path: str | None = None,
                       type: str = "replay_buffer", image_keys=(), preload_rlds_path: str | None = None,
                       preload_data_transform=None):
    """SERL's helper: a replay buffer for `env` that the transport can feed, optionally preloaded from RLDS.

    rlds_logger_path: every inserted transition is also written as RLDS episodes there (one actor;
    with several, use the learner runtime's --log_rlds_path, which keeps one recorder per actor).
    type "memory_efficient_replay_buffer" stores each camera frame once (every image leaf; image_keys
    is accepted for SERL's signature).
    """
    from serl_launcher.data.data_store import ReplayBufferDataStore
    from serl_launcher.data.image_replay_buffer import ImageReplayBuffer

    if type == "replay_buffer":
        buffer = ReplayBufferDataStore(env.observation_space, env.action_space, capacity, rlds_logger_path)
    elif type == "memory_efficient_replay_buffer":
        if rlds_logger_path:
            raise ValueError("rlds_logger_path is not supported with images here: use the learner's --log_rlds_path")
        buffer = ImageReplayBuffer(env.observation_space, env.action_space, capacity)
    else:
        raise ValueError(f"replay buffer type {type!r}: use 'replay_buffer' or 'memory_efficient_replay_buffer'")
    if preload_rlds_path:
        from serl_launcher.data.rlds import read_rlds_dataset, stack_transitions

        transitions = stack_transitions(read_rlds_dataset(preload_rlds_path))
        buffer.insert_stacked(preload_data_transform(transitions) if preload_data_transform else transitions)
    return buffer


def make_wandb_logger(project: str = "agentlace", description: str = "serl_launcher", debug: bool = False,
                      entity: str | None = None, group: str | None = None, config: dict | None = None) -> WandBLogger:
    """SERL's helper: a logger with `log(data, step)` (offline when not logged in, off with debug)."""
    return WandBLogger(project, description, config=config, debug=debug, entity=entity, group=group)


def agent_spaces(observation_space: gym.Space, action_space: gym.spaces.Box) -> tuple:
    """The spaces `make_env` gives an env with these spaces, without making the env (a learner that
    cannot reach the robot builds its agent from them)."""
    if isinstance(observation_space, gym.spaces.Dict) and not _has_images(observation_space):
        observation_space = gym.spaces.flatten_space(observation_space)
    low, high = action_space.low, action_space.high
    if not (np.all(low == -1) and np.all(high == 1)):
        action_space = gym.spaces.Box(-1.0, 1.0, action_space.shape, action_space.dtype)
    return observation_space, action_space


def make_env(env_id: str, seed: int | None = None, **kwargs) -> gym.Env:
    """A gymnasium env ready for the agents: actions in [-1, 1], state-only dicts flattened to one vector.

    `env_id` is anything `gymnasium.make` takes, e.g. "franka_sim:PandaPickCube-v0" (imports the
    module that registers it). Dict observations made only of float vectors are flattened, as SERL
    does; observations with camera images stay dicts (the pixel agent encodes them).
    """
    env = gym.make(env_id, **kwargs)
    if not isinstance(env.action_space, gym.spaces.Box):
        raise ValueError(f"{env_id}: SAC needs a continuous (Box) action space, got {env.action_space}")
    low, high = env.action_space.low, env.action_space.high
    if not (np.all(low == -1) and np.all(high == 1)):
        env = gym.wrappers.RescaleAction(env, -1.0, 1.0)
    if isinstance(env.observation_space, gym.spaces.Dict) and not _has_images(env.observation_space):
        env = gym.wrappers.FlattenObservation(env)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def _has_images(space: gym.Space) -> bool:
    if isinstance(space, gym.spaces.Dict):
        return any(_has_images(s) for s in space.spaces.values())
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8
