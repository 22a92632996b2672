"""Pretrained ResNet-10 backbone weights, stored safely: flax's msgpack format, which holds only arrays.

Nothing can be downloaded here, so weights come from a local file:
    save_backbone(path, params)    write a backbone's parameters (e.g. from a trained agent)
    load_backbone(path)            read them back (the "resnet-pretrained" encoder does this)

SERL distributes its ImageNet ResNet-10 as a pickle: `serl_launcher.vision.convert_serl_weights`
converts one you trust, explicitly (nothing here ever unpickles).
"""
import flax.serialization
import jax
import numpy as np


def save_backbone(path: str, params) -> None:
    with open(path, "wb") as file:
        file.write(flax.serialization.msgpack_serialize(plain_tree(params)))


def load_backbone(path: str) -> dict:
    with open(path, "rb") as file:
        return flax.serialization.msgpack_restore(file.read())


def insert_backbone(encoder_params: dict, backbone: dict, where: str) -> dict:
    """`encoder_params` (an ImageStateEncoder's) with every camera's ResNet backbone replaced by `backbone`.

    Shapes must match exactly; a mismatch names the parameter.
    """
    result = dict(encoder_params)
    cameras = [name for name in encoder_params if name.startswith("image_")]
    for camera in cameras:
        expected = encoder_params[camera]["backbone"]
        _check_same_structure(expected, backbone, f"{where}: {camera}/backbone")
        result[camera] = {**encoder_params[camera], "backbone": jax.tree.map(np.asarray, backbone)}
    return result


def plain_tree(tree):
    """Nested mappings of arrays as plain dicts of numpy arrays (what msgpack stores)."""
    if hasattr(tree, "items"):
        return {str(key): plain_tree(value) for key, value in tree.items()}
    return np.asarray(tree)


def _check_same_structure(expected, got, where: str) -> None:
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(expected) != set(got):
            raise ValueError(f"{where}: keys {sorted(got) if isinstance(got, dict) else got!r} != {sorted(expected)}")
        for key in expected:
            _check_same_structure(expected[key], got[key], f"{where}/{key}")
    elif np.shape(expected) != np.shape(got):
        raise ValueError(f"{where}: shape {np.shape(got)} != {np.shape(expected)}")
