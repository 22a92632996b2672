"""Observation encoders: the first stage of the policy and of the critic (RLPD's PixelMultiplexer idea).

An encoder turns one observation (or a batch) into a feature vector. Keeping it inside the networks,
rather than flattening observations before them, is what lets the same agent code learn from state
vectors (`StateEncoder`, no parameters) or camera images (`ImageStateEncoder`, trained).
"""
import dataclasses
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from serl_launcher.common.observations import (ObservationSpec, drop_leaves, flatten_leaves, get_leaf, is_image,
                                               leaf_name)

IMAGE_ENCODERS = ("small", "resnet", "resnet-pretrained", "sac_ae")
ENCODER_KINDS = ("state",) + IMAGE_ENCODERS


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """How observations become features (saved with every checkpoint)."""

    kind: str = "state"
    """"state": every leaf flattened into one float vector (no images allowed). "small" (conv net from
    scratch), "resnet" (ResNet-10 from scratch), "resnet-pretrained" (ResNet-10 initialised from
    `pretrained_weights` and frozen) or "sac_ae" (SAC-AE's conv net: the policy has its own projection
    of the shared convolutions; DrQConfig.reconstruction adds the decoder): one encoder per camera,
    concatenated with the projected state."""
    image_keys: tuple[str, ...] = ()
    """Camera observations to encode, by leaf path ("images/front") or last key ("front"); (): all images."""
    bottleneck_dim: int = 256
    """Features per camera (SAC-AE: its latent, 50 in the paper)."""
    proprio_dim: int = 64
    """The non-image leaves are projected to this many features (Dense -> LayerNorm -> tanh)."""
    pretrained_weights: Optional[str] = None
    """A ResNet-10 backbone weights file (serl_launcher.vision.pretrained; msgpack, never pickle)."""

    def __post_init__(self):
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"encoder kind {self.kind!r} is not one of {ENCODER_KINDS}")
        if (self.kind == "resnet-pretrained") != (self.pretrained_weights is not None):
            raise ValueError("pretrained_weights is needed by, and only by, encoder kind 'resnet-pretrained'")


class StateEncoder(nn.Module):
    """Every leaf of the observation as float32, concatenated (dict keys sorted): no parameters."""

    spec: ObservationSpec

    def __call__(self, observations) -> jax.Array:
        return flatten_leaves(self.spec, observations)


class ImageStateEncoder(nn.Module):
    """One image encoder per camera (frame stacks folded into channels), plus the projected
    proprioceptive state, concatenated."""

    spec: ObservationSpec
    image_leaves: tuple  # leaf key tuples, in spec order
    config: EncoderConfig
    detach_trunk: bool = False  # SAC-AE's policy: no gradient into the shared convolutions

    @nn.compact
    def __call__(self, observations) -> jax.Array:
        from serl_launcher.vision.encoders import PixelAEEncoder, ResNetEncoder, SmallConvEncoder

        ranks = {keys: len(shape) for keys, shape, _ in self.spec.leaves()}
        features = []
        for keys in self.image_leaves:
            images = _fold_frame_stack(get_leaf(observations, keys), ranks[keys])
            name = "image_" + "_".join(keys).replace("/", "_")
            if self.config.kind == "small":
                encoder = SmallConvEncoder(bottleneck_dim=self.config.bottleneck_dim, name=name)
            elif self.config.kind == "sac_ae":
                encoder = PixelAEEncoder(self.config.bottleneck_dim, detach_trunk=self.detach_trunk, name=name)
            else:
                encoder = ResNetEncoder(bottleneck_dim=self.config.bottleneck_dim,
                                        freeze_backbone=self.config.kind == "resnet-pretrained", name=name)
            features.append(encoder(images))
        proprio_spec = self.spec.without(self.image_leaves)
        if proprio_spec is not None:
            state = flatten_leaves(proprio_spec, drop_leaves(observations, set(self.image_leaves)))
            if self.config.proprio_dim:
                state = nn.Dense(self.config.proprio_dim, name="proprio")(state)
                state = nn.tanh(nn.LayerNorm(name="proprio_norm")(state))
            features.append(state)
        return jnp.concatenate(features, axis=-1)


def _fold_frame_stack(images: jax.Array, rank: int) -> jax.Array:
    """(..., S, H, W, C) stacked frames -> (..., H, W, S * C); (..., H, W, C) unchanged."""
    if rank == 3:
        return images
    if rank != 4:
        raise ValueError(f"images must be (H, W, C) or stacked (S, H, W, C), got rank {rank}")
    moved = jnp.moveaxis(images, -4, -2)
    return moved.reshape(moved.shape[:-2] + (moved.shape[-2] * moved.shape[-1],))


def image_leaves(config: EncoderConfig, spec: ObservationSpec) -> tuple:
    """The leaf key tuples of the cameras the config encodes (all image leaves when image_keys is empty)."""
    images = [keys for keys, shape, dtype in spec.leaves() if is_image(shape, dtype)]
    if not config.image_keys:
        return tuple(images)
    chosen = []
    for name in config.image_keys:
        matches = [keys for keys in images if leaf_name(keys) == name] or [keys for keys in images if keys[-1] == name]
        if len(matches) != 1:
            raise ValueError(f"image key {name!r} matches {len(matches)} camera images of the observation "
                             f"(have {[leaf_name(k) for k in images]})")
        chosen.append(matches[0])
    left_out = [leaf_name(keys) for keys in images if keys not in chosen]
    if left_out:
        raise ValueError(f"image observations {left_out} are not in image_keys {list(config.image_keys)}: "
                         "list them, or remove them from the observation (raw pixels must not reach an MLP)")
    return tuple(keys for keys in images if keys in chosen)


def fold_frame_stack(images: jax.Array, rank: int) -> jax.Array:
    """Public name of the frame-stack folding the image encoders apply (the decoder's target uses it)."""
    return _fold_frame_stack(images, rank)


def make_encoder(config: EncoderConfig, spec: ObservationSpec, name: Optional[str] = None,
                 for_policy: bool = False) -> nn.Module:
    """The encoder module for observations of `spec`; refuses camera images for the state encoder.

    for_policy: the policy's copy (SAC-AE: detached convolutions, a projection of its own).
    """
    if config.kind == "state":
        images = [f"{leaf_name(keys)} {shape} {dtype.name}" for keys, shape, dtype in spec.leaves()
                  if is_image(shape, dtype)]
        if images:
            raise ValueError(
                f"the state encoder takes float vectors, but the observation has camera images ({', '.join(images)}); "
                "feeding raw pixels into an MLP does not learn. Use the pixel agent (DrQAgent, "
                "examples/async_drq_sim) for image observations.")
        return StateEncoder(spec, name=name)
    leaves = image_leaves(config, spec)
    if not leaves:
        raise ValueError(f"encoder kind {config.kind!r} needs camera images, but the observation has none")
    return ImageStateEncoder(spec, leaves, config, detach_trunk=for_policy and config.kind == "sac_ae", name=name)
