"""Image encoders for the pixel agent: a small conv net trained from scratch, and a ResNet-10.

Both take uint8 images (..., H, W, C) and return a feature vector (..., bottleneck_dim) through a
Dense -> LayerNorm -> tanh bottleneck, as SERL's encoders do. The ResNet pools its feature map with
learned spatial embeddings (a learned weighted sum over positions per channel, several per channel),
which keeps where things are in the image, unlike average pooling.
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RELU_GAIN = 2**0.5  # the gain that keeps activations' scale through ReLUs (as torch's calculate_gain("relu"))


class SpatialLearnedEmbeddings(nn.Module):
    """(..., H, W, C) -> (..., C * num_features): per channel, `num_features` learned weightings of positions."""

    num_features: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        height, width, channels = x.shape[-3:]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (height, width, channels, self.num_features))
        pooled = jnp.einsum("...hwc,hwcf->...cf", x, kernel)
        return pooled.reshape(pooled.shape[:-2] + (channels * self.num_features,))


class Bottleneck(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.tanh(nn.LayerNorm()(nn.Dense(self.features)(x)))


class SmallConvEncoder(nn.Module):
    """Strided 3x3 convolutions with ReLU, average pooling, bottleneck (SERL's "small" settings)."""

    features: Sequence[int] = (32, 64, 128, 256)
    strides: Sequence[int] = (2, 2, 2, 2)
    bottleneck_dim: int = 256

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        x = images.astype(jnp.float32) / 255.0
        for features, stride in zip(self.features, self.strides):
            if min(x.shape[-3:-1]) < 3:
                raise ValueError(f"images of {images.shape[-3]}x{images.shape[-2]} are too small for the small "
                                 f"encoder's {len(self.features)} strided 3x3 convolutions (31x31 at least)")
            x = nn.relu(nn.Conv(features, (3, 3), (stride, stride), padding="VALID")(x))
        return Bottleneck(self.bottleneck_dim)(jnp.mean(x, axis=(-3, -2)))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm, and a projected shortcut when the shape changes."""

    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda f, k, s, name: nn.Conv(f, (k, k), (s, s), use_bias=False, name=name,  # noqa: E731
                                             kernel_init=nn.initializers.kaiming_normal())
        norm = lambda name: nn.GroupNorm(num_groups=4, epsilon=1e-5, name=name)  # noqa: E731
        y = nn.relu(norm("norm1")(conv(self.features, 3, self.stride, "conv1")(x)))
        y = norm("norm2")(conv(self.features, 3, 1, "conv2")(y))
        if x.shape[-1] != self.features or self.stride != 1:
            x = norm("norm_proj")(conv(self.features, 1, self.stride, "conv_proj")(x))
        return nn.relu(x + y)


class ResNet10Backbone(nn.Module):
    """ResNet-10 (one residual block per stage, 64-512 channels) on ImageNet-normalised input: the
    part pretrained weights replace (`vision.pretrained`)."""

    num_filters: int = 64

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        x = (images.astype(jnp.float32) / 255.0 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
        batch_shape = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:])  # GroupNorm and max_pool want exactly one batch axis
        x = nn.Conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False,
                    kernel_init=nn.initializers.kaiming_normal(), name="conv_init")(x)
        x = nn.relu(nn.GroupNorm(num_groups=4, epsilon=1e-5, name="norm_init")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for stage in range(4):
            x = ResidualBlock(self.num_filters * 2**stage, stride=1 if stage == 0 else 2, name=f"block_{stage}")(x)
        return x.reshape(batch_shape + x.shape[1:])


class ResNetEncoder(nn.Module):
    """ResNet-10 backbone -> learned spatial embeddings -> bottleneck; `freeze_backbone` stops its
    gradient (pretrained weights kept as loaded, SERL's "resnet-pretrained")."""

    bottleneck_dim: int = 256
    num_spatial_features: int = 8
    freeze_backbone: bool = False

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        x = ResNet10Backbone(name="backbone")(images)
        if self.freeze_backbone:
            x = jax.lax.stop_gradient(x)
        return Bottleneck(self.bottleneck_dim)(SpatialLearnedEmbeddings(self.num_spatial_features)(x))


def delta_orthogonal(gain: float = 1.0):
    """Delta-orthogonal init for convolutions (Xiao et al. 2018, used by SAC-AE): zero kernels except
    the centre tap, an orthogonal (in, out) matrix, so that a deep conv stack starts norm-preserving."""
    orthogonal = nn.initializers.orthogonal(gain)

    def init(key, shape, dtype=jnp.float32):
        height, width, inputs, outputs = shape
        kernel = jnp.zeros(shape, dtype)
        return kernel.at[height // 2, width // 2].set(orthogonal(key, (inputs, outputs), dtype))

    return init


class PixelAEEncoder(nn.Module):
    """SAC-AE's encoder: four 3x3 convolutions of 32 filters (the first with stride 2), delta-orthogonal
    init, then the `projection` (Dense -> LayerNorm -> tanh) to a `latent_dim` latent.

    detach_trunk: the actor's copy stops the gradient after the convolutions, so the actor loss
    trains its own projection but never the trunk (which the critic and the decoder train).
    """

    latent_dim: int = 50
    filters: int = 32
    detach_trunk: bool = False

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        x = images.astype(jnp.float32) / 255.0
        for stride, name in zip((2, 1, 1, 1), ("conv1", "conv2", "conv3", "conv4")):
            x = nn.relu(nn.Conv(self.filters, (3, 3), (stride, stride), padding="VALID", name=f"trunk_{name}",
                                kernel_init=delta_orthogonal(RELU_GAIN))(x))
        x = x.reshape(x.shape[:-3] + (-1,))
        if self.detach_trunk:
            x = jax.lax.stop_gradient(x)
        return Bottleneck(self.latent_dim, name="projection")(x)


class PixelDecoder(nn.Module):
    """SAC-AE's decoder: latent -> the trunk's feature map -> transposed convolutions -> (H, W, C) image."""

    image_shape: Sequence[int]  # (H, W, C) of the reconstructed (frame-stacked) image
    filters: int = 32

    @nn.compact
    def __call__(self, latent: jax.Array) -> jax.Array:
        height, width, channels = self.image_shape
        map_h, map_w = (height - 3) // 2 + 1 - 6, (width - 3) // 2 + 1 - 6  # the encoder trunk's output size
        x = nn.relu(nn.Dense(map_h * map_w * self.filters)(latent)).reshape(latent.shape[:-1] + (map_h, map_w,
                                                                                                    self.filters))
        for _ in range(3):
            x = nn.relu(nn.ConvTranspose(self.filters, (3, 3), padding="VALID")(x))
        x = nn.ConvTranspose(channels, (3, 3), (2, 2), padding="VALID")(x)
        pad_h, pad_w = height - x.shape[-3], width - x.shape[-2]  # stride 2 undoes the floor by a pixel or so
        return jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(0, pad_h), (0, pad_w), (0, 0)])[..., :height, :width, :]


def reconstruction_target(images: jax.Array, key: jax.Array, bits: int = 5) -> jax.Array:
    """SAC-AE's decoder target: uint8 images reduced to `bits` bits, dequantised with uniform noise,
    centred on 0 (in [-0.5, 0.5])."""
    bins = 2**bits
    x = jnp.floor(images.astype(jnp.float32) / 2 ** (8 - bits)) / bins
    return x + jax.random.uniform(key, x.shape) / bins - 0.5
