"""A sharp -> blurred generator that can only blur: G(sharp, z) predicts a blur, not pixels.

A CycleGAN's image-to-image G is free to paint any output, and the sharp -> blurred ->
sharp cycle then rewards a mild, invertible blur that hides the sharp face in a faint
high-frequency signal (Chu et al. 2017). This G cannot: from a random code z alone (never
from the image, so no content can leak into the blur) it predicts

* a non-negative blur kernel that sums to 1 (a softmax over a k x k grid), applied to the
  sharp image in linear light, where a camera integrates photons; and
* the two parameters (a, b) of signal-dependent sensor noise, variance a * y + b in linear
  light, the Gaussian approximation of Poisson-Gaussian noise,

then re-encodes to sRGB and, optionally, passes it through JPEG at a random quality. Its
output before JPEG is therefore a convex blend of the input's pixels (in linear light) plus
zero-mean noise, and adds no energy above the input's spectrum beyond the noise (with
`tone_curve=True`, one global contrast curve follows, a monotone map of values that reorders
nothing, as a camera's tone step does: Brooks et al., CVPR 2019): it is the
degradation model of PDM (Luo et al., CVPR 2022) and KernelGAN (Bell-Kligler et al., NeurIPS
2019), with RSBlur's (Rim et al., ECCV 2022) linear light and signal-dependent noise. Not
modelled: blur that varies across the frame.

The kernel is re-centred on its centre of mass (KernelGAN's centring prior, made a
constraint): a camera's blur leaves each pixel's light centred on it, and an off-centre kernel
would shift G(sharp) against sharp, so that stage 2 learns to shift instead of to deblur.
JPEG, which photos from phones carry and a critic notices at once, is the real codec (PIL)
in the forward pass and the identity in the backward one (a straight-through estimator).

Adam moves each parameter by about the learning rate per step, so logits of a few units
would take tens of thousands of steps at CycleGAN's 2e-4; the heads' outputs are therefore
scaled by `head_scale` (the runtime weight scaling of Karras et al.'s equalised learning
rate). The kernel starts as a Gaussian of `initial_sigma` px.
"""

import io

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from faceblur import ops
from faceblur.ops import ConvolveEachFn

_SRGB_KNEE = 0.04045


def srgb_to_linear(srgb: jax.Array) -> jax.Array:
  """The sRGB EOTF, with a gradient that stays finite at 0."""
  srgb = jnp.clip(srgb, 0.0, 1.0)
  curve = ((jnp.maximum(srgb, _SRGB_KNEE) + 0.055) / 1.055) ** 2.4
  return jnp.where(srgb <= _SRGB_KNEE, srgb / 12.92, curve)


def linear_to_srgb(linear: jax.Array) -> jax.Array:
  """The sRGB OETF (the inverse of `srgb_to_linear`), input clipped to [0, 1]."""
  linear = jnp.clip(linear, 0.0, 1.0)
  curve = 1.055 * jnp.maximum(linear, 0.0031308) ** (1 / 2.4) - 0.055
  return jnp.where(linear <= 0.0031308, linear * 12.92, curve)


def blur_each(images: jax.Array, kernels: jax.Array,
              convolve_each: ConvolveEachFn | None = None) -> jax.Array:
  """Each image (N, H, W, C) convolved with its own kernel (N, k, k), edges mirrored, through
  `convolve_each` (by default `faceblur.ops.default_convolve_each()`)."""
  pad = kernels.shape[-1] // 2
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="symmetric")
  return (convolve_each or ops.default_convolve_each())(padded, kernels)


def centre_kernels(kernels: jax.Array) -> jax.Array:
  """Kernels (N, k, k) moved (bilinearly) so that their centre of mass is the middle tap;
  still non-negative and summing to 1."""
  size = kernels.shape[-1]
  offsets = jnp.arange(size, dtype=jnp.float32) - size // 2

  def shift(kernel, by):
    return jax.image.scale_and_translate(kernel, (size, size), (0, 1), jnp.ones(2), -by,
                                         "linear", antialias=False)

  # Twice: a shift that pushes some mass past the grid's edge leaves a remainder.
  for _ in range(2):
    centre = jnp.stack([jnp.einsum("nij,i->n", kernels, offsets),
                        jnp.einsum("nij,j->n", kernels, offsets)], axis=-1)
    kernels = jnp.maximum(jax.vmap(shift)(kernels, centre), 0.0)
    kernels = kernels / jnp.sum(kernels, axis=(1, 2), keepdims=True)
  return kernels


def contrast_curve(srgb: jax.Array, strength: jax.Array) -> jax.Array:
  """y = x + k (smoothstep(x) - x), k in (-1, 1): monotone (it reorders no values), fixes 0,
  1/2 and 1; k > 0 adds contrast (slope 1 + k / 2 at mid-grey), as a phone's tone curve does."""
  return srgb + strength * (srgb * srgb * (3.0 - 2.0 * srgb) - srgb)


def jpeg_round_trip(images: np.ndarray, qualities: np.ndarray) -> np.ndarray:
  """Each float [0, 1] image (N, H, W, 3) through PIL's JPEG at its quality, on the host."""
  decoded = []
  for image, quality in zip(np.asarray(images), np.asarray(qualities), strict=True):
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as handle:
      decoded.append(np.asarray(handle.convert("RGB"), np.float32) / 255)
  return np.stack(decoded)


def jpeg_straight_through(images: jax.Array, qualities: jax.Array) -> jax.Array:
  """Each image (N, H, W, 3) in [0, 1] through JPEG at its quality: the codec's output
  forward, the identity's gradient backward."""
  coded = jax.pure_callback(jpeg_round_trip, jax.ShapeDtypeStruct(images.shape, jnp.float32),
                            jax.lax.stop_gradient(images), qualities,
                            vmap_method="sequential")
  return images + jax.lax.stop_gradient(coded - images)


class KernelBlurGenerator(nnx.Module):
  """G(sharp, z): a per-image blur kernel and noise level predicted from the code z.

  `code_dim` is z's size (z ~ N(0, I), drawn by the caller); `kernel_size` the kernel's
  side (odd), which bounds the blur's extent; `jpeg_quality` (low, high): each noisy output
  goes through JPEG at a quality drawn uniformly from that range (None: no JPEG);
  `convolve_each` blurs each image with its kernel (by default
  `faceblur.ops.default_convolve_each()`).
  """

  def __init__(self, *, kernel_size: int = 21, code_dim: int = 8, hidden: int = 64,
               head_scale: float = 20.0, initial_sigma: float = 1.0,
               initial_photons: float = 1000.0, initial_read_noise: float = 0.002,
               jpeg_quality: tuple[int, int] | None = None, tone_curve: bool = False,
               convolve_each: ConvolveEachFn | None = None, rngs: nnx.Rngs):
    if kernel_size % 2 != 1 or kernel_size < 1:
      raise ValueError(f"kernel_size={kernel_size} must be odd and positive")
    self.kernel_size, self.code_dim, self.head_scale = kernel_size, code_dim, head_scale
    self.jpeg_quality = None if jpeg_quality is None else tuple(int(q) for q in jpeg_quality)
    self.convolve_each = convolve_each or ops.default_convolve_each()
    self.hidden = nnx.Linear(code_dim, hidden, rngs=rngs)
    small = nnx.initializers.normal(1e-3)
    self.kernel_head = nnx.Linear(hidden, kernel_size * kernel_size, kernel_init=small,
                                  rngs=rngs)
    self.noise_head = nnx.Linear(hidden, 2, kernel_init=small, rngs=rngs)
    # One contrast strength for every image, not one per code: a camera's tone curve is a
    # property of the camera, and a per-code strength gave the mode-seeking term a spread
    # to buy, which ran the curves to both extremes. Starts at no curve.
    self.tone_strength = nnx.Param(jnp.zeros((), jnp.float32)) if tone_curve else None
    offsets = jnp.arange(kernel_size) - kernel_size // 2
    radius2 = (offsets[:, None] ** 2 + offsets[None, :] ** 2).reshape(-1)
    self.kernel_head.bias[...] = -radius2 / (2 * initial_sigma ** 2) / head_scale
    # log a (1 / photons at white) and log b (read-noise variance), over head_scale.
    self.noise_head.bias[...] = jnp.array(
        [-jnp.log(initial_photons), 2 * jnp.log(initial_read_noise)]) / head_scale

  def blur_parameters(self, codes: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Codes (N, code_dim) -> kernels (N, k, k) (non-negative, each sums to 1) and noise
    parameters (N, 2): a and b of the variance a * y + b in linear light."""
    hidden = jax.nn.relu(self.hidden(codes.astype(jnp.float32)))
    logits = self.head_scale * self.kernel_head(hidden)
    kernels = centre_kernels(jax.nn.softmax(logits, axis=-1).reshape(
        -1, self.kernel_size, self.kernel_size))
    noise = jnp.exp(self.head_scale * self.noise_head(hidden))
    return kernels, noise

  def __call__(self, images: jax.Array, codes: jax.Array | None = None,
               noise_keys: jax.Array | None = None) -> jax.Array:
    """(N, H, W, 3) in [0, 1] -> blurred float32 [0, 1]. `codes=None`: z = 0 (the mean blur);
    `noise_keys` (one key per image), None: no noise and no JPEG."""
    images = images.astype(jnp.float32)
    n = images.shape[0]
    if codes is None:
      codes = jnp.zeros((n, self.code_dim), jnp.float32)
    kernels, noise = self.blur_parameters(codes)
    blurred = blur_each(srgb_to_linear(images), kernels, self.convolve_each)
    if noise_keys is not None:
      variance = noise[:, 0, None, None, None] * jnp.clip(blurred, 0.0, 1.0) \
          + noise[:, 1, None, None, None]
      normal = jax.vmap(lambda key: jax.random.normal(key, images.shape[1:]))(noise_keys)
      blurred = blurred + jnp.sqrt(variance) * normal
    output = linear_to_srgb(blurred)
    if self.tone_strength is not None:
      output = contrast_curve(output, jnp.tanh(self.head_scale * self.tone_strength[...]))
    if noise_keys is not None and self.jpeg_quality is not None:
      low, high = self.jpeg_quality
      qualities = jax.vmap(lambda key: jax.random.randint(
          jax.random.fold_in(key, 1), (), low, high + 1))(noise_keys)
      output = jpeg_straight_through(output, qualities)
    return output
