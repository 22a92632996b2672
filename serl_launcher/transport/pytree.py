"""Column-wise batches of transitions: a list of transition dicts <-> one dict of stacked arrays.

Why: sending N transitions as one array per field (leading axis N) is far cheaper
to encode, send and insert than N small dicts. Containers are dicts only; every
other node is a leaf and becomes a numpy array.
"""

from collections.abc import Mapping

import numpy as np

from serl_launcher.transport import limits


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
    """Validate a stacked batch received from the wire and return its number of rows.

    Why the bounds: a store without insert_stacked gets the rows one by one, so
    arrays of shape (10**9, 0) (a 135-byte message) would loop 10**9 times. Rows
    must hold at least one byte (so there are never more rows than message bytes)
    and be at most limits.MAX_BATCH_ROWS; nesting is at most limits.MAX_DEPTH.
    """
    lengths, row_bytes = set(), []
    _collect(tree, "batch", 0, lengths, row_bytes)
    if len(lengths) != 1:
        raise ValueError(f"batch fields have different numbers of rows: {sorted(lengths)[:8]}")
    rows = lengths.pop()
    if not 1 <= rows <= limits.MAX_BATCH_ROWS:
        raise ValueError(f"a batch must have 1..{limits.MAX_BATCH_ROWS} rows, got {rows}")
    if not sum(row_bytes):
        raise ValueError("batch rows hold no data (every field has zero size per row)")
    return rows


def _collect(tree, path: str, depth: int, lengths: set, row_bytes: list):
    if depth > limits.MAX_DEPTH:
        raise ValueError(f"batch nests deeper than {limits.MAX_DEPTH} levels")
    if isinstance(tree, dict):
        if not tree:
            raise ValueError(f"{limits.cut(path, 200)} is an empty dict")
        for key, value in tree.items():
            _collect(value, f"{path}.{key}", depth + 1, lengths, row_bytes)
    elif isinstance(tree, np.ndarray) and tree.ndim >= 1:
        lengths.add(tree.shape[0])
        row_bytes.append(tree[:1].nbytes)
    else:
        raise ValueError(
            f"{limits.cut(path, 200)} must be a dict or an array with a leading batch axis, got {type(tree).__name__}"
        )


def take(tree, index):
    """Row `index` (an int or a slice) of every field of a stacked batch."""
    if isinstance(tree, Mapping):
        return {key: take(value, index) for key, value in tree.items()}
    return tree[index]
