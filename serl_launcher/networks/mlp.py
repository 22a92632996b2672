"""Multi-layer perceptrons: a single one (the policy trunk) and an ensemble (the critics).

Layer order, as in SERL: Dense -> LayerNorm (optional) -> activation.
"""
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def default_init(scale: float = 1.0) -> Callable:
    """Glorot-uniform ("fan_avg"), SERL's default for every Dense layer."""
    return nn.initializers.variance_scaling(scale, "fan_avg", "uniform")


def _ensemble_init(scale: float = 1.0) -> Callable:
    """Glorot-uniform for a (members, in, out) kernel: each member is initialised independently."""
    return nn.initializers.variance_scaling(scale, "fan_avg", "uniform", in_axis=-2, out_axis=-1, batch_axis=(0,))


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float) -> jax.Array:
    """LayerNorm over the last axis, then `* scale + bias` (broadcast against x): flax's math, written out
    so that an ensemble can give each member its own scale and bias.

    (A hand-written gradient of this function measured 1.03x autodiff in the same run,
    benchmarks/layer_norm_gradient.py at commit e7738d6: not worth its code.)
    """
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.maximum(jnp.mean(jnp.square(x), axis=-1, keepdims=True) - jnp.square(mean), 0.0)
    return (x - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias


class MLP(nn.Module):
    hidden_dims: Sequence[int]
    activations: Callable[[jax.Array], jax.Array] = nn.tanh
    activate_final: bool = False
    use_layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, size in enumerate(self.hidden_dims):
            x = nn.Dense(size, kernel_init=default_init())(x)
            if i + 1 < len(self.hidden_dims) or self.activate_final:
                if self.use_layer_norm:
                    x = nn.LayerNorm(epsilon=1e-6)(x)
                x = self.activations(x)
        return x


class EnsembleDense(nn.Module):
    """`members` independent Dense layers evaluated together.

    Kernel shape (members, in, out). The input is either shared by all members (batch, in) or
    per member (members, batch, in); the output is (members, batch, out). Keeping the member axis
    explicit (rather than `nn.vmap`) lets the agent gather a subset of members' parameters, e.g.
    the 2 target critics REDQ actually uses out of 10.
    """

    members: int
    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", _ensemble_init(), (self.members, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.members, self.features))
        return ensemble_dense(x, kernel, bias)


def ensemble_dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    if x.ndim == 2:
        # Broadcast a shared input to every member: XLA then emits one batched matmul with a
        # members-major output. Contracting (batch, in) with the (members, in, out) kernel instead
        # makes it transpose a (batch, members * out) result and its gradient: update_high_utd was
        # ~20% slower that way.
        x = jnp.broadcast_to(x, (kernel.shape[0],) + x.shape)
    return jnp.matmul(x, kernel) + bias[:, None, :]


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the feature axis with a separate scale and bias per member."""

    members: int
    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (self.members, features))
        bias = self.param("bias", nn.initializers.zeros, (self.members, features))
        return layer_norm(x, scale[:, None, :], bias[:, None, :], self.epsilon)


class EnsembleMLP(nn.Module):
    """`members` MLPs with identical architecture and independent weights: (batch, in) -> (members, batch, out)."""

    members: int
    hidden_dims: Sequence[int]
    activations: Callable[[jax.Array], jax.Array] = nn.tanh
    activate_final: bool = False
    use_layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, size in enumerate(self.hidden_dims):
            x = EnsembleDense(self.members, size)(x)
            if i + 1 < len(self.hidden_dims) or self.activate_final:
                if self.use_layer_norm:
                    x = EnsembleLayerNorm(self.members)(x)
                x = self.activations(x)
        return x
