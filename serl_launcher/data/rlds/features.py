"""TFDS feature specs (`features.json`) and how one episode's values sit in a tf.train.Example.

TFDS stores an RLDS episode as ONE Example: every step field becomes the key `steps/<path>` with its
values concatenated over the steps, while episode-level fields (RLDS "episode metadata") keep their
own path and hold a single value. Floats live in a float_list (float32), ints and bools in an
int64_list, images as one PNG per step and text as one UTF-8 string per element in a bytes_list.
Only features.json says which per-step shape and dtype undo that, so the spec and the codec share
this module.

Decoding trusts nothing in a file: shapes in features.json must be small enough to compute with,
an image must carry the signature of its declared format and its header the declared size before
any pixel is decoded (PIL decodes only PNG or JPEG here, never BMP, TIFF or EPS via Ghostscript), and
a zlib tensor is inflated only up to its declared size.
"""
import dataclasses
import io
import zlib
from typing import Mapping

import numpy as np
from PIL import Image

from serl_launcher.data.rlds.errors import RLDSError

STEPS = "steps"
# In-memory episodes hold step fields at the top and episode-level fields (every top-level TFDS
# feature besides "steps", i.e. rlds_base's `episode_metadata_info`) under this key.
EPISODE_METADATA = "episode_metadata"
IMAGE_CHANNELS = (1, 3, 4)
_PKG = "tensorflow_datasets.core.features."
_TENSOR = _PKG + "tensor_feature.Tensor"
_IMAGE = _PKG + "image_feature.Image"
_TEXT = _PKG + "text_feature.Text"
_DICT = _PKG + "features_dict.FeaturesDict"
_DATASET = _PKG + "dataset_feature.Dataset"
_TENSOR_ENCODINGS = ("none", "bytes", "zlib")
# Image formats we decode: TFDS's encodingFormat -> (PIL format, file signature).
_IMAGE_FORMATS = {"png": ("PNG", b"\x89PNG\r\n\x1a\n"), "jpeg": ("JPEG", b"\xff\xd8\xff")}
MAX_STEP_BYTES = 1 << 31  # one field of one step, as declared in features.json
MAX_IMAGE_PIXELS = 1 << 25  # an image whose features.json size is dynamic (-1)


@dataclasses.dataclass(frozen=True)
class Feature:
    """One leaf of features.json: the shape and dtype of ONE step's value and how it is stored.

    kind is "tensor", "image" or "text"; a -1 in shape is TFDS's None (images of varying size).
    encoding is "none", "bytes" or "zlib" for tensors and the file format for images.
    """

    kind: str
    shape: tuple
    dtype: np.dtype
    encoding: str = "none"

    @property
    def proto_list(self) -> str:
        """The Example list that holds this feature's values."""
        if self.kind == "tensor" and self.encoding == "none":
            return "float_list" if self.dtype.kind == "f" else "int64_list"
        return "bytes_list"

    @property
    def values_per_item(self) -> int:
        """How many list entries one step (or the one episode value) takes."""
        if self.kind == "image" or (self.kind == "tensor" and self.encoding != "none"):
            return 1
        return _product(self.shape)

    @property
    def step_bytes(self) -> int:
        """Bytes one step's value takes once decoded (dynamic image dimensions and text count as 0)."""
        if self.kind == "text" or -1 in self.shape:
            return 0
        return _product(self.shape) * self.dtype.itemsize


@dataclasses.dataclass(frozen=True)
class EpisodeSpec:
    """The features of one dataset as flat "/"-joined paths: step fields and episode-level fields."""

    steps: dict
    metadata: dict


def flatten(tree: Mapping, prefix: str = "") -> dict:
    """Nested dicts -> {"observation/image": leaf}: the paths used by Example keys and features.json."""
    flat = {}
    for key, value in tree.items():
        if "/" in str(key):
            raise RLDSError(f"key {key!r} under {prefix or 'the episode'!r}: '/' separates nested keys")
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def unflatten(flat: Mapping) -> dict:
    """Inverse of `flatten`."""
    tree = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def infer_feature(path: str, items: np.ndarray) -> Feature:
    """The feature for stacked values (axis 0 = steps): uint8 HxWxC arrays (C in 1, 3, 4) become PNG
    images, strings text, floats float32 (all an Example can hold), ints and bools keep their dtype."""
    shape, kind = items.shape[1:], items.dtype.kind
    if kind in "USO":
        if shape:
            raise RLDSError(f"{path}: text must be one string per step, got shape {shape}")
        return Feature("text", shape, np.dtype(object))
    if items.dtype == np.uint8 and len(shape) == 3 and shape[-1] in IMAGE_CHANNELS:
        return Feature("image", shape, items.dtype, "png")
    if kind == "f":
        return Feature("tensor", shape, np.dtype(np.float32))
    if kind in "iub":
        return Feature("tensor", shape, items.dtype)
    raise RLDSError(f"{path}: cannot store dtype {items.dtype} in a tf.train.Example")


def encode(feature: Feature, path: str, value, leading: tuple) -> tuple:
    """Checks `value` against the feature and returns `(values, kind)` for tfrecord's writer.

    leading is `(num_steps,)` for step fields and `()` for episode-level fields.
    """
    array = np.asarray(value)
    if array.shape != leading + feature.shape:
        raise RLDSError(
            f"{path}: shape {array.shape[len(leading):]} per step, but the dataset's features say {feature.shape}"
        )
    if feature.kind == "text":
        return [_text_bytes(path, s) for s in array.reshape(-1)], "byte"
    if feature.kind == "image":
        if array.dtype != feature.dtype:
            raise RLDSError(f"{path}: images must be {feature.dtype}, got {array.dtype}")
        return [_encode_png(image) for image in array.reshape((-1,) + feature.shape)], "byte"
    try:
        array = array.astype(feature.dtype, casting="same_kind")
    except TypeError as error:
        raise RLDSError(f"{path}: dtype {array.dtype} does not fit the dataset's {feature.dtype}") from error
    if feature.dtype.kind == "f":
        return array.reshape(-1), "float"
    return array.astype(np.int64).reshape(-1), "int"  # uint64 wraps exactly like TFDS's bitcast


def decode(feature: Feature, path: str, values, count: int) -> np.ndarray:
    """The inverse of `encode`: Example list values -> array of shape (count, *feature.shape)."""
    if count == 0:
        return np.zeros((0,) + tuple(max(d, 0) for d in feature.shape), feature.dtype)
    if feature.kind == "image":
        return np.stack([_decode_image(feature, path, data) for data in values])
    if feature.kind == "text":
        return np.array(list(values), dtype=object).reshape((count,) + feature.shape)
    if feature.encoding == "none":
        raw = np.asarray(values, dtype=np.float32 if feature.dtype.kind == "f" else np.int64)
        return raw.astype(feature.dtype).reshape((count,) + feature.shape)
    size = feature.step_bytes
    items = [_inflate(path, data, size) if feature.encoding == "zlib" else data for data in values]
    if any(len(data) != size for data in items):
        raise RLDSError(f"{path}: encoded tensor does not hold {feature.shape} {feature.dtype} ({size} bytes)")
    return np.stack([np.frombuffer(data, feature.dtype).reshape(feature.shape) for data in items])


def spec_to_json(spec: EpisodeSpec) -> dict:
    """features.json content, in the proto-JSON form TFDS 4.x writes and `builder_from_directory` reads."""
    top = _node_to_json(unflatten(spec.metadata))
    top["featuresDict"]["features"][STEPS] = {
        "pythonClassName": _DATASET,
        "sequence": {"feature": _node_to_json(unflatten(spec.steps)), "length": "-1"},
    }
    return top


def spec_from_json(content: Mapping) -> EpisodeSpec:
    """Parses features.json by its keys ("tensor", "image", ...), so TFDS subclasses such as Scalar load too."""
    top = dict(_children(content, ""))
    steps = top.pop(STEPS, None)
    if steps is None or "sequence" not in steps:
        raise RLDSError("no 'steps' sequence feature: not an RLDS dataset")
    steps = _parse_children(_children(steps["sequence"]["feature"], STEPS), "")
    spec = EpisodeSpec(steps=steps, metadata=_parse_children(top, ""))
    if not spec.steps:
        raise RLDSError("the 'steps' feature has no fields")
    return spec


def _node_to_json(node) -> dict:
    if not isinstance(node, Feature):
        features = {key: _node_to_json(child) for key, child in node.items()}
        return {"pythonClassName": _DICT, "featuresDict": {"features": features}}
    shape = {"dimensions": [str(d) for d in node.shape]} if node.shape else {}
    if node.kind == "image":
        image = {"shape": shape, "dtype": node.dtype.name, "encodingFormat": node.encoding}
        return {"pythonClassName": _IMAGE, "image": image}
    if node.kind == "text":
        return {"pythonClassName": _TEXT, "text": {}}
    tensor = {"shape": shape, "dtype": node.dtype.name, "encoding": node.encoding}
    return {"pythonClassName": _TENSOR, "tensor": tensor}


def _children(node: Mapping, path: str) -> dict:
    if "featuresDict" not in node:
        raise RLDSError(f"feature {path or '(top level)'!r} is not a FeaturesDict")
    return node["featuresDict"].get("features", {})


def _parse_children(children: Mapping, prefix: str) -> dict:
    flat = {}
    for key, child in children.items():
        flat.update(_parse(child, f"{prefix}/{key}" if prefix else key))
    return flat


def _parse(node: Mapping, path: str) -> dict:
    if "featuresDict" in node:
        return _parse_children(_children(node, path), path)
    return {path: _parse_leaf(node, path)}


def _parse_leaf(node: Mapping, path: str) -> Feature:
    def dims(spec):
        return tuple(int(d) for d in spec.get("shape", {}).get("dimensions", []))

    if "tensor" in node:
        tensor, shape = node["tensor"], dims(node["tensor"])
        encoding = tensor.get("encoding", "none")
        if tensor["dtype"] == "string":
            return Feature("text", shape, np.dtype(object))
        if any(d < 0 for d in shape) or encoding not in _TENSOR_ENCODINGS:
            raise RLDSError(f"feature {path!r}: dynamic shape {shape} or encoding {encoding!r} is not supported")
        return _checked(Feature("tensor", shape, _numeric(path, tensor["dtype"]), encoding), path)
    if "image" in node:
        image = node["image"]
        shape, encoding = dims(image), image.get("encodingFormat", "png")
        if encoding not in _IMAGE_FORMATS or len(shape) != 3 or any(d == 0 or d < -1 for d in shape):
            raise RLDSError(f"feature {path!r}: image of shape {shape} in {encoding!r} is not supported "
                            f"(HxWxC, dimensions > 0 or -1; {sorted(_IMAGE_FORMATS)})")
        return _checked(Feature("image", shape, _numeric(path, image.get("dtype", "uint8")), encoding), path)
    if "text" in node:
        return Feature("text", (), np.dtype(object))
    if "classLabel" in node:
        return Feature("tensor", (), np.dtype(np.int64))
    raise RLDSError(f"feature {path!r} has unsupported type {node.get('pythonClassName', '?')}")


def _numeric(path: str, name: str) -> np.dtype:
    dtype = np.dtype(name)
    if dtype.kind not in "biuf":
        raise RLDSError(f"feature {path!r}: dtype {name!r} is not a number type")
    return dtype


def _checked(feature: Feature, path: str) -> Feature:
    if _product(abs(d) for d in feature.shape) * feature.dtype.itemsize > MAX_STEP_BYTES:
        raise RLDSError(f"feature {path!r}: shape {feature.shape} is over {MAX_STEP_BYTES} bytes per step")
    return feature


def _product(dims) -> int:
    """Exact product of dimensions (numpy's int64 product silently wraps)."""
    result = 1
    for d in dims:
        result *= int(d)
    return result


def _inflate(path: str, data: bytes, size: int) -> bytes:
    """zlib data that must inflate to exactly `size` bytes; never inflates more than size + 1."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, size + 1)
    except zlib.error as error:
        raise RLDSError(f"{path}: corrupt zlib data ({error})") from error
    if len(out) != size or not inflater.eof or inflater.unused_data:
        raise RLDSError(f"{path}: zlib data does not inflate to the declared {size} bytes")
    return out


def _text_bytes(path: str, text) -> bytes:
    if isinstance(text, str):
        return text.encode()
    if isinstance(text, bytes):
        return text
    raise RLDSError(f"{path}: expected text (str or bytes), got {type(text).__name__}")


def _encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode_image(feature: Feature, path: str, data: bytes) -> np.ndarray:
    pil_format, signature = _IMAGE_FORMATS[feature.encoding]
    if not bytes(data[: len(signature)]) == signature:
        raise RLDSError(f"{path}: not a {feature.encoding} image (its first bytes are {bytes(data[:8])!r})")
    height, width = feature.shape[:2]
    try:
        with Image.open(io.BytesIO(data), formats=[pil_format]) as image:
            if height not in (-1, image.height) or width not in (-1, image.width):
                raise RLDSError(f"{path}: image of {image.height}x{image.width} pixels, but the dataset's features "
                                f"say {feature.shape}")
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise RLDSError(f"{path}: image of {image.height}x{image.width} pixels, over {MAX_IMAGE_PIXELS}")
            array = np.asarray(image)
    except RLDSError:
        raise
    except Exception as error:  # PIL raises many types on bad data (OSError, ValueError, SyntaxError, bombs...)
        raise RLDSError(f"{path}: undecodable {feature.encoding} image ({type(error).__name__}: {error})") from error
    if array.ndim == 2:
        array = array[..., None]
    if len(array.shape) != len(feature.shape) or any(d not in (-1, a) for d, a in zip(feature.shape, array.shape)):
        raise RLDSError(f"{path}: image of shape {array.shape}, but the dataset's features say {feature.shape}")
    return array.astype(feature.dtype, copy=False)
