"""What one observation looks like (shapes, dtypes, nesting), and flattening state leaves into features.

`ObservationSpec` is hashable, so jitted functions and flax modules can hold it as a static field,
and it round-trips through JSON, so a checkpoint can say what its agent observes.
"""
import dataclasses
import json
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class ObservationSpec:
    """Shapes and dtypes of ONE observation (no batch axis): an array, or nested dicts of arrays.

    Stored as canonical JSON text: {"shape": [...], "dtype": "..."} for an array, a dict of those
    (keys sorted, as jax orders them) for a dict observation.
    """

    json_text: str

    @classmethod
    def of(cls, sample_observation) -> "ObservationSpec":
        return cls.from_json(_describe(sample_observation))

    @classmethod
    def from_json(cls, tree: dict) -> "ObservationSpec":
        _check(tree, "observation")
        return cls(json.dumps(tree, sort_keys=True))

    def to_json(self) -> dict:
        return json.loads(self.json_text)

    def leaves(self) -> Iterator[tuple[tuple[str, ...], tuple[int, ...], np.dtype]]:
        """(keys like ("state", "panda/tcp_pos"), shape, dtype) per array, in jax's flattening order."""
        yield from _leaves(self.to_json(), ())

    def zeros(self):
        """An observation of zeros with this spec (to build networks without an environment)."""
        return _zeros(self.to_json())

    def without(self, leaf_keys) -> "ObservationSpec | None":
        """The spec without the given leaves (e.g. the images, leaving proprioception); None if nothing is left."""
        remaining = drop_leaves(self.to_json(), set(leaf_keys), is_spec=True)
        return None if remaining is None else ObservationSpec.from_json(remaining)


def leaf_name(keys: tuple) -> str:
    """Display name of a leaf: its keys joined with "/" (keys may contain "/" themselves)."""
    return "/".join(keys) or "observation"


def get_leaf(tree, keys: tuple):
    for key in keys:
        tree = tree[key]
    return tree


def drop_leaves(tree, leaf_keys: set, prefix: tuple = (), is_spec: bool = False):
    """A copy of a (nested dict) observation or spec without the leaves at `leaf_keys`; None if empty."""
    if prefix in leaf_keys:
        return None
    if (is_spec and _is_leaf(tree)) or not isinstance(tree, dict):
        return tree
    kept = {key: drop_leaves(value, leaf_keys, prefix + (key,), is_spec) for key, value in tree.items()}
    kept = {key: value for key, value in kept.items() if value is not None}
    return kept or None


def flatten_leaves(spec: ObservationSpec, observation) -> jax.Array:
    """Every leaf of `observation` (a single one or a batch) as float32, concatenated into (*batch, features)."""
    leaves, treedef = jax.tree.flatten(observation)
    expected = jax.tree.structure(spec.zeros())
    if treedef != expected:
        raise ValueError(f"observation structure {treedef} differs from the agent's {expected}")
    specs = list(spec.leaves())
    first_rank = len(specs[0][1])
    batch_shape = jnp.shape(leaves[0])[: max(0, jnp.ndim(leaves[0]) - first_rank)]
    for (keys, shape, _), leaf in zip(specs, leaves):
        if jnp.shape(leaf) != batch_shape + shape:
            raise ValueError(f"observation {leaf_name(keys)} has shape {jnp.shape(leaf)}; the agent takes {shape} "
                             f"per observation{f' (batch {batch_shape})' if batch_shape else ''}")
    flat = [jnp.reshape(jnp.asarray(x, jnp.float32), batch_shape + (-1,)) for x in leaves]
    return flat[0] if len(flat) == 1 else jnp.concatenate(flat, axis=-1)


def is_image(shape: tuple, dtype: np.dtype) -> bool:
    """uint8 arrays of rank >= 2 are camera images (HxW[xC]); the state encoder refuses them."""
    return np.dtype(dtype) == np.uint8 and len(shape) >= 2


def _describe(observation):
    if isinstance(observation, dict):
        if not observation:
            raise ValueError("an observation dict must not be empty")
        return {str(k): _describe(v) for k, v in observation.items()}
    array = np.asarray(observation)
    return {"shape": list(array.shape), "dtype": array.dtype.name}


def _is_leaf(tree) -> bool:
    return isinstance(tree, dict) and set(tree) == {"shape", "dtype"} and isinstance(tree["shape"], list)


def _check(tree, path: str) -> None:
    if _is_leaf(tree):
        np.dtype(tree["dtype"])  # raises TypeError for an unknown dtype name
        if not all(isinstance(n, int) and n >= 0 for n in tree["shape"]):
            raise ValueError(f"{path}: bad shape {tree['shape']!r}")
        return
    if not isinstance(tree, dict) or not tree:
        raise ValueError(f"{path}: expected {{'shape', 'dtype'}} or a non-empty dict, got {tree!r:.200}")
    for key, value in tree.items():
        _check(value, f"{path}/{key}")


def _leaves(tree, prefix: tuple):
    if _is_leaf(tree):
        yield prefix, tuple(tree["shape"]), np.dtype(tree["dtype"])
        return
    for key in sorted(tree):
        yield from _leaves(tree[key], prefix + (key,))


def _zeros(tree):
    if _is_leaf(tree):
        return np.zeros(tree["shape"], tree["dtype"])
    return {key: _zeros(value) for key, value in tree.items()}
