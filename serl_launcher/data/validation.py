"""Checks every transition before it enters a replay buffer, against the env's spaces.

Why: transitions arrive from the network and from files. One NaN reward, an action outside its
space or a mask of 7 is stored silently otherwise, and after the next update every parameter is
NaN. A refused batch raises InvalidTransitions naming the field, the problem and the rows; the
transport turns it into an error reply to the actor that sent it.
"""
import gymnasium as gym
import numpy as np

# Source dtypes a float field accepts (cast to float32). Complex numbers have no order, and uint64
# values above 2**53 do not survive the cast: both are refused.
_FLOAT_SOURCES = {"b", "i", "u", "f"}
_ACTION_TOLERANCE = 1e-5  # float32 rounding of actions computed exactly at a bound


class InvalidTransitions(ValueError):
    """A batch of transitions that does not fit the buffer's spaces; the message names field and rows."""


class TransitionValidator:
    """Validates and converts column-wise batches {observations, next_observations, actions, rewards, masks, dones}."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        if not isinstance(action_space, gym.spaces.Box):
            raise TypeError(f"actions must be a Box space, got {action_space}")
        self._spaces = {"observations": observation_space, "next_observations": observation_space,
                        "actions": action_space}
        self._action_low = np.asarray(action_space.low, np.float64) - _ACTION_TOLERANCE
        self._action_high = np.asarray(action_space.high, np.float64) + _ACTION_TOLERANCE

    def __call__(self, columns) -> tuple[dict, int]:
        """(columns converted to the storage dtypes, number of rows); raises InvalidTransitions."""
        if not isinstance(columns, dict) or set(columns) != set(self._spaces) | {"rewards", "masks", "dones"}:
            got = sorted(columns) if isinstance(columns, dict) else type(columns).__name__
            raise InvalidTransitions(f"transition keys {got} != expected "
                                     f"{sorted(set(self._spaces) | {'rewards', 'masks', 'dones'})}")
        rewards = np.asarray(columns["rewards"])
        if rewards.ndim != 1:
            raise InvalidTransitions(f"rewards: expected shape (N,), got {rewards.shape}")
        n = len(rewards)
        out = {name: _space_column(name, space, columns[name], n) for name, space in self._spaces.items()}
        actions = out["actions"]
        outside = np.any((actions < self._action_low) | (actions > self._action_high), axis=tuple(range(1, actions.ndim)))
        _refuse_rows("actions", outside, f"outside the action space [{_bounds(self._spaces['actions'])}]")
        out["rewards"] = _float_column("rewards", columns["rewards"], (n,))
        out["masks"] = _float_column("masks", columns["masks"], (n,))
        _refuse_rows("masks", (out["masks"] != 0) & (out["masks"] != 1), "not 0 or 1")
        out["dones"] = _bool_column("dones", columns["dones"], n)
        return out, n


def _space_column(path: str, space: gym.Space, value, n: int):
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(value, dict) or set(value) != set(space.spaces):
            got = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise InvalidTransitions(f"{path}: keys {got} != expected {sorted(space.spaces)}")
        return {key: _space_column(f"{path}/{key}", sub, value[key], n) for key, sub in space.spaces.items()}
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"{path}: only Box and Dict spaces are supported, got {space}")
    shape = (n, *space.shape)
    if np.issubdtype(space.dtype, np.floating):
        return _float_column(path, value, shape)
    array = np.asarray(value)
    _check_shape(path, array, shape)
    if array.dtype == space.dtype:
        return array
    if array.dtype.kind not in "iub":
        raise InvalidTransitions(f"{path}: dtype {array.dtype} cannot be stored as {space.dtype}")
    info = np.iinfo(space.dtype)
    _refuse_rows(path, _rows_any((array < info.min) | (array > info.max)), f"out of range for {space.dtype}")
    return array.astype(space.dtype)


def _float_column(path: str, value, shape: tuple) -> np.ndarray:
    array = np.asarray(value)
    _check_shape(path, array, shape)
    if array.dtype.kind not in _FLOAT_SOURCES or array.dtype == np.uint64:
        raise InvalidTransitions(f"{path}: dtype {array.dtype} is not a real number type")
    array = array.astype(np.float32)
    _refuse_rows(path, _rows_any(~np.isfinite(array)), "not finite (NaN or inf, also after the cast to float32)")
    return array


def _bool_column(path: str, value, n: int) -> np.ndarray:
    array = np.asarray(value)
    _check_shape(path, array, (n,))
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind not in "iuf":
        raise InvalidTransitions(f"{path}: dtype {array.dtype} is not boolean")
    _refuse_rows(path, (array != 0) & (array != 1), "not a boolean (0 or 1)")
    return array.astype(bool)


def _check_shape(path: str, array: np.ndarray, shape: tuple) -> None:
    if array.shape != shape:
        raise InvalidTransitions(f"{path}: got shape {array.shape}, expected {shape}")


def _rows_any(bad: np.ndarray) -> np.ndarray:
    return bad.reshape(len(bad), -1).any(axis=1) if bad.ndim > 1 else bad


def _refuse_rows(path: str, bad_rows: np.ndarray, problem: str) -> None:
    if bad_rows.any():
        rows = np.flatnonzero(bad_rows)
        shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
        raise InvalidTransitions(f"{path}: {len(rows)} of {len(bad_rows)} rows {problem} (rows {shown})")


def _bounds(space: gym.spaces.Box) -> str:
    low, high = np.unique(space.low), np.unique(space.high)
    return f"{low[0]:g}, {high[0]:g}" if len(low) == len(high) == 1 else "per-dimension bounds"


def stack_rows(transitions: list, path: str = ""):
    """A list of transitions (dicts) stacked column-wise; rows that differ in keys or shapes raise
    InvalidTransitions naming the field."""
    first = transitions[0]
    if isinstance(first, dict):
        for row in transitions:
            if not isinstance(row, dict) or set(row) != set(first):
                raise InvalidTransitions(f"{path or 'transition'}: rows differ in keys")
        return {key: stack_rows([row[key] for row in transitions], f"{path}/{key}" if path else key) for key in first}
    arrays = [np.asarray(row) for row in transitions]
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1:
        raise InvalidTransitions(f"{path}: got shape {sorted(shapes)[-1]} in one row and {sorted(shapes)[0]} in another")
    return np.stack(arrays)
