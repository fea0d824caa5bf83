"""SRN-DeblurNet (Tao et al., CVPR 2018): scale-recurrent deblurring.

The same encoder-ConvLSTM-decoder (one set of weights) runs on an image pyramid from coarse
to fine. At each scale its input is the blurred image at that scale concatenated with the
previous scale's estimate, upsampled and detached (the coarsest scale takes the blurred image
twice); the ConvLSTM's state is resized and carried to the next scale. Every scale's estimate
is returned, because the multi-scale loss (eq. 3) supervises all of them.

Any input size >= 4 px works: each scale's input is edge-padded up to a multiple of 4 (the
two stride-2 stages and the transposed convolutions then line up) and its estimate cropped
back, so estimates always have the pyramid sizes round(H * ratio^k) x round(W * ratio^k).
Inputs and estimates are in [0, 1] (NHWC); estimates are not clipped.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from faceblur.models.layers import ConvLSTMCell

_INIT = nnx.initializers.xavier_uniform()
_MULTIPLE = 4
_LSTM_FEATURES = 128


def _resize(images: jax.Array, height: int, width: int) -> jax.Array:
  return jax.image.resize(images, (images.shape[0], height, width, images.shape[-1]),
                          "bilinear", antialias=False)


class ResBlock(nnx.Module):
  """conv 5x5, ReLU, conv 5x5, + skip (no normalisation)."""

  def __init__(self, features: int, *, dtype, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(features, features, (5, 5), padding="SAME", kernel_init=_INIT,
                          dtype=dtype, rngs=rngs)
    self.conv2 = nnx.Conv(features, features, (5, 5), padding="SAME", kernel_init=_INIT,
                          dtype=dtype, rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    return features + self.conv2(jax.nn.relu(self.conv1(features)))


class SRNDeblurNet(nnx.Module):
  """8,061,411 parameters in colour with the ConvLSTM (6,881,251 without; 8,056,609 grey)."""

  def __init__(self, *, num_scales: int = 3, scale_ratio: float = 0.5, use_lstm: bool = True,
               channels: int = 3, dtype=jnp.float32, rngs: nnx.Rngs):
    self.num_scales = num_scales
    self.scale_ratio = scale_ratio
    self.channels = channels
    self.dtype = dtype

    def conv(in_features, out_features, stride=1):
      return nnx.Conv(in_features, out_features, (5, 5), strides=stride, padding="SAME",
                      kernel_init=_INIT, dtype=dtype, rngs=rngs)

    def blocks(features):
      return nnx.List([ResBlock(features, dtype=dtype, rngs=rngs) for _ in range(3)])

    def up(in_features, out_features):
      return nnx.ConvTranspose(in_features, out_features, (4, 4), strides=(2, 2),
                               padding="SAME", kernel_init=_INIT, dtype=dtype, rngs=rngs)

    self.enc1, self.enc1_blocks = conv(2 * channels, 32), blocks(32)
    self.enc2, self.enc2_blocks = conv(32, 64, 2), blocks(64)
    self.enc3, self.enc3_blocks = conv(64, 128, 2), blocks(128)
    self.lstm = (ConvLSTMCell(128, _LSTM_FEATURES, kernel_init=_INIT, dtype=dtype, rngs=rngs)
                 if use_lstm else None)
    self.dec3_blocks, self.dec3_up = blocks(128), up(128, 64)
    self.dec2_blocks, self.dec2_up = blocks(64), up(64, 32)
    self.dec1_blocks, self.out = blocks(32), conv(32, channels)

  def scale_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
    """The pyramid's (height, width), coarse to fine."""
    ratios = [self.scale_ratio**k for k in reversed(range(self.num_scales))]
    return [(max(1, round(height * r)), max(1, round(width * r))) for r in ratios]

  def _one_scale(self, inputs: jax.Array, carry):
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

  def __call__(self, blurred: jax.Array) -> list[jax.Array]:
    batch = blurred.shape[0]
    blurred = blurred.astype(jnp.float32)
    estimate, carry, estimates = None, None, []
    for height, width in self.scale_sizes(*blurred.shape[1:3]):
      scaled = _resize(blurred, height, width)
      previous = (scaled if estimate is None
                  else jax.lax.stop_gradient(_resize(estimate, height, width)))
      padded_height = -(-height // _MULTIPLE) * _MULTIPLE
      padded_width = -(-width // _MULTIPLE) * _MULTIPLE
      inputs = jnp.pad(jnp.concatenate([scaled, previous], axis=-1),
                       ((0, 0), (0, padded_height - height), (0, padded_width - width), (0, 0)),
                       mode="edge")
      if self.lstm is not None:
        state_shape = (batch, padded_height // _MULTIPLE, padded_width // _MULTIPLE)
        if carry is None:
          carry = self.lstm.initial_carry(state_shape)
        else:
          carry = tuple(jax.image.resize(state, (*state_shape, _LSTM_FEATURES), "bilinear",
                                         antialias=False) for state in carry)
      output, carry = self._one_scale(inputs.astype(self.dtype), carry)
      estimate = output[:, :height, :width, :].astype(jnp.float32)
      estimates.append(estimate)
    return estimates
