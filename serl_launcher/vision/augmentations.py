"""DrQ's image augmentation: a random shift of up to `pad` pixels, different for every sample.

Each image is edge-padded by `pad` pixels and cropped back to its size at a random offset: the
content moves by at most `pad` pixels in each direction. Runs inside the jitted update.
"""
import jax
import jax.numpy as jnp


def random_shift(images: jax.Array, key: jax.Array, pad: int = 4) -> jax.Array:
    """(B, ..., H, W, C) uint8 or float -> same shape; one random (dy, dx) in [0, 2 * pad] per sample,
    applied alike to every frame of a stack (axes between B and H)."""
    batch = images.shape[0]
    height, width = images.shape[-3], images.shape[-2]
    padding = [(0, 0)] * (images.ndim - 3) + [(pad, pad), (pad, pad), (0, 0)]
    padded = jnp.pad(images, padding, mode="edge")
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * pad + 1)

    def crop(image, offset):
        start = (0,) * (image.ndim - 3) + (offset[0], offset[1], 0)
        return jax.lax.dynamic_slice(image, start, image.shape[:-3] + (height, width, image.shape[-1]))

    return jax.vmap(crop)(padded, offsets)
