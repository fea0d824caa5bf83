"""Convolutions and their gradients in the forms XLA:CPU computes fastest.

Every function here has the value and gradients of `jax.lax.conv_general_dilated` and autodiff
(up to the order of summation; `tests/test_ops.py` checks them against autodiff of the plain
convolution). XLA:CPU computes some convolutions, and many gradients, at a fraction of its
usual speed: strided and transposed ones through zero-dilated operands, ones to a few (RGB)
features, and kernel gradients with the batch as the contracted feature. These rewrites avoid
those forms, and the grouped convolution that blurs each image with its own kernel. The
networks get them only through `faceblur.ops.default_conv()`, `default_transposed_conv()` and
`default_convolve_each()`, on a CPU with the switch on; the figures behind each form are in
`bench/RESULTS.md` ("Why each CPU convolution form exists").
"""

import functools

import jax
import jax.numpy as jnp

_NHWC = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], tuple[int, int]]


def _conv(inputs: jax.Array, kernel: jax.Array, strides: tuple[int, int],
          padding: Padding) -> jax.Array:
  return jax.lax.conv_general_dilated(inputs, kernel, strides, padding, dimension_numbers=_NHWC)


# Widest input for which `_kernel_gradient` beats XLA's own kernel gradient on CPUs, and the
# input-channel group size that suits XLA:CPU's convolution for narrow layers; both measured at
# SRN's and CycleGAN's shapes (bench/RESULTS.md).
_FAST_GRADIENT_MAX_FEATURES = 128
_NARROW_GROUP = 8
# Most output features of a stride-1 convolution that `_narrow_conv` computes (RGB outputs).
_NARROW_OUTPUT_MAX_FEATURES = 4
# Most extra rows per upstream row that `_tall_correlation` may compute (the kernel's taps - 1
# of zero rows between images, over the output's height): on small images, 5x5 kernels at 12 px
# and below, that waste costs more than XLA's own kernel gradient loses (SRN at the demo's
# 48 px crops, bench/RESULTS.md).
_TALL_MAX_WASTE = 0.25


def conv_general_dilated(inputs: jax.Array, kernel: jax.Array, window_strides, padding,
                         lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, batch_group_count: int = 1,
                         precision=None, preferred_element_type=None,
                         out_sharding=None) -> jax.Array:
  """`jax.lax.conv_general_dilated` with gradients that XLA:CPU computes faster; pass it to
  `nnx.Conv(conv_general_dilated=...)` (what `faceblur.ops.default_conv()` chooses on a CPU).

  The same values (up to the order of summation) on every backend. On a CPU, plain NHWC
  convolutions (any stride, no dilation or groups) are reformulated where XLA:CPU is slow:
  stride-1 ones to a few output features by `_narrow_conv`; input gradients by
  `_input_gradient`; kernel gradients, with up to 128 input features, by `_kernel_gradient`
  (where the output is tall enough, `_tall_pays`) or `_narrow_kernel_gradient`, the others by
  XLA over the input padded beforehand.
  Everything else is `jax.lax.conv_general_dilated` itself.
  """
  kwargs = dict(lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
                batch_group_count=batch_group_count, precision=precision,
                preferred_element_type=preferred_element_type, out_sharding=out_sharding)
  fast = (jax.default_backend() == "cpu"
          and inputs.ndim == 4
          and all(d in (None, 1, (1, 1)) for d in (lhs_dilation, rhs_dilation))
          and feature_group_count == 1 and batch_group_count == 1
          and precision is None and preferred_element_type is None and out_sharding is None
          and jax.lax.conv_dimension_numbers(inputs.shape, kernel.shape, dimension_numbers)
          == jax.lax.conv_dimension_numbers(inputs.shape, kernel.shape, _NHWC))
  if fast:
    strides = tuple(int(stride) for stride in window_strides)
    if isinstance(padding, str):
      padding = jax.lax.padtype_to_pads(inputs.shape[1:3], kernel.shape[:2], strides, padding)
    padding = tuple((int(low), int(high)) for low, high in padding)
    fast = all(pad >= 0 for pair in padding for pad in pair)
  if not fast:
    return jax.lax.conv_general_dilated(inputs, kernel, window_strides, padding, **kwargs)
  return _conv_fast_gradients(inputs, kernel, strides, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_fast_gradients(inputs: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                         padding: Padding) -> jax.Array:
  if strides == (1, 1) and _is_narrow(kernel.shape[3], kernel.shape[:2]):
    return _narrow_conv(inputs, kernel, padding)
  return _conv(inputs, kernel, strides, padding)


def _conv_fast_gradients_forward(inputs, kernel, strides, padding):
  return _conv_fast_gradients(inputs, kernel, strides, padding), (inputs, kernel)


def _conv_fast_gradients_backward(strides, padding, residuals, upstream):
  inputs, kernel = residuals
  inputs_grad = _input_gradient(upstream, kernel, strides, padding, inputs.shape[1:3])
  fast = inputs.shape[-1] <= _FAST_GRADIENT_MAX_FEATURES
  if fast and strides == (1, 1) and _is_narrow(kernel.shape[3], kernel.shape[:2]):
    kernel_grad = _narrow_kernel_gradient(inputs, upstream, kernel.shape[:2], padding)
  elif fast and _tall_pays(upstream.shape[1], kernel.shape[0], strides[0]):
    kernel_grad = _kernel_gradient(inputs, upstream, kernel.shape[:2], strides, padding)
  else:
    # XLA's own, over the input padded beforehand: XLA:CPU computes the kernel gradient of a
    # padded convolution several times slower (PatchGAN's last layer, 4x4 512->1).
    padded = jnp.pad(inputs, ((0, 0), *padding, (0, 0)))
    _, kernel_transpose = jax.vjp(lambda k: _conv(padded, k, strides, ((0, 0), (0, 0))), kernel)
    kernel_grad = kernel_transpose(upstream)[0]
  return inputs_grad.astype(inputs.dtype), kernel_grad.astype(kernel.dtype)


_conv_fast_gradients.defvjp(_conv_fast_gradients_forward, _conv_fast_gradients_backward)


def _tall_pays(upstream_height: int, kernel_height: int, stride: int) -> bool:
  """Whether `_kernel_gradient`'s tall image wastes little enough on its gaps to beat XLA's own
  kernel gradient: (taps per phase - 1) zero rows per `upstream_height` rows."""
  taps = -(-kernel_height // stride)
  return taps - 1 <= _TALL_MAX_WASTE * upstream_height


def _is_narrow(out_features: int, kernel_size: tuple[int, ...]) -> bool:
  return out_features <= _NARROW_OUTPUT_MAX_FEATURES and kernel_size[0] * kernel_size[1] > 1


def _narrow_conv(inputs: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
  """A stride-1 convolution to a few output features (RGB), as one matrix product from the
  input features to every (tap, output feature) pair, then a sum of the products shifted by
  their tap.

  XLA:CPU runs convolutions to 3 features at a fraction of its usual speed, and a matrix
  product at its full speed: CycleGAN's last layer (7x7 64->3) is computed this way, and so is
  the input gradient of its first layer (the transpose of a convolution from 3 features).
  """
  kernel_h, kernel_w, in_features, out_features = kernel.shape
  padded = jnp.pad(inputs, ((0, 0), *padding, (0, 0)))
  out_h, out_w = padded.shape[1] - kernel_h + 1, padded.shape[2] - kernel_w + 1
  weights = kernel.transpose(2, 0, 1, 3).reshape(in_features, kernel_h * kernel_w * out_features)
  products = jax.lax.dot_general(padded, weights, (((3,), (0,)), ((), ())))
  result = None
  for tap in range(kernel_h * kernel_w):
    row, column = divmod(tap, kernel_w)
    shifted = products[:, row:row + out_h, column:column + out_w,
                       tap * out_features:(tap + 1) * out_features]
    result = shifted if result is None else result + shifted
  return result


def _narrow_kernel_gradient(inputs: jax.Array, upstream: jax.Array,
                            kernel_size: tuple[int, int], padding: Padding) -> jax.Array:
  """The kernel gradient of a stride-1 convolution to a few output features.

  Written as XLA asks for it, a convolution with the batch as the contracted feature, its
  output features are the few ones, which XLA:CPU computes slowly (CycleGAN's 7x7 64->3).
  Here the roles are swapped: the upstream gradient, padded by the kernel size - 1, is the
  image (batch: output features, features: the batch) and the padded input the kernel, so the
  many input features are the outputs, which XLA:CPU computes fast.
  """
  kernel_h, kernel_w = kernel_size
  padded = jnp.pad(inputs, ((0, 0), *padding, (0, 0)))
  upstream = jnp.pad(upstream, ((0, 0), (kernel_h - 1, kernel_h - 1),
                                (kernel_w - 1, kernel_w - 1), (0, 0)))
  grad = _conv(upstream.transpose(3, 1, 2, 0), padded.transpose(1, 2, 0, 3), (1, 1),
               ((0, 0), (0, 0)))  # (out features, taps reversed, in features)
  return grad[:, ::-1, ::-1].transpose(1, 2, 3, 0)


def _input_gradient(upstream: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                    padding: Padding, input_size: tuple[int, int]) -> jax.Array:
  """The transpose of `_conv(., kernel, strides, padding)` from `input_size`, applied to
  `upstream`: a strided convolution's input gradient, or a transposed convolution.

  Autodiff gives a convolution over `upstream` dilated with stride-1 zeros, which XLA:CPU
  computes at the dilated size (4x the work at stride 2). Split by the phase of each output
  pixel (its position modulo the stride) it is one small stride-1 convolution per phase over
  `upstream` itself, interleaved afterwards: only the work without the zeros (CycleGAN's and
  SRN's transposed convolutions, the input gradients of their strided ones).
  """
  result_shape = (upstream.shape[0], *input_size, kernel.shape[2])
  sides = list(zip(strides, kernel.shape[:2], padding, input_size, upstream.shape[1:3],
                   strict=True))
  # At stride 1 the transpose is the convolution with the flipped kernel, padded by the
  # kernel size - 1 less the forward padding.
  flipped_padding = tuple((size - 1 - low, size - 1 - high)
                          for size, (low, high) in zip(kernel.shape[:2], padding, strict=True))
  if (strides == (1, 1) and jax.default_backend() == "cpu" and _is_narrow(kernel.shape[2],
                                                                           kernel.shape[:2])
      and all(pad >= 0 for pair in flipped_padding for pad in pair)):
    flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)
    return _narrow_conv(upstream, flipped, flipped_padding)
  if (strides == (1, 1) or jax.default_backend() != "cpu"
      or any(size % stride for stride, _, _, size, _ in sides)):
    _, transpose = jax.vjp(lambda result: _conv(result, kernel, strides, padding),
                           jnp.zeros(result_shape, upstream.dtype))
    return transpose(upstream)[0]

  def phase_taps(phase, stride, size, pad, result_size, upstream_size):
    # Result pixel stride * u + phase gathers kernel taps first, first + stride, ... from
    # upstream pixels u + offset - m: a correlation with those taps reversed.
    first, offset = (phase + pad[0]) % stride, (phase + pad[0]) // stride
    taps = list(range(first, size, stride))[::-1]
    low = len(taps) - 1 - offset
    high = result_size // stride - upstream_size + offset
    return taps, (low, high)

  rows = []
  for phase_h in range(strides[0]):
    row = []
    for phase_w in range(strides[1]):
      (taps_h, pad_h), (taps_w, pad_w) = (
          phase_taps(phase, *side) for phase, side in zip((phase_h, phase_w), sides, strict=True))
      phase_shape = (upstream.shape[0], input_size[0] // strides[0],
                     input_size[1] // strides[1], kernel.shape[2])
      if not taps_h or not taps_w:
        row.append(jnp.zeros(phase_shape, upstream.dtype))
        continue
      phase_kernel = kernel[jnp.array(taps_h)][:, jnp.array(taps_w)].transpose(0, 1, 3, 2)
      row.append(_conv(upstream, phase_kernel, (1, 1), (pad_h, pad_w)))
    rows.append(jnp.stack(row, axis=3))
  return jnp.stack(rows, axis=2).reshape(result_shape)


def _channels_first(features: jax.Array) -> jax.Array:
  """(N, H, W, C) -> (C, N, H, W) as a product with the identity: XLA:CPU's transpose emitter
  moves these slower than its matrix product does (exact, finite inputs)."""
  n, h, w, c = features.shape
  identity = jnp.eye(c, dtype=features.dtype)
  flat = jax.lax.dot_general(identity, features.reshape(-1, c), (((1,), (1,)), ((), ())))
  return flat.reshape(c, n, h, w)


def _kernel_gradient(inputs: jax.Array, upstream: jax.Array, kernel_size: tuple[int, int],
                     strides: tuple[int, int], padding: Padding) -> jax.Array:
  """d(loss)/d(kernel) of an NHWC convolution, as XLA:CPU computes it fastest.

  The kernel gradient is the correlation of the padded input with the upstream gradient,
  summed over the batch. Autodiff asks XLA for one convolution with the batch as its
  contracted feature, which XLA:CPU lays out by transposing both operands batch-innermost and
  runs on two threads slower than on one for narrow layers (SRN's 5x5 32->32); for strided
  layers it is a correlation dilated by the stride, which XLA:CPU computes at a fraction of
  its usual speed (CycleGAN's 3x3 stride-2 64->128). Here the input is put channels-first by
  `_channels_first` and padded once; taps of the same phase (position modulo the stride) see
  the input subsampled by the stride, so each phase is a stride-1 correlation of that
  subsampled input (one phase at stride 1). Each is computed over one tall image (the padded
  images stacked, each followed by kernel-height-1 zero rows of upstream gradient, so no
  window straddles two images), in groups of `_NARROW_GROUP` input channels for narrow
  inputs, which XLA:CPU parallelises well.
  """
  in_features = inputs.shape[-1]
  out_h, out_w = upstream.shape[1:3]
  (top, bottom), (left, right) = padding
  padded = jnp.pad(_channels_first(inputs), ((0, 0), (0, 0), (top, bottom), (left, right)))
  group = _NARROW_GROUP if _NARROW_GROUP < in_features <= 32 else in_features
  grad = None
  for phase_h in range(min(strides[0], kernel_size[0])):
    for phase_w in range(min(strides[1], kernel_size[1])):
      taps_h = len(range(phase_h, kernel_size[0], strides[0]))
      taps_w = len(range(phase_w, kernel_size[1], strides[1]))
      phase_inputs = padded[:, :, phase_h::strides[0], phase_w::strides[1]]
      phase_inputs = phase_inputs[:, :, :out_h + taps_h - 1, :out_w + taps_w - 1]
      phase_grad = _tall_correlation(phase_inputs, upstream, group)
      if strides == (1, 1):
        return phase_grad
      if grad is None:
        grad = jnp.zeros((*kernel_size, in_features, upstream.shape[-1]), upstream.dtype)
      grad = grad.at[phase_h::strides[0], phase_w::strides[1]].set(phase_grad)
  return grad


def _tall_correlation(inputs: jax.Array, upstream: jax.Array, group: int) -> jax.Array:
  """Sum over the batch of the VALID correlations of channels-first `inputs` (C, N, H, W)
  with `upstream` (N, H', W', O): the (H-H'+1, W-W'+1, C, O) kernel gradient."""
  in_features, n, height, width = inputs.shape
  out_h, out_w, out_features = upstream.shape[1:]
  gap = height - out_h  # = kernel height - 1
  tall_inputs = inputs.reshape(in_features, n * height, width, 1)
  tall_upstream = jnp.pad(upstream, ((0, 0), (0, gap), (0, 0), (0, 0)))
  tall_upstream = tall_upstream.reshape(n * height, out_w, 1, out_features)[:n * height - gap]
  grads = [_conv(tall_inputs[start:start + group], tall_upstream, (1, 1), ((0, 0), (0, 0)))
           for start in range(0, in_features, group)]
  grad = grads[0] if len(grads) == 1 else jnp.concatenate(grads, axis=0)
  return grad.transpose(1, 2, 0, 3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def transposed_conv(inputs: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                    padding: Padding, output_size: tuple[int, int]) -> jax.Array:
  """The exact transpose (input gradient) of `conv(., kernel, strides, padding)` at `output_size`.

  `kernel` is the forward convolution's (kh, kw, out, in) kernel, i.e. (kh, kw, features of
  the result, features of `inputs`), as torch's ConvTranspose2d and TF's conv2d_transpose
  define it. Why a custom VJP: XLA:CPU computes the kernel gradient of an input-dilated
  convolution (what autodiff gives for a transposed convolution) with a naive loop, far
  slower than a strided convolution's; the same gradient is the kernel gradient of the strided
  convolution `conv(upstream, kernel)` at `inputs`, which is fast on every backend.
  `faceblur.ops.plain_transposed_conv` is the same transpose with autodiff's gradients.
  """
  return _input_gradient(inputs, kernel, strides, padding, output_size)


def _transposed_conv_forward(inputs, kernel, strides, padding, output_size):
  return transposed_conv(inputs, kernel, strides, padding, output_size), (inputs, kernel)


def _transposed_conv_backward(strides, padding, output_size, residuals, upstream):
  del output_size
  inputs, kernel = residuals
  inputs_grad = _conv(upstream, kernel, strides, padding)
  if (jax.default_backend() == "cpu" and upstream.shape[-1] <= _FAST_GRADIENT_MAX_FEATURES
      and _tall_pays(inputs.shape[1], kernel.shape[0], strides[0])):
    kernel_grad = _kernel_gradient(upstream, inputs.astype(upstream.dtype), kernel.shape[:2],
                                   strides, padding)
  else:
    _, kernel_transpose = jax.vjp(lambda k: _conv(upstream, k, strides, padding), kernel)
    kernel_grad = kernel_transpose(inputs.astype(upstream.dtype))[0]
  return inputs_grad.astype(inputs.dtype), kernel_grad.astype(kernel.dtype)


transposed_conv.defvjp(_transposed_conv_forward, _transposed_conv_backward)


def convolve_each(padded: jax.Array, kernels: jax.Array) -> jax.Array:
  """`faceblur.ops.plain_convolve_each` through FFTs, with autodiff's gradients.

  XLA:CPU runs the grouped convolution of the plain form, one group per image and channel, at
  a few GFLOP/s, and its input gradient slower still; two real 2-D FFTs of the padded planes
  cost a fraction of that. The product of the spectra is the circular convolution over the
  padded size, which equals the linear one wherever the kernel does not wrap around: the
  'valid' outputs, from row and column k - 1 on.
  """
  n, padded_height, padded_width, _ = padded.shape
  size = kernels.shape[-1]
  dtype = padded.dtype
  padded = padded.astype(jnp.float32)  # FFTs take no bfloat16
  kernel_planes = jnp.pad(kernels.astype(jnp.float32),
                          ((0, 0), (0, padded_height - size), (0, padded_width - size)))
  spectrum = (jnp.fft.rfft2(padded, axes=(1, 2))
              * jnp.fft.rfft2(kernel_planes, axes=(1, 2))[..., None])
  circular = jnp.fft.irfft2(spectrum, s=(padded_height, padded_width), axes=(1, 2))
  return circular[:, size - 1:, size - 1:, :].astype(dtype)
