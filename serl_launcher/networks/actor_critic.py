"""The SAC networks: a tanh-Gaussian policy, an ensemble of Q-functions, and the temperature."""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from serl_launcher.networks.distributions import TanhNormal
from serl_launcher.networks.mlp import MLP, EnsembleMLP, default_init


class Policy(nn.Module):
    """obs features (..., d) -> TanhNormal over actions (..., action_dim), std = clip(exp(log_std))."""

    network: MLP
    action_dim: int
    std_min: float = 1e-5
    std_max: float = 5.0

    @nn.compact
    def __call__(self, features: jax.Array) -> TanhNormal:
        h = self.network(features)
        mean = nn.Dense(self.action_dim, kernel_init=default_init(), name="mean")(h)
        log_std = nn.Dense(self.action_dim, kernel_init=default_init(), name="log_std")(h)
        std = jnp.clip(jnp.exp(log_std), self.std_min, self.std_max)
        return TanhNormal(mean, std)


class EnsembleCritic(nn.Module):
    """(obs features (B, d), actions (B, a)) -> Q-values (members, B).

    Applied with a subset of members' parameters (sliced along axis 0) it evaluates just those members.
    """

    members: int
    hidden_dims: Sequence[int]
    activations: object = nn.tanh
    use_layer_norm: bool = True

    @nn.compact
    def __call__(self, features: jax.Array, actions: jax.Array) -> jax.Array:
        x = jnp.concatenate([features, actions], axis=-1)
        h = EnsembleMLP(self.members, self.hidden_dims, self.activations, activate_final=True,
                        use_layer_norm=self.use_layer_norm, name="trunk")(x)
        return EnsembleMLP(self.members, (1,), name="head")(h)[..., 0]


class Temperature(nn.Module):
    """SAC's entropy temperature as a Lagrange multiplier alpha = softplus(param) >= 0.

    Called with an entropy estimate it returns the Lagrangian alpha * (entropy - target): minimising
    it lowers alpha when the policy is more random than the target, and raises it otherwise.
    """

    initial_value: float = 1e-2

    @nn.compact
    def __call__(self, entropy: jax.Array | None = None, target_entropy: float | None = None) -> jax.Array:
        inverse_softplus = jnp.log(jnp.expm1(self.initial_value))
        param = self.param("lagrange", lambda _: jnp.asarray(inverse_softplus, jnp.float32))
        alpha = jax.nn.softplus(param)
        if entropy is None:
            return alpha
        return alpha * (entropy - target_entropy)
