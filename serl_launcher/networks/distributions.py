"""A tanh-squashed diagonal Gaussian, the SAC policy's distribution.

Written here instead of using distrax, whose current release needs tfp-nightly with this jax.
The log-density follows the change of variables a = tanh(u):
    log p(a) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2).
"""
import math

import flax.struct
import jax
import jax.numpy as jnp

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _log_abs_det_tanh_jacobian(u: jax.Array) -> jax.Array:
    """log(1 - tanh(u)^2), computed stably as 2 * (log 2 - u - softplus(-2u))."""
    return 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))


class TanhNormal(flax.struct.PyTreeNode):
    """Diagonal Gaussian over pre-squash actions u, pushed through tanh. Event axis: the last one."""

    mean: jax.Array
    std: jax.Array

    def _normal_log_prob(self, u: jax.Array) -> jax.Array:
        z = (u - self.mean) / self.std
        return jnp.sum(-0.5 * z**2 - jnp.log(self.std) - _LOG_SQRT_2PI, axis=-1)

    def sample_and_log_prob(self, seed: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Reparameterised sample (gradients flow to mean and std) and its log-density."""
        u = self.mean + self.std * jax.random.normal(seed, self.mean.shape, self.mean.dtype)
        log_prob = self._normal_log_prob(u) - jnp.sum(_log_abs_det_tanh_jacobian(u), axis=-1)
        return jnp.tanh(u), log_prob

    def sample(self, seed: jax.Array) -> jax.Array:
        return jnp.tanh(self.mean + self.std * jax.random.normal(seed, self.mean.shape, self.mean.dtype))

    def log_prob(self, actions: jax.Array, eps: float = 1e-6) -> jax.Array:
        """Log-density of given squashed actions (clipped inside (-1, 1) so that atanh stays finite)."""
        u = jnp.arctanh(jnp.clip(actions, -1.0 + eps, 1.0 - eps))
        return self._normal_log_prob(u) - jnp.sum(_log_abs_det_tanh_jacobian(u), axis=-1)

    def mode(self) -> jax.Array:
        """The deterministic action used for evaluation: tanh of the Gaussian's mean."""
        return jnp.tanh(self.mean)
