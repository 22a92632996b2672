"""DrQ: SAC from camera images, with random-shift augmentation (Kostrikov et al.; SERL's DrQAgent),
and SAC-AE's reconstruction as an option (Yarats et al.).

The same agent as SACAgent (losses, REDQ ensemble, high-UTD update, checkpoints) with two changes:
the networks encode images (`EncoderConfig.kind` "small", "resnet", "resnet-pretrained": one encoder
per camera plus the projected state, inside the critic), and every batch is augmented inside the
jitted update: observations and next observations are shifted by up to `augmentation_pad` pixels,
independently per sample. The encoder is trained by the critic loss only; the policy acts on the
critic's encoder with its gradient stopped, and the target critic's encoder follows by Polyak
averaging like the rest of the target.

SAC-AE (encoder kind "sac_ae" with `reconstruction=True`): a decoder reconstructs the camera images
from the encoder's latent; the encoder learns from the critic loss plus the reconstruction loss
(5-bit images, dequantised with noise, and an L2 penalty on the latent), the decoder with AdamW. The
policy shares the encoder's convolutions, detached, and trains a projection of its own. DrQ's shifts
stay available with it (augmentation_pad).
"""
import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from serl_launcher.agents.continuous.sac import SACAgent, SACConfig, sac_config_kwargs
from serl_launcher.common.observations import ObservationSpec, get_leaf
from serl_launcher.networks.encoders import EncoderConfig, fold_frame_stack, image_leaves
from serl_launcher.vision.augmentations import random_shift
from serl_launcher.vision.encoders import PixelDecoder, reconstruction_target


@dataclasses.dataclass(frozen=True)
class DrQConfig(SACConfig):
    """SACConfig for image observations; saved with every checkpoint."""

    encoder: EncoderConfig = EncoderConfig("small")
    augmentation_pad: int = 4
    """Random shifts of up to this many pixels (0: no augmentation)."""
    reconstruction: bool = False
    """SAC-AE: train a decoder of the (single) camera's images on the encoder's latent, with the critic."""
    decoder_learning_rate: float = 1e-3
    decoder_weight_decay: float = 1e-7
    latent_penalty: float = 1e-6
    """Weight of the L2 penalty on the latent in the reconstruction loss."""
    reconstruction_bits: int = 5
    """The decoder's target keeps this many bits per colour, dequantised with uniform noise."""

    def __post_init__(self):
        super().__post_init__()
        if self.encoder.kind == "state":
            raise ValueError("DrQConfig needs an image encoder (kind 'small', 'resnet', 'resnet-pretrained' or 'sac_ae')")
        if self.augmentation_pad < 0:
            raise ValueError(f"augmentation_pad must be >= 0, got {self.augmentation_pad}")
        if self.reconstruction and self.encoder.kind != "sac_ae":
            raise ValueError("reconstruction (SAC-AE) needs encoder kind 'sac_ae'")

    def make_decoder(self, spec: ObservationSpec):
        if not self.reconstruction:
            return None
        leaves = image_leaves(self.encoder, spec)
        if len(leaves) != 1 or spec.without(leaves) is not None:
            raise ValueError("reconstruction (SAC-AE) works on observations of exactly one camera and nothing else")
        shape = dict((keys, shape) for keys, shape, _ in spec.leaves())[leaves[0]]
        stacked = len(shape) == 4  # (S, H, W, C): the decoder outputs all frames as channels
        height, width = shape[-3], shape[-2]
        return PixelDecoder((height, width, shape[-1] * (shape[0] if stacked else 1)))


class DrQAgent(SACAgent):
    config_class = DrQConfig

    def reconstruction_loss(self, critic_params, decoder_params, batch, rng: jax.Array):
        """SAC-AE's decoder loss on the (augmented) observations, differentiable in encoder and decoder."""
        nets, cfg = self.networks, self.config
        latent = nets.critic_def.apply({"params": critic_params}, batch["observations"], method="encode")
        (keys,) = image_leaves(cfg.encoder, self.observation_spec)
        rank = len(dict((k, shape) for k, shape, _ in self.observation_spec.leaves())[keys])
        images = fold_frame_stack(get_leaf(batch["observations"], keys), rank)
        target = reconstruction_target(images, rng, cfg.reconstruction_bits)
        error = jnp.mean((nets.decoder_def.apply({"params": decoder_params}, latent) - target) ** 2)
        penalty = cfg.latent_penalty * jnp.mean(0.5 * jnp.sum(latent**2, axis=-1))
        return error + penalty, {"reconstruction_loss": error}

    def augment_batch(self, batch, rng: jax.Array):
        """Every camera image of observations and next observations randomly shifted (own key each)."""
        pad = self.config.augmentation_pad
        if pad == 0:
            return batch
        leaves = image_leaves(self.config.encoder, self.observation_spec)
        keys = iter(jax.random.split(rng, 2 * len(leaves)))
        batch = dict(batch)
        for field in ("observations", "next_observations"):
            shifted = {keys_: random_shift(get_leaf(batch[field], keys_), next(keys), pad) for keys_ in leaves}
            batch[field] = _replace_leaves(batch[field], shifted)
        return batch

    @classmethod
    def create_drq(
        cls,
        rng: jax.Array,
        observations,
        actions,
        encoder_type: str = "small",
        use_proprio: bool = True,
        image_keys=(),
        critic_network_kwargs: Optional[dict] = None,
        policy_network_kwargs: Optional[dict] = None,
        policy_kwargs: Optional[dict] = None,
        critic_ensemble_size: int = 2,
        critic_subsample_size: Optional[int] = None,
        temperature_init: float = 1.0,
        discount: float = 0.95,
        soft_target_update_rate: float = 0.005,
        target_entropy: Optional[float] = None,
        backup_entropy: bool = False,
        augmentation_pad: int = 4,
        pretrained_weights: Optional[str] = None,
        bottleneck_dim: int = 256,
        actor_loss_gradient: str = "auto",
    ) -> "DrQAgent":
        """SERL's constructor (its keyword arguments and defaults) for image observations."""
        encoder = EncoderConfig(encoder_type, tuple(image_keys), bottleneck_dim=bottleneck_dim,
                                proprio_dim=64 if use_proprio else 0, pretrained_weights=pretrained_weights)
        config = DrQConfig(
            **sac_config_kwargs(critic_network_kwargs, policy_network_kwargs, policy_kwargs),
            critic_ensemble_size=critic_ensemble_size, critic_subsample_size=critic_subsample_size,
            temperature_init=temperature_init, discount=discount, soft_target_update_rate=soft_target_update_rate,
            target_entropy=target_entropy, backup_entropy=backup_entropy, actor_loss_gradient=actor_loss_gradient,
            encoder=encoder, augmentation_pad=augmentation_pad)
        return cls.create(rng, observations, actions, config)


def _replace_leaves(tree, replacements: dict, prefix: tuple = ()):
    if prefix in replacements:
        return replacements[prefix]
    if not isinstance(tree, dict):
        return tree
    return {key: _replace_leaves(value, replacements, prefix + (key,)) for key, value in tree.items()}
