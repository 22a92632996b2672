"""One-call constructors with SERL's defaults, so example scripts stay short."""
import flax.linen as nn
import jax

from serl_launcher.agents.continuous.sac import SACAgent


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
