"""One-call constructors with SERL's defaults, so example scripts stay short."""
import flax.linen as nn
import gymnasium as gym
import jax
import numpy as np

from serl_launcher.agents.continuous.sac import SACAgent
from serl_launcher.transport import TrainerConfig

# Requests actors make to the learner: evaluation / episode statistics, and "may I keep acting?".
REQUEST_TYPES = ["send-stats", "learner-status"]


def make_sac_agent(seed: int, sample_obs, sample_action, discount: float = 0.99,
                   critic_ensemble_size: int = 10, critic_subsample_size: int | None = 2,
                   hidden_dims=(256, 256)) -> SACAgent:
    """SERL's state-based SAC: [256, 256] tanh MLPs with LayerNorm, REDQ ensemble 10 / subsample 2, alpha0 = 1e-2.

    Plain SAC: `critic_ensemble_size=2, critic_subsample_size=None`.
    """
    network_kwargs = {"activations": nn.tanh, "use_layer_norm": True, "hidden_dims": list(hidden_dims)}
    return SACAgent.create_states(
        jax.random.PRNGKey(seed),
        sample_obs,
        sample_action,
        policy_kwargs={"tanh_squash_distribution": True, "std_parameterization": "exp", "std_min": 1e-5, "std_max": 5.0},
        critic_network_kwargs=dict(network_kwargs),
        policy_network_kwargs=dict(network_kwargs),
        temperature_init=1e-2,
        discount=discount,
        backup_entropy=False,
        critic_ensemble_size=critic_ensemble_size,
        critic_subsample_size=critic_subsample_size,
    )


def make_trainer_config(port_number: int = 5488, broadcast_port: int = 5489) -> TrainerConfig:
    """The transport configuration learner and actors must share (same call on both sides)."""
    return TrainerConfig(port_number=port_number, broadcast_port=broadcast_port, request_types=list(REQUEST_TYPES))


def make_env(env_id: str, seed: int | None = None, **kwargs) -> gym.Env:
    """A gymnasium env ready for the SAC agent: actions in [-1, 1], state dicts flattened to one vector.

    Dict observations made only of float vectors (PandaPickCube-v0's) are flattened, as SERL does;
    observations with images stay dicts (the agent and replay buffer take nested dicts).
    """
    if env_id.startswith("Panda"):
        import franka_sim  # noqa: F401  (registers the Panda environments)
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
