"""Column-wise batches of transitions: a list of transition dicts <-> one dict of stacked arrays.

Why: sending N transitions as one array per field (leading axis N) is far cheaper
to encode, send and insert than N small dicts. Containers are dicts only; every
other node is a leaf and becomes a numpy array.
"""

from collections.abc import Mapping

import numpy as np


def stack(items: list):
    """Stack same-structured transitions into one pytree with a leading axis of len(items)."""
    first = items[0]
    if isinstance(first, Mapping):
        keys = set(first)
        for item in items:
            if not isinstance(item, Mapping) or set(item) != keys:
                raise ValueError(f"transitions differ in structure: keys {sorted(keys)} vs {item!r:.200}")
        return {key: stack([item[key] for item in items]) for key in first}
    return np.stack([np.asarray(item) for item in items])


def batch_length(tree) -> int:
    """Validate a stacked batch received from the wire and return its number of rows."""
    lengths = set()
    _collect_lengths(tree, "batch", lengths)
    if len(lengths) != 1:
        raise ValueError(f"batch fields have different numbers of rows: {sorted(lengths)}")
    return lengths.pop()


def _collect_lengths(tree, path: str, lengths: set):
    if isinstance(tree, dict):
        if not tree:
            raise ValueError(f"{path} is an empty dict")
        for key, value in tree.items():
            _collect_lengths(value, f"{path}.{key}", lengths)
    elif isinstance(tree, np.ndarray) and tree.ndim >= 1:
        lengths.add(tree.shape[0])
    else:
        raise ValueError(f"{path} must be a dict or an array with a leading batch axis, got {type(tree).__name__}")


def take(tree, index):
    """Row `index` (an int or a slice) of every field of a stacked batch."""
    if isinstance(tree, Mapping):
        return {key: take(value, index) for key, value in tree.items()}
    return tree[index]
