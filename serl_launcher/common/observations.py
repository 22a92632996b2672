"""Flat feature vectors from flat or (nested) dict observations, with or without batch axes."""
import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ObservationLayout:
    """The structure of ONE observation (no batch axis): enough to flatten any batch of them.

    Hashable, so that jitted functions can take it as a static argument.
    """

    treedef: jax.tree_util.PyTreeDef
    leaf_ndims: tuple[int, ...]

    @classmethod
    def of(cls, sample_observation) -> "ObservationLayout":
        leaves, treedef = jax.tree.flatten(sample_observation)
        return cls(treedef, tuple(int(jnp.ndim(x)) for x in leaves))

    def flatten(self, observation) -> jax.Array:
        """Concatenate every leaf (dict keys sorted, as jax orders them) into (*batch, features)."""
        leaves, treedef = jax.tree.flatten(observation)
        if treedef != self.treedef:
            raise ValueError(f"observation structure {treedef} differs from the agent's {self.treedef}")
        first = leaves[0]
        batch_shape = jnp.shape(first)[: jnp.ndim(first) - self.leaf_ndims[0]]
        flat = [jnp.reshape(jnp.asarray(x, jnp.float32), batch_shape + (-1,)) for x in leaves]
        return flat[0] if len(flat) == 1 else jnp.concatenate(flat, axis=-1)
