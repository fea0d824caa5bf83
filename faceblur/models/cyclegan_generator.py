"""CycleGAN's ResNet generator (Johnson et al. 2016, as in Zhu et al.'s official code).

Takes and returns images in [0, 1] (NHWC); works in [-1, 1] inside, with a tanh output, as
the reference does. Sides must be divisible by 4 (two stride-2 stages).

`residual=True` (not the reference) adds the tanh output to the input and clips to [-1, 1],
DeblurGAN's `learn_residual` (Kupyn et al. 2018), with the last layer zeroed so that the
generator starts as the identity. For blur, where the two domains differ by a small
correction, it learns in hundreds of steps what the reference needs many thousands for
(`bench/RESULTS.md`, "Figures behind code choices"): what a CPU demo can afford, like SRN's
residual option.

Two options against the sharp -> blurred -> sharp cycle's steganography (Chu et al. 2017),
both off in the reference: `upsample='resize'` doubles the size by nearest-neighbour
resizing and a 3x3 convolution instead of a transposed convolution, whose uneven overlap
prints a checkerboard (Odena et al. 2016), a ready carrier for a hidden signal; and
`code_dim > 0` concatenates a random code z, one per image and constant over it, to the
input (the noise input of BGAN/DBGAN, Zhang et al. 2020), so that one sharp face can be
blurred many ways and G is not a deterministic, invertible map.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from faceblur.models.layers import (
    Conv,
    ConvFn,
    ConvTranspose,
    TransposedConvFn,
    instance_norm,
    reflect_pad,
)

_INIT = nnx.initializers.normal(0.02)


class ResnetGenerator(nnx.Module):
  """7x7 stem, two stride-2 downsamplings, `num_blocks` residual blocks, two upsamplings.

  Instance norm without affine parameters, convolutions with biases: 11,378,179 parameters
  with 9 blocks (256 px crops), 7,837,699 with 6 (128 px). `conv_general_dilated` and
  `transposed_conv` compute the convolutions (default: `faceblur.models.layers`' defaults).
  """

  def __init__(self, *, num_blocks: int = 9, features: int = 64, channels: int = 3,
               residual: bool = False, upsample: str = "transposed", code_dim: int = 0,
               dtype=jnp.float32,
               conv_general_dilated: ConvFn | None = None,
               transposed_conv: TransposedConvFn | None = None, rngs: nnx.Rngs):
    def conv(in_features, out_features, kernel, stride=1, padding="VALID"):
      return Conv(in_features, out_features, (kernel, kernel), strides=stride,
                  padding=padding, kernel_init=_INIT, dtype=dtype,
                  conv_general_dilated=conv_general_dilated, rngs=rngs)

    def up(in_features, out_features):
      if upsample == "resize":
        return conv(in_features, out_features, 3)
      # torch's ConvTranspose2d(3, stride=2, padding=1, output_padding=1): the transpose of a
      # 3x3 stride-2 convolution padded by 1, at exactly twice the size.
      return ConvTranspose(in_features, out_features, 3, padding=((1, 1), (1, 1)),
                           kernel_init=_INIT, dtype=dtype, transposed_conv=transposed_conv,
                           rngs=rngs)

    if upsample not in ("transposed", "resize"):
      raise ValueError(f"upsample={upsample!r} is not one of transposed, resize")
    width = features
    self.upsample, self.code_dim = upsample, code_dim
    self.stem = conv(channels + code_dim, width, 7)
    self.down = nnx.List([conv(width, 2 * width, 3, 2, ((1, 1), (1, 1))),
                          conv(2 * width, 4 * width, 3, 2, ((1, 1), (1, 1)))])
    self.blocks = nnx.List([nnx.List([conv(4 * width, 4 * width, 3),
                                      conv(4 * width, 4 * width, 3)])
                            for _ in range(num_blocks)])
    self.up = nnx.List([up(4 * width, 2 * width), up(2 * width, width)])
    self.head = conv(width, channels, 7)
    self.residual = residual
    if residual:
      self.head.kernel[...] = jnp.zeros_like(self.head.kernel[...])

  def __call__(self, images: jax.Array, codes: jax.Array | None = None,
               noise_keys: jax.Array | None = None) -> jax.Array:
    """(N, H, W, C) in [0, 1], H and W divisible by 4 -> the translated images, float32 [0, 1].

    `codes` (N, code_dim): z, None for zeros; `noise_keys` is taken for the interface G shares
    with `KernelBlurGenerator` and not used."""
    del noise_keys
    if images.shape[1] % 4 or images.shape[2] % 4:
      raise ValueError(f"ResnetGenerator needs sides divisible by 4, got {images.shape[1:3]}")
    signed = images.astype(jnp.float32) * 2.0 - 1.0
    inputs = signed
    if self.code_dim:
      codes = (jnp.zeros((images.shape[0], self.code_dim), jnp.float32) if codes is None
               else codes.astype(jnp.float32))
      inputs = jnp.concatenate(
          [signed, jnp.broadcast_to(codes[:, None, None, :], (*signed.shape[:3], self.code_dim))],
          axis=-1)
    hidden = jax.nn.relu(instance_norm(self.stem(reflect_pad(inputs, 3))))
    for conv in self.down:
      hidden = jax.nn.relu(instance_norm(conv(hidden)))
    for first, second in self.blocks:
      residual = jax.nn.relu(instance_norm(first(reflect_pad(hidden, 1))))
      hidden = hidden + instance_norm(second(reflect_pad(residual, 1)))
    for conv in self.up:
      if self.upsample == "resize":
        n, h, w, c = hidden.shape
        hidden = conv(reflect_pad(jax.image.resize(hidden, (n, 2 * h, 2 * w, c), "nearest"), 1))
      else:
        hidden = conv(hidden)
      hidden = jax.nn.relu(instance_norm(hidden))
    output = jnp.tanh(self.head(reflect_pad(hidden, 3)).astype(jnp.float32))
    if self.residual:
      output = jnp.clip(signed + output, -1.0, 1.0)
    return (output + 1.0) / 2.0
