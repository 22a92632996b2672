"""Safe serialisation of pytrees for the wire: msgpack, with numpy arrays as raw bytes.

Why not pickle (what agentlace uses): unpickling runs code chosen by whoever can
reach the port. Decoding here can only produce plain data: None, bool, int,
float, str, bytes, lists, str-keyed dicts and numpy arrays of numeric dtypes,
each array checked against its declared dtype and shape (msgpack timestamps
and bytes map keys are refused).

Why the skeleton is bounded: msgpack turns one byte into a Python object of up
to ~72 bytes (an empty list or map), so a few MB of empty containers would cost
the learner hundreds of MB. The skeleton may be at most
limits.MAX_SKELETON_BYTES and hold one container per
limits.BYTES_PER_CONTAINER of its bytes, checked while decoding, so decoding
never costs more than a few tens of times that bound. Array data is copied once.

Layout of one message: a 4-byte little-endian length, the msgpack "skeleton"
(arrays replaced by an extension holding dtype and shape), then the raw bytes of
the arrays in skeleton order. Array data is copied once, when the frame is
joined, instead of into each msgpack extension and again into the packer.

Encoding accepts any Mapping (e.g. flax FrozenDict) as a dict, tuples as lists,
and anything with `__array__` (jax arrays) as a numpy array. Numpy scalars come
back as numpy scalars of the same dtype, so params round-trip bit-exactly.
"""

import struct
from collections.abc import Mapping

import msgpack
import numpy as np

from serl_launcher.transport import limits
from serl_launcher.transport.errors import DecodeError, MessageTooLarge

_ARRAY_EXT = 1
_SCALAR_FLAG = 1
_MAX_NDIM = 32
_MAX_EXT_BYTES = 3 + 255 + 1 + 8 * _MAX_NDIM  # the largest array header
_TOO_MANY_CONTAINERS = f"more than one list or map per {limits.BYTES_PER_CONTAINER} bytes of non-array data"
_LENGTH = struct.Struct("<I")
_DTYPE_NAMES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
_DTYPES = {name: np.dtype(name) for name in _DTYPE_NAMES}
try:  # bfloat16 params (jax mixed precision); ml_dtypes ships with jax.
    import ml_dtypes

    _DTYPES["bfloat16"] = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - jax is a dependency of the project
    pass


def encode(obj) -> bytes:
    """Serialise a pytree; raises TypeError for anything that is not plain data or an array,
    MessageTooLarge when its skeleton exceeds what the peer's decode accepts."""
    buffers = []
    skeleton = msgpack.packb(obj, default=lambda value: _encode_special(value, buffers), use_bin_type=True)
    if len(skeleton) > limits.MAX_SKELETON_BYTES:
        raise MessageTooLarge(
            f"{len(skeleton)} bytes of non-array data (lists, maps, numbers, strings) > "
            f"{limits.MAX_SKELETON_BYTES}; send large data as numpy arrays"
        )
    return b"".join([_LENGTH.pack(len(skeleton)), skeleton, *buffers])


def decode(data) -> object:
    """Parse a message (bytes or buffer) from a socket; raises DecodeError for anything malformed or unsafe."""
    view = memoryview(data).cast("B")
    if len(view) < _LENGTH.size or _LENGTH.unpack_from(view)[0] > len(view) - _LENGTH.size:
        raise DecodeError(f"message of {len(view)} bytes is too short for its declared layout")
    size = _LENGTH.unpack_from(view)[0]
    if size > limits.MAX_SKELETON_BYTES:
        raise DecodeError(f"{size} bytes of non-array data > {limits.MAX_SKELETON_BYTES}")
    end = _LENGTH.size + size
    reader = _Reader(view, end, max_containers=size // limits.BYTES_PER_CONTAINER + 16)
    try:
        obj = msgpack.unpackb(
            view[_LENGTH.size : end],
            ext_hook=reader.read_array,
            list_hook=reader.check_list,
            object_hook=reader.check_map,
            raw=False,
            strict_map_key=True,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size,
            max_ext_len=_MAX_EXT_BYTES,
        )
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises many types (ValueError, StackError, TypeError...)
        raise DecodeError(f"malformed message: {type(exc).__name__}: {limits.cut(str(exc), 200)}") from None
    if isinstance(obj, msgpack.Timestamp):
        raise DecodeError("msgpack timestamps are not accepted")
    if reader.offset != len(view):
        raise DecodeError(f"{len(view) - reader.offset} bytes after the last array")
    return obj


def _encode_special(obj, buffers: list):
    if isinstance(obj, np.ndarray):
        return _array_ext(obj, 0, buffers)
    if isinstance(obj, np.generic):
        return _array_ext(np.asarray(obj), _SCALAR_FLAG, buffers)
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "__array__"):
        return _array_ext(np.asarray(obj), 0, buffers)
    raise TypeError(f"cannot send a {type(obj).__name__}: only dicts, lists, scalars, str, bytes and arrays")


def _array_ext(arr: np.ndarray, flags: int, buffers: list) -> msgpack.ExtType:
    name = arr.dtype.name
    if name not in _DTYPES or not arr.dtype.isnative:
        raise TypeError(f"cannot send an array of dtype {arr.dtype.str}; supported: {sorted(_DTYPES)}")
    buffers.append(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
    return msgpack.ExtType(
        _ARRAY_EXT, struct.pack(f"<BB{len(name)}sB{arr.ndim}Q", flags, len(name), name.encode(), arr.ndim, *arr.shape)
    )


class _Reader:
    """msgpack hooks: take each array's bytes, in order, from the data section of the message,
    and check every list and map (count, key and element types) as msgpack builds it."""

    def __init__(self, view: memoryview, offset: int, max_containers: int):
        self._view = view
        self.offset = offset
        self._containers_left = max_containers

    def check_list(self, items: list) -> list:
        self._containers_left -= 1
        if self._containers_left < 0:
            raise DecodeError(_TOO_MANY_CONTAINERS)
        if items and msgpack.Timestamp in set(map(type, items)):
            raise DecodeError("msgpack timestamps are not accepted")
        return items

    def check_map(self, mapping: dict) -> dict:
        self._containers_left -= 1
        if self._containers_left < 0:
            raise DecodeError(_TOO_MANY_CONTAINERS)
        if mapping and not set(map(type, mapping)) <= {str}:
            raise DecodeError("map keys must be str")
        if mapping and msgpack.Timestamp in set(map(type, mapping.values())):
            raise DecodeError("msgpack timestamps are not accepted")
        return mapping

    def read_array(self, code: int, header: bytes):
        if code != _ARRAY_EXT:
            raise DecodeError(f"unknown msgpack extension type {code}")
        try:
            flags, name_len = struct.unpack_from("<BB", header)
            name = header[2 : 2 + name_len].decode("ascii")
            (ndim,) = struct.unpack_from("<B", header, 2 + name_len)
            if flags & ~_SCALAR_FLAG or ndim > _MAX_NDIM:
                raise DecodeError(f"bad array header (flags {flags}, {ndim} dimensions, max {_MAX_NDIM})")
            shape = struct.unpack_from(f"<{ndim}Q", header, 3 + name_len)
        except (struct.error, UnicodeDecodeError) as exc:
            raise DecodeError(f"truncated array header: {exc}") from None
        if len(header) != 3 + name_len + 8 * ndim:
            raise DecodeError("array header has trailing bytes")
        dtype = _DTYPES.get(name)
        if dtype is None:
            raise DecodeError(f"array dtype {name!r} is not allowed")
        count = int(np.prod(shape, dtype=object))
        nbytes = count * dtype.itemsize
        if nbytes > len(self._view) - self.offset:
            raise DecodeError(f"array of shape {shape} and dtype {name} needs {nbytes} bytes, message has fewer left")
        arr = np.frombuffer(self._view, dtype=dtype, count=count, offset=self.offset).reshape(shape).copy()
        self.offset += nbytes
        if dtype == np.bool_ and count and arr.view(np.uint8).max() > 1:
            raise DecodeError("bool array holds bytes other than 0 and 1")
        return arr[()] if flags and ndim == 0 else arr
