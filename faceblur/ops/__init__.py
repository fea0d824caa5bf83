"""Hardware-specific forms of standard operations, kept out of the networks (as BasicSR's `ops/`).

Two CPU tricks live here: convolutions and their gradients rewritten into forms XLA:CPU
computes faster (`cpu_convolutions`), and XLA:CPU compiler options (`compilation.jit`). The
networks are written with plain convolutions and get theirs from `default_conv()`,
`default_transposed_conv()` and `default_convolve_each()`; both tricks apply only on a CPU
backend.

`FACEBLUR_CPU_KERNELS=off` in the environment turns both off (`FACEBLUR_CPU_COMPILER_OPTIONS=off`,
the name of the compiler options' former switch, does the same): networks then convolve with
`jax.lax.conv_general_dilated` and autodiff and compile with plain `jax.jit`, as on other
backends. This is for comparisons, or in case a later jaxlib computes XLA's own forms faster;
values agree either way up to the order of summation. `enabled()` is the one place the
variable is read, when a network is built and when a function is compiled, so set it before
both.
"""

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp

from faceblur.ops import cpu_convolutions
from faceblur.ops.cpu_convolutions import Padding

SWITCH = "FACEBLUR_CPU_KERNELS"
_FORMER_SWITCH = "FACEBLUR_CPU_COMPILER_OPTIONS"

# `jax.lax.conv_general_dilated`'s signature; (inputs, kernel, strides, padding, output_size).
ConvFn = Callable[..., jax.Array]
TransposedConvFn = Callable[[jax.Array, jax.Array, tuple[int, int], Padding, tuple[int, int]],
                            jax.Array]
# (padded images (N, H + k - 1, W + k - 1, C), kernels (N, k, k)) -> (N, H, W, C).
ConvolveEachFn = Callable[[jax.Array, jax.Array], jax.Array]


def enabled() -> bool:
  """False when the environment turns faceblur's CPU tricks off (`FACEBLUR_CPU_KERNELS=off`)."""
  return all(os.environ.get(name, "on") != "off" for name in (SWITCH, _FORMER_SWITCH))


def host_threads(limit: int = 8) -> int:
  """Threads for host work that releases the GIL (dlib's scans, FFTs): one per core this
  process may run on, at most `limit`."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return max(1, min(limit, cores or 1))


def cpu_tricks_apply() -> bool:
  """Whether the CPU tricks are used now: switched on, and the default backend is a CPU."""
  return enabled() and jax.default_backend() == "cpu"


def plain_transposed_conv(inputs: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                          padding: Padding, output_size: tuple[int, int]) -> jax.Array:
  """The transpose of the NHWC convolution `(., kernel, strides, padding)` at `output_size`,
  applied to `inputs`, with autodiff's gradients.

  `kernel` is the forward convolution's (kh, kw, out, in), i.e. (kh, kw, features of the
  result, features of `inputs`), as torch's ConvTranspose2d and TF's conv2d_transpose define
  it. Written as a VJP because that is the transpose by definition, for any padding.
  """
  result_shape = (inputs.shape[0], *output_size, kernel.shape[2])
  _, transpose = jax.vjp(
      lambda result: jax.lax.conv_general_dilated(result, kernel, strides, padding,
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC")),
      jnp.zeros(result_shape, inputs.dtype))
  return transpose(inputs)[0]


def plain_convolve_each(padded: jax.Array, kernels: jax.Array) -> jax.Array:
  """Each image of `padded` (N, H + k - 1, W + k - 1, C) convolved ('valid') with its own
  kernel of `kernels` (N, k, k): (N, H, W, C).

  One depthwise convolution over the batch folded into channels, so the whole batch is one
  call whatever N is.
  """
  n, padded_height, padded_width, channels = padded.shape
  size = kernels.shape[-1]
  height, width = padded_height - size + 1, padded_width - size + 1
  stacked = jnp.moveaxis(padded, 0, 2).reshape(1, padded_height, padded_width, n * channels)
  # Correlation with the flipped kernel is convolution with the kernel.
  filters = jnp.repeat(kernels[:, ::-1, ::-1], channels, axis=0)  # (N*C, k, k)
  filters = jnp.moveaxis(filters, 0, -1)[:, :, None, :]  # HWIO with I=1, O=N*C
  convolved = jax.lax.conv_general_dilated(
      stacked, filters.astype(stacked.dtype), (1, 1), "VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=n * channels)
  return jnp.moveaxis(convolved.reshape(height, width, n, channels), 2, 0)


def default_conv() -> ConvFn:
  """The convolution the networks compute with: the XLA:CPU rewrite, or the plain one."""
  if cpu_tricks_apply():
    return cpu_convolutions.conv_general_dilated
  return jax.lax.conv_general_dilated


def default_transposed_conv() -> TransposedConvFn:
  """The transposed convolution of the networks: the XLA:CPU rewrite, or the plain one."""
  if cpu_tricks_apply():
    return cpu_convolutions.transposed_conv
  return plain_transposed_conv


def default_convolve_each() -> ConvolveEachFn:
  """Each image with its own kernel (`plain_convolve_each`): through FFTs on a CPU, else the
  grouped convolution."""
  if cpu_tricks_apply():
    return cpu_convolutions.convolve_each
  return plain_convolve_each
