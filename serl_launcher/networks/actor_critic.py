"""The SAC networks: a tanh-Gaussian policy, an ensemble of Q-functions, and the temperature.

Policy and critic each start with an observation encoder (`networks.encoders`); the critic's is
shared by all its ensemble members. Parameter trees: policy {"encoder"?, "network", "mean",
"log_std"}, critic {"encoder"?, "trunk", "head"} (an encoder without parameters has no entry).
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from serl_launcher.networks.distributions import TanhNormal
from serl_launcher.networks.mlp import MLP, EnsembleMLP, default_init

ENCODER = "encoder"


class Policy(nn.Module):
    """observations -> TanhNormal over actions (..., action_dim), std = clip(exp(log_std)).

    stop_encoder_gradient: the actor's loss does not train the encoder (DrQ: the critic's loss does).
    """

    encoder: nn.Module
    network: MLP
    action_dim: int
    std_min: float = 1e-5
    std_max: float = 5.0
    stop_encoder_gradient: bool = False

    @nn.compact
    def __call__(self, observations) -> TanhNormal:
        features = self.encoder(observations)
        if self.stop_encoder_gradient:
            features = jax.lax.stop_gradient(features)
        h = self.network(features)
        mean = nn.Dense(self.action_dim, kernel_init=default_init(), name="mean")(h)
        log_std = nn.Dense(self.action_dim, kernel_init=default_init(), name="log_std")(h)
        std = jnp.clip(jnp.exp(log_std), self.std_min, self.std_max)
        return TanhNormal(mean, std)


class EnsembleCritic(nn.Module):
    """(observations, actions (B, a)) -> Q-values (members, B); one encoder shared by the members.

    Applied with a subset of members' parameters (`select_members`) it evaluates just those members.
    """

    encoder: nn.Module
    members: int
    hidden_dims: Sequence[int]
    activations: object = nn.tanh
    use_layer_norm: bool = True

    def setup(self):
        self.trunk = EnsembleMLP(self.members, self.hidden_dims, self.activations, activate_final=True,
                                 use_layer_norm=self.use_layer_norm)
        self.head = EnsembleMLP(self.members, (1,))

    def __call__(self, observations, actions: jax.Array) -> jax.Array:
        return self.q_values(self.encode(observations), actions)

    def encode(self, observations) -> jax.Array:
        return self.encoder(observations)

    def q_values(self, features: jax.Array, actions: jax.Array) -> jax.Array:
        """Q-values from already encoded observations (the actor loss encodes once, then chunks)."""
        return self.head(self.trunk(jnp.concatenate([features, actions], axis=-1)))[..., 0]


def select_members(critic_params: dict, members) -> dict:
    """The critic parameters of the given ensemble members (indices or a slice); the shared encoder stays whole."""
    return {name: tree if name == ENCODER else jax.tree.map(lambda p: p[members], tree)
            for name, tree in critic_params.items()}


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
