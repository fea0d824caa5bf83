"""The 70x70 PatchGAN discriminator of pix2pix/CycleGAN (Isola et al. 2017).

Scores overlapping 70x70 patches of a [0, 1] image (mapped to [-1, 1] inside) as real or
fake: it judges local texture, which is exactly where blur lives.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from faceblur.models.layers import Conv, ConvFn, instance_norm

_INIT = nnx.initializers.normal(0.02)


class PatchDiscriminator(nnx.Module):
  """`num_layers`=3: 64-128-256-512 filters, 4x4 kernels, LeakyReLU 0.2, 2,764,737 parameters.

  Returns raw (N, h, w, 1) patch scores: a 256 px input gives 30x30 patches.
  `conv_general_dilated` computes the convolutions (default: `faceblur.models.layers.Conv`'s).
  """

  def __init__(self, *, features: int = 64, num_layers: int = 3, channels: int = 3,
               dtype=jnp.float32, conv_general_dilated: ConvFn | None = None,
               rngs: nnx.Rngs):
    def conv(in_features, out_features, stride):
      return Conv(in_features, out_features, (4, 4), strides=stride,
                  padding=((1, 1), (1, 1)), kernel_init=_INIT, dtype=dtype,
                  conv_general_dilated=conv_general_dilated, rngs=rngs)

    widths = [features * min(2**i, 8) for i in range(num_layers + 1)]
    layers = [conv(channels, widths[0], 2)]
    for i in range(1, num_layers + 1):
      layers.append(conv(widths[i - 1], widths[i], 2 if i < num_layers else 1))
    layers.append(conv(widths[-1], 1, 1))
    self.layers = nnx.List(layers)

  def __call__(self, images: jax.Array) -> jax.Array:
    """(N, H, W, C) in [0, 1] -> float32 (N, h, w, 1) scores, one per overlapping patch."""
    hidden = images.astype(jnp.float32) * 2.0 - 1.0
    for index, layer in enumerate(self.layers[:-1]):
      hidden = layer(hidden)
      if index > 0:  # no normalisation on the first layer
        hidden = instance_norm(hidden)
      hidden = jax.nn.leaky_relu(hidden, 0.2)
    return self.layers[-1](hidden).astype(jnp.float32)
