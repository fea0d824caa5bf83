"""Pieces shared by the networks: convolutions, padding, instance norm, the pyramid resize and
ConvLSTM.

The convolution modules compute through a convolution function they are given, as flax's
`nnx.Conv(conv_general_dilated=...)` does; by default the one `faceblur.ops` chooses for the
backend (its XLA:CPU rewrites on a CPU, else `jax.lax.conv_general_dilated` and autodiff). The
networks are written with plain convolutions either way, and parameters are the same.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from faceblur import ops
from faceblur.ops import ConvFn, Padding, TransposedConvFn

_XAVIER = nnx.initializers.xavier_uniform()
# SRN's `BasicConvLSTMCell._conv_linear`: its own arg_scope overrides the outer Xavier.
_LSTM_INIT = nnx.initializers.truncated_normal(stddev=1e-3)


def Conv(in_features: int, out_features: int, kernel_size, *,
         conv_general_dilated: ConvFn | None = None, **kwargs) -> nnx.Conv:
  """`nnx.Conv` (same parameters and initialisation, so checkpoints stay valid) computing
  through `conv_general_dilated`, by default `faceblur.ops.default_conv()`."""
  return nnx.Conv(in_features, out_features, kernel_size,
                  conv_general_dilated=conv_general_dilated or ops.default_conv(), **kwargs)


class ConvTranspose(nnx.Module):
  """A transposed convolution that multiplies the spatial size by `stride` exactly.

  `padding` is the padding of the convolution it transposes: torch's ConvTranspose2d(3,
  stride 2, padding 1, output_padding 1) of CycleGAN is `padding=((1, 1), (1, 1))` with a 3x3
  kernel; TF's conv2d_transpose(4x4, stride 2, 'SAME') of SRN is ((1, 1), (1, 1)) with a 4x4
  kernel. Parameters are named and shaped like flax's `nnx.ConvTranspose(...,
  transpose_kernel=True)`: kernel (kh, kw, out, in), bias (out,). It computes through
  `transposed_conv`, by default `faceblur.ops.default_transposed_conv()`.
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *, stride: int = 2,
               padding: Padding = ((1, 1), (1, 1)), kernel_init=_XAVIER, dtype=jnp.float32,
               transposed_conv: TransposedConvFn | None = None, rngs: nnx.Rngs):
    self.stride, self.padding, self.dtype = (stride, stride), padding, dtype
    self.transposed_conv = transposed_conv or ops.default_transposed_conv()
    self.kernel = nnx.Param(kernel_init(rngs.params(), (kernel_size, kernel_size, out_features,
                                                        in_features)))
    # The key draw keeps initialisation identical to flax's ConvTranspose (same seed, same
    # weights as checkpoints written before this layer existed).
    self.bias = nnx.Param(nnx.initializers.zeros(rngs.params(), (out_features,)))

  def __call__(self, inputs: jax.Array) -> jax.Array:
    inputs = inputs.astype(self.dtype)
    output_size = (inputs.shape[1] * self.stride[0], inputs.shape[2] * self.stride[1])
    result = self.transposed_conv(inputs, self.kernel[...].astype(self.dtype), self.stride,
                                  self.padding, output_size)
    return result + self.bias[...].astype(self.dtype)


def reflect_pad(images: jax.Array, pad: int) -> jax.Array:
  """Reflection padding of H and W (NHWC), as CycleGAN uses to avoid border artefacts."""
  return jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def instance_norm(features: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Per-sample, per-channel normalisation without affine parameters (torch's default).

  Statistics are computed in float32 even under bfloat16 activations.
  """
  dtype = features.dtype
  features = features.astype(jnp.float32)
  mean = jnp.mean(features, axis=(1, 2), keepdims=True)
  variance = jnp.var(features, axis=(1, 2), keepdims=True)
  return ((features - mean) * jax.lax.rsqrt(variance + eps)).astype(dtype)


def resize_images(images, height: int, width: int) -> jax.Array:
  """Bilinear resize of an NHWC batch to (height, width), for image pyramids and SRN targets.

  Half-pixel centres without antialiasing, i.e. TF2's `tf.image.resize(..., 'bilinear')`:
  halving a side averages each pair of pixels; shrinking by 4 averages the middle two of each
  four (no low-pass filter first). The official SRN code ran on TF1, whose legacy
  `resize_images` sampled at `i * scale` (no half-pixel centres), i.e. shifted by half a
  pixel; we keep the symmetric TF2 convention. The dtype of `images` is kept; a batch already
  of that size is returned as is.
  """
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"resize_images expects NHWC images, got shape {images.shape}")
  n, h, w, c = images.shape
  if (h, w) == (height, width):
    return images
  return jax.image.resize(images, (n, height, width, c), method="bilinear", antialias=False)


class ConvLSTMCell(nnx.Module):
  """A convolutional LSTM (Shi et al. 2015) as in SRN's `BasicConvLSTMCell`.

  One convolution of [input ⊕ hidden] gives the four gates; the forget gate gets a bias of 1
  so that early in training the cell keeps its memory. As in the official cell, the gate
  kernel starts truncated-normal with sigma 1e-3 (cut at 2 sigma) and the bias at zero: the
  cell starts near a pass-through of half its input. The carry is kept in float32.
  `conv_general_dilated` computes the gates' convolution (default: `Conv`'s).
  """

  def __init__(self, in_features: int, hidden_features: int, *, kernel_size: int = 3,
               forget_bias: float = 1.0, kernel_init=_LSTM_INIT, dtype=jnp.float32,
               conv_general_dilated: ConvFn | None = None, rngs: nnx.Rngs):
    self.hidden_features = hidden_features
    self.forget_bias = forget_bias
    self.gates = Conv(in_features + hidden_features, 4 * hidden_features,
                      (kernel_size, kernel_size), padding="SAME", kernel_init=kernel_init,
                      dtype=dtype, conv_general_dilated=conv_general_dilated, rngs=rngs)

  def initial_carry(self, batch_shape: tuple[int, int, int]) -> tuple[jax.Array, jax.Array]:
    """Zero (hidden, cell) states for a (N, H, W) feature map."""
    zeros = jnp.zeros((*batch_shape, self.hidden_features), jnp.float32)
    return zeros, zeros

  def __call__(self, inputs: jax.Array, carry: tuple[jax.Array, jax.Array]):
    hidden, cell = carry
    gates = self.gates(jnp.concatenate([inputs, hidden.astype(inputs.dtype)], axis=-1))
    input_gate, candidate, forget_gate, output_gate = jnp.split(
        gates.astype(jnp.float32), 4, axis=-1)
    cell = (cell * jax.nn.sigmoid(forget_gate + self.forget_bias)
            + jax.nn.sigmoid(input_gate) * jnp.tanh(candidate))
    hidden = jnp.tanh(cell) * jax.nn.sigmoid(output_gate)
    return (hidden, cell), hidden
