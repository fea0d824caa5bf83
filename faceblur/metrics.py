"""Image-quality metrics: PSNR and SSIM per image, jitted and batched, matching scikit-image.

Images are NHWC floats in [0, `max_value`]. Nothing is clipped or quantised here: clip network
outputs to [0, 1] first (as the deblurring literature does before saving its results).

* `psnr` = 10 log10(max_value^2 / MSE), the MSE over every pixel and channel of one image;
  identical images give +inf, as `skimage.metrics.peak_signal_noise_ratio` does.
* `ssim` follows Wang et al. (2004) as `skimage.metrics.structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=max_value,
  channel_axis=-1)`: an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, the SSIM map
  averaged over the positions where the window fits inside the image (a 5-pixel border is left
  out), and for colour images the mean of the per-channel SSIMs. Images must be at least 11
  pixels on each side. (dm_pix.ssim clips the local variances, which skimage does not; this
  module reproduces skimage.)
* `ssim_matlab` is MATLAB's `ssim` on an RGB image, which the GoPro and HIDE scripts call: the
  HxWx3 array is one volume, filtered by an 11x11x11 Gaussian (sigma 1.5, the channel axis
  included) with replicated borders, and the map averaged over every pixel and channel (the
  form NAFNet's `ssim3d` reproduces). On one channel (Y) it is the 2-D Gaussian with
  replicated borders.
* `y_channel=True` first converts RGB to ITU-R BT.601 luma (`rgb_to_y`), as MATLAB's
  `rgb2ycbcr` and most deblurring papers do.

They live beside the losses, below both training (the SRN test hook) and evaluation, so
neither reaches into the other for them.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from faceblur.images import BT601_LUMA

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# BT.601 luma on the studio range for RGB in [0, 1]: Y = 16/255 + 219/255 (0.299 R + 0.587 G
# + 0.114 B), i.e. (65.481 R + 128.553 G + 24.966 B) / 255.
_Y_OFFSET = 16.0 / 255.0
_Y_WEIGHTS = tuple(weight * 219.0 / 255.0 for weight in BT601_LUMA)


def rgb_to_y(images) -> jax.Array:
  """BT.601 luma (..., H, W, 3) -> (..., H, W, 1), in [16/255, 235/255] for RGB in [0, 1]."""
  images = jnp.asarray(images, jnp.float32)
  if images.shape[-1] != 3:
    raise ValueError(f"rgb_to_y expects 3 channels last, got shape {images.shape}")
  weights = jnp.asarray(_Y_WEIGHTS, jnp.float32)
  return (_Y_OFFSET + jnp.sum(images * weights, axis=-1, keepdims=True)).astype(jnp.float32)


def _prepare(restored, reference, y_channel: bool) -> tuple[jax.Array, jax.Array]:
  restored = jnp.asarray(restored, jnp.float32)
  reference = jnp.asarray(reference, jnp.float32)
  if restored.ndim != 4 or restored.shape != reference.shape:
    raise ValueError(f"expected two NHWC batches of the same shape, got {restored.shape} and "
                     f"{reference.shape}")
  if y_channel:
    restored, reference = rgb_to_y(restored), rgb_to_y(reference)
  return restored, reference


@functools.partial(jax.jit, static_argnames=("max_value", "y_channel"))
def psnr(restored, reference, *, max_value: float = 1.0, y_channel: bool = False) -> jax.Array:
  """Peak signal-to-noise ratio in dB of each image of the batch: shape (N,); inf if equal."""
  restored, reference = _prepare(restored, reference, y_channel)
  squared = jnp.square(restored - reference)
  # Sum rows first, then the image: keeps float32 sums of large images accurate.
  mse = jnp.sum(jnp.sum(squared, axis=(2, 3)), axis=1) / np.prod(squared.shape[1:])
  return 10.0 * jnp.log10(max_value**2 / mse)


def _gaussian_window() -> np.ndarray:
  radius = SSIM_WINDOW // 2
  window = np.exp(-0.5 * (np.arange(-radius, radius + 1) / SSIM_SIGMA) ** 2)
  return (window / window.sum()).astype(np.float32)


def _filter_valid(images: jax.Array) -> jax.Array:
  """Separable Gaussian filtering of each channel of NHWC images, 'valid' positions only.

  A weighted sum of shifted slices per axis rather than a per-channel (grouped) convolution,
  which XLA:CPU computes over ten times slower; the sums agree to float rounding.
  """
  window = _gaussian_window()
  for axis in (1, 2):
    length = images.shape[axis] - SSIM_WINDOW + 1
    images = sum(float(weight) * jax.lax.slice_in_dim(images, offset, offset + length, axis=axis)
                 for offset, weight in enumerate(window))
  return images


def _mean_ssim(ux, uy, uxx, uyy, uxy, x_mean, y_mean, max_value: float) -> jax.Array:
  """SSIM averaged per image from the filtered moments of mean-removed images (the means are
  added back to mu): the SSIM of Wang et al. 2004, whatever the window."""
  vx = uxx - ux * ux
  vy = uyy - uy * uy
  vxy = uxy - ux * uy
  ux, uy = ux + x_mean, uy + y_mean
  c1 = (SSIM_K1 * max_value) ** 2
  c2 = (SSIM_K2 * max_value) ** 2
  ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
  return jnp.mean(ssim_map, axis=(1, 2, 3))


@functools.partial(jax.jit, static_argnames=("max_value", "y_channel"))
def ssim(restored, reference, *, max_value: float = 1.0, y_channel: bool = False) -> jax.Array:
  """Mean structural similarity of each image of the batch (mean over channels): shape (N,)."""
  x, y = _prepare(restored, reference, y_channel)
  if min(x.shape[1:3]) < SSIM_WINDOW:
    raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got "
                     f"{x.shape[1]}x{x.shape[2]}")
  # Remove each image's per-channel mean: SSIM's variances and covariance do not change, and
  # E[x^2] - E[x]^2 in float32 loses less to cancellation. The means are added back for mu.
  x_mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  y_mean = jnp.mean(y, axis=(1, 2), keepdims=True)
  xc, yc = x - x_mean, y - y_mean
  filtered = _filter_valid(jnp.concatenate([xc, yc, xc * xc, yc * yc, xc * yc], axis=-1))
  return _mean_ssim(*jnp.split(filtered, 5, axis=-1), x_mean, y_mean, max_value)



def _replicate_mixing(channels: int) -> np.ndarray:
  """The channel axis of MATLAB's 3-D filter as a (C, C) matrix: the 11-tap Gaussian over
  channels padded by replication (channel c reads channel clip(c + k - 5, 0, C - 1))."""
  window = _gaussian_window().astype(np.float64)
  radius = SSIM_WINDOW // 2
  mixing = np.zeros((channels, channels))
  for out in range(channels):
    for tap, weight in enumerate(window):
      mixing[out, min(max(out + tap - radius, 0), channels - 1)] += weight
  return mixing.astype(np.float32)


def _filter_same_replicate(images: jax.Array) -> jax.Array:
  """The 3-D Gaussian of `ssim_matlab` on NHWC images: separable over H and W with replicated
  borders ('same' size), then the channel mixing of `_replicate_mixing`."""
  radius = SSIM_WINDOW // 2
  padded = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
  filtered = _filter_valid(padded)
  return jnp.einsum("nhwc,dc->nhwd", filtered, _replicate_mixing(images.shape[-1]))


@functools.partial(jax.jit, static_argnames=("max_value", "y_channel"))
def ssim_matlab(restored, reference, *, max_value: float = 1.0,
                y_channel: bool = False) -> jax.Array:
  """MATLAB's `ssim` of each image of the batch: shape (N,). RGB is scored as one 3-D volume,
  as the GoPro/HIDE evaluation scripts do (not the mean of per-channel SSIMs)."""
  x, y = _prepare(restored, reference, y_channel)
  # A per-image constant (not per channel: the filter mixes channels) leaves the local
  # variances and covariance unchanged and keeps float32 accurate; added back for mu.
  x_mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  y_mean = jnp.mean(y, axis=(1, 2, 3), keepdims=True)
  xc, yc = x - x_mean, y - y_mean
  filtered = [_filter_same_replicate(image) for image in (xc, yc, xc * xc, yc * yc, xc * yc)]
  return _mean_ssim(*filtered, x_mean, y_mean, max_value)
