"""Frozen config dataclasses <-> JSON, so a checkpoint can carry the configuration that built its agent."""
import dataclasses
import typing


def to_json(config) -> dict:
    """A (nested) config dataclass as plain JSON data (tuples become lists)."""
    return dataclasses.asdict(config)


def from_json(cls, data: dict):
    """Rebuild `cls` from `to_json` output; fields this version does not know are an error, not ignored."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {unknown} (saved by another version of serl-jax?)")
    return cls(**{key: _value(hints[key], value) for key, value in data.items()})


def _value(hint, value):
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value)
    if isinstance(value, list):
        return tuple(value)
    return value
