"""Pieces shared by the networks: padding, instance norm, the pyramid resize, ConvLSTM and the
transposed convolution."""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

_XAVIER = nnx.initializers.xavier_uniform()
_NHWC = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], tuple[int, int]]


def _conv(inputs: jax.Array, kernel: jax.Array, strides: tuple[int, int],
          padding: Padding) -> jax.Array:
  return jax.lax.conv_general_dilated(inputs, kernel, strides, padding, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def transposed_conv(inputs: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                    padding: Padding, output_size: tuple[int, int]) -> jax.Array:
  """The exact transpose (input gradient) of `conv(., kernel, strides, padding)` at `output_size`.

  `kernel` is the forward convolution's (kh, kw, out, in) kernel, i.e. (kh, kw, features of
  the result, features of `inputs`), as torch's ConvTranspose2d and TF's conv2d_transpose
  define it. Why a custom VJP: XLA:CPU computes the kernel gradient of an input-dilated
  convolution (what autodiff gives for a transposed convolution) with a naive loop, ~50x
  slower than a strided convolution's; the same gradient is the kernel gradient of the strided
  convolution `conv(upstream, kernel)` at `inputs`, which is fast on every backend.
  """
  result_shape = (inputs.shape[0], *output_size, kernel.shape[2])
  _, transpose = jax.vjp(lambda result: _conv(result, kernel, strides, padding),
                         jnp.zeros(result_shape, inputs.dtype))
  return transpose(inputs)[0]


def _transposed_conv_forward(inputs, kernel, strides, padding, output_size):
  return transposed_conv(inputs, kernel, strides, padding, output_size), (inputs, kernel)


def _transposed_conv_backward(strides, padding, output_size, residuals, upstream):
  del output_size
  inputs, kernel = residuals
  inputs_grad = _conv(upstream, kernel, strides, padding)
  _, kernel_transpose = jax.vjp(lambda k: _conv(upstream, k, strides, padding), kernel)
  return inputs_grad.astype(inputs.dtype), kernel_transpose(inputs.astype(upstream.dtype))[0]


transposed_conv.defvjp(_transposed_conv_forward, _transposed_conv_backward)


class ConvTranspose(nnx.Module):
  """A transposed convolution that multiplies the spatial size by `stride` exactly.

  `padding` is the padding of the convolution it transposes: torch's ConvTranspose2d(3,
  stride 2, padding 1, output_padding 1) of CycleGAN is `padding=((1, 1), (1, 1))` with a 3x3
  kernel; TF's conv2d_transpose(4x4, stride 2, 'SAME') of SRN is ((1, 1), (1, 1)) with a 4x4
  kernel. Parameters are named and shaped like flax's `nnx.ConvTranspose(...,
  transpose_kernel=True)`: kernel (kh, kw, out, in), bias (out,).
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *, stride: int = 2,
               padding: Padding = ((1, 1), (1, 1)), kernel_init=_XAVIER, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.stride, self.padding, self.dtype = (stride, stride), padding, dtype
    self.kernel = nnx.Param(kernel_init(rngs.params(), (kernel_size, kernel_size, out_features,
                                                        in_features)))
    # The key draw keeps initialisation identical to flax's ConvTranspose (same seed, same
    # weights as checkpoints written before this layer existed).
    self.bias = nnx.Param(nnx.initializers.zeros(rngs.params(), (out_features,)))

  def __call__(self, inputs: jax.Array) -> jax.Array:
    inputs = inputs.astype(self.dtype)
    output_size = (inputs.shape[1] * self.stride[0], inputs.shape[2] * self.stride[1])
    result = transposed_conv(inputs, self.kernel[...].astype(self.dtype), self.stride,
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
  so that early in training the cell keeps its memory. The carry is kept in float32.
  """

  def __init__(self, in_features: int, hidden_features: int, *, kernel_size: int = 3,
               forget_bias: float = 1.0, kernel_init=_XAVIER, dtype=jnp.float32, rngs: nnx.Rngs):
    self.hidden_features = hidden_features
    self.forget_bias = forget_bias
    self.gates = nnx.Conv(in_features + hidden_features, 4 * hidden_features,
                          (kernel_size, kernel_size), padding="SAME", kernel_init=kernel_init,
                          dtype=dtype, rngs=rngs)

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
