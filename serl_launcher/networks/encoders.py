"""Observation encoders: the first stage of the policy and of the critic (RLPD's PixelMultiplexer idea).

An encoder turns one observation (or a batch) into a feature vector. Keeping it inside the networks,
rather than flattening observations before them, is what lets the same agent code learn from state
vectors (`StateEncoder`, no parameters) or camera images (the pixel agent's encoders, which train).
"""
import dataclasses
from typing import Optional

import flax.linen as nn
import jax

from serl_launcher.common.observations import ObservationSpec, flatten_leaves, is_image

ENCODER_KINDS = ("state",)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """How observations become features (saved with every checkpoint).

    kind: "state" flattens every leaf into one float vector; the pixel agent adds image encoders.
    """

    kind: str = "state"

    def __post_init__(self):
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"encoder kind {self.kind!r} is not one of {ENCODER_KINDS}")


class StateEncoder(nn.Module):
    """Every leaf of the observation as float32, concatenated (dict keys sorted): no parameters."""

    spec: ObservationSpec

    def __call__(self, observations) -> jax.Array:
        return flatten_leaves(self.spec, observations)


def make_encoder(config: EncoderConfig, spec: ObservationSpec, name: Optional[str] = None) -> nn.Module:
    """The encoder module for observations of `spec`; refuses camera images for the state encoder."""
    images = [f"{path} {shape} {dtype.name}" for path, shape, dtype in spec.leaves() if is_image(shape, dtype)]
    if config.kind == "state" and images:
        raise ValueError(
            f"the state encoder takes float vectors, but the observation has camera images ({', '.join(images)}); "
            "feeding raw pixels into an MLP does not learn. Use the pixel agent (DrQAgent) for image observations."
        )
    return StateEncoder(spec, name=name)
