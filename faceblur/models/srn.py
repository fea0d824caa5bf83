"""SRN-DeblurNet (Tao et al., CVPR 2018): scale-recurrent deblurring.

The same encoder-ConvLSTM-decoder (one set of weights) runs on an image pyramid from coarse
to fine. At each scale its input is the blurred image at that scale concatenated with the
previous scale's estimate, upsampled and detached (the coarsest scale takes the blurred image
twice); the ConvLSTM's state is resized and carried to the next scale. Every scale's estimate
is returned, because the multi-scale loss (eq. 3) supervises all of them.

Any input size works (tested down to 16 px): each scale's input is edge-padded up to a
multiple of 4, so that the two stride-2 convolutions and the two transposed convolutions line
up, and its estimate is cropped back. Estimates therefore always have the pyramid sizes
round(H * ratio^k) x round(W * ratio^k). The ConvLSTM state is resized so that the image
content of one scale maps onto the content of the next (not padding onto content). Inputs and
estimates are in [0, 1] (NHWC, float32); estimates are not clipped.
"""

import numbers

import jax
import jax.numpy as jnp
from flax import nnx

from faceblur.models.layers import (
    Conv,
    ConvFn,
    ConvLSTMCell,
    ConvTranspose,
    TransposedConvFn,
    resize_images,
)

_INIT = nnx.initializers.xavier_uniform()
_MULTIPLE = 4  # two stride-2 stages per scale


def _round_up(value: int) -> int:
  return -(-value // _MULTIPLE) * _MULTIPLE


def _scaled_side(side, ratio: float):
  """round(side * ratio), at least 1. A symbolic side (`jax.export` with symbolic height and
  width) cannot be rounded; it is divided exactly by 1 / ratio, which must be a whole number
  dividing it (SRN's 3 scales of ratio 0.5 on sides of a multiple of 4)."""
  if isinstance(side, numbers.Integral):
    return max(1, round(side * ratio))
  divisor = round(1 / ratio)
  if abs(divisor * ratio - 1) > 1e-9:
    raise ValueError(f"a symbolic side needs a scale ratio of 1/n, not {ratio}")
  return side // divisor


def _side_value(side) -> jax.Array:
  return jnp.asarray(side, jnp.float32)


class ResBlock(nnx.Module):
  """conv 5x5, ReLU, conv 5x5, + skip (no normalisation)."""

  def __init__(self, features: int, *, dtype, conv_general_dilated: ConvFn | None = None,
               rngs: nnx.Rngs):
    self.conv1 = Conv(features, features, (5, 5), padding="SAME", kernel_init=_INIT,
                      dtype=dtype, conv_general_dilated=conv_general_dilated, rngs=rngs)
    self.conv2 = Conv(features, features, (5, 5), padding="SAME", kernel_init=_INIT,
                      dtype=dtype, conv_general_dilated=conv_general_dilated, rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    return features + self.conv2(jax.nn.relu(self.conv1(features)))


class SRNDeblurNet(nnx.Module):
  """Encoder (32-64-128), ConvLSTM bottleneck, decoder with summed skips; 5x5 convolutions.

  8,061,411 parameters in colour with the ConvLSTM (6,881,251 without; 8,056,609 grey), the
  same for any `num_scales`. `features` is the first stage's width (the reference's 32); the
  other stages and the ConvLSTM use 2x and 4x. `dtype` is the computation dtype (parameters
  and the ConvLSTM state stay float32). `conv_general_dilated` and `transposed_conv` compute
  the convolutions (default: `faceblur.models.layers`' defaults).
  """

  def __init__(self, *, num_scales: int = 3, scale_ratio: float = 0.5, use_lstm: bool = True,
               channels: int = 3, features: int = 32, residual: bool = False,
               dtype=jnp.float32, conv_general_dilated: ConvFn | None = None,
               transposed_conv: TransposedConvFn | None = None, rngs: nnx.Rngs):
    self.num_scales = num_scales
    self.scale_ratio = scale_ratio
    self.channels = channels
    self.dtype = dtype

    def conv(in_features, out_features, stride=1):
      return Conv(in_features, out_features, (5, 5), strides=stride, padding="SAME",
                  kernel_init=_INIT, dtype=dtype, conv_general_dilated=conv_general_dilated,
                  rngs=rngs)

    def blocks(width):
      return nnx.List([ResBlock(width, dtype=dtype, conv_general_dilated=conv_general_dilated,
                                rngs=rngs) for _ in range(3)])

    def up(in_features, out_features):
      # TF's conv2d_transpose(4x4, stride 2, 'SAME'): the transpose of a 4x4 stride-2
      # convolution padded by 1, at exactly twice the size.
      return ConvTranspose(in_features, out_features, 4, padding=((1, 1), (1, 1)),
                           kernel_init=_INIT, dtype=dtype, transposed_conv=transposed_conv,
                           rngs=rngs)

    width1, width2, width3 = features, 2 * features, 4 * features
    self.enc1, self.enc1_blocks = conv(2 * channels, width1), blocks(width1)
    self.enc2, self.enc2_blocks = conv(width1, width2, 2), blocks(width2)
    self.enc3, self.enc3_blocks = conv(width2, width3, 2), blocks(width3)
    # The ConvLSTM keeps its own initialiser (truncated normal, sigma 1e-3), as officially.
    self.lstm = (ConvLSTMCell(width3, width3, dtype=dtype,
                              conv_general_dilated=conv_general_dilated, rngs=rngs)
                 if use_lstm else None)
    self.dec3_blocks, self.dec3_up = blocks(width3), up(width3, width2)
    self.dec2_blocks, self.dec2_up = blocks(width2), up(width2, width1)
    self.dec1_blocks, self.out = blocks(width1), conv(width1, channels)
    # residual=True predicts a correction added to the scale's blurred input, starting from
    # the identity (zero output layer): not the reference, but it learns in hundreds of steps
    # instead of many thousands, which is what a CPU demo can afford.
    self.residual = residual
    if residual:
      self.out.kernel[...] = jnp.zeros_like(self.out.kernel[...])

  def scale_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
    """The pyramid's (height, width), coarse to fine; the last is the input size."""
    ratios = [self.scale_ratio**k for k in reversed(range(self.num_scales))]
    return [(_scaled_side(height, r), _scaled_side(width, r)) for r in ratios]

  def _one_scale(self, inputs: jax.Array, carry):
    """Encoder, ConvLSTM, decoder on one scale's 6-channel input (sides divisible by 4)."""
    encoded1 = jax.nn.relu(self.enc1(inputs))
    for block in self.enc1_blocks:
      encoded1 = block(encoded1)
    encoded2 = jax.nn.relu(self.enc2(encoded1))
    for block in self.enc2_blocks:
      encoded2 = block(encoded2)
    encoded3 = jax.nn.relu(self.enc3(encoded2))
    for block in self.enc3_blocks:
      encoded3 = block(encoded3)
    hidden = encoded3
    if self.lstm is not None:
      carry, hidden = self.lstm(encoded3, carry)
      hidden = hidden.astype(encoded3.dtype)
    for block in self.dec3_blocks:
      hidden = block(hidden)
    hidden = jax.nn.relu(self.dec3_up(hidden)) + encoded2
    for block in self.dec2_blocks:
      hidden = block(hidden)
    hidden = jax.nn.relu(self.dec2_up(hidden)) + encoded1
    for block in self.dec1_blocks:
      hidden = block(hidden)
    return self.out(hidden), carry

  def _carry_to_scale(self, carry, previous_size, size, padded_size, batch: int):
    """The ConvLSTM state for the next scale: zeros at first, then the previous state resized
    so that image content maps onto image content (the paddings of two scales differ)."""
    state_shape = (batch, padded_size[0] // _MULTIPLE, padded_size[1] // _MULTIPLE)
    if carry is None:
      return self.lstm.initial_carry(state_shape)
    if all(isinstance(side, numbers.Integral) for side in (*size, *previous_size)):
      scale = jnp.array([size[0] / previous_size[0], size[1] / previous_size[1]], jnp.float32)
    else:  # symbolic sides (jax.export): the same ratio, computed from the sides' values
      scale = jnp.stack([_side_value(size[i]) / _side_value(previous_size[i]) for i in (0, 1)])
    return tuple(
        jax.image.scale_and_translate(state, (*state_shape, state.shape[-1]), (1, 2), scale,
                                      jnp.zeros(2, jnp.float32), "linear", antialias=False)
        for state in carry)

  def __call__(self, blurred: jax.Array) -> list[jax.Array]:
    """(N, H, W, C) blurred in [0, 1] -> estimates at every scale, coarse to fine."""
    batch = blurred.shape[0]
    blurred = blurred.astype(jnp.float32)
    estimate, carry, previous_size, estimates = None, None, None, []
    for height, width in self.scale_sizes(*blurred.shape[1:3]):
      scaled = resize_images(blurred, height, width)
      previous = (scaled if estimate is None
                  else jax.lax.stop_gradient(resize_images(estimate, height, width)))
      padded_height, padded_width = _round_up(height), _round_up(width)
      inputs = jnp.pad(jnp.concatenate([scaled, previous], axis=-1),
                       ((0, 0), (0, padded_height - height), (0, padded_width - width), (0, 0)),
                       mode="edge")
      if self.lstm is not None:
        carry = self._carry_to_scale(carry, previous_size, (height, width),
                                     (padded_height, padded_width), batch)
      output, carry = self._one_scale(inputs.astype(self.dtype), carry)
      estimate = output[:, :height, :width, :].astype(jnp.float32)
      if self.residual:
        estimate = estimate + scaled
      estimates.append(estimate)
      previous_size = (height, width)
    return estimates
