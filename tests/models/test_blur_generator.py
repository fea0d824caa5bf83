"""The kernel-blur G can only blur: a convex blend of the input (in linear light) plus
zero-mean noise, with no energy above the input's spectrum beyond the noise's; and the CNN G's
anti-steganography options keep their promises."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from faceblur.data import camera_blur
from faceblur.models import ResnetGenerator, blur_generator
from faceblur.models.blur_generator import KernelBlurGenerator


def trained_like(seed: int = 0, **options) -> KernelBlurGenerator:
  """A G whose heads depend strongly on z (as after training), so kernels differ per image."""
  g = KernelBlurGenerator(kernel_size=9, code_dim=4, rngs=nnx.Rngs(seed), **options)
  key = jax.random.key(seed + 1)
  g.kernel_head.kernel[...] = 0.05 * jax.random.normal(key, g.kernel_head.kernel[...].shape)
  return g


def faces(count: int = 3, size: int = 32) -> jax.Array:
  rng = np.random.default_rng(0)
  return jnp.asarray(rng.uniform(0.05, 0.95, (count, size, size, 3)), jnp.float32)


def test_srgb_round_trip_matches_the_camera():
  values = np.linspace(0, 1, 101, dtype=np.float32)
  np.testing.assert_allclose(blur_generator.srgb_to_linear(values),
                             camera_blur.srgb_to_linear(values), atol=1e-6)
  np.testing.assert_allclose(blur_generator.linear_to_srgb(blur_generator.srgb_to_linear(values)),
                             values, atol=1e-5)
  assert np.isfinite(jax.grad(lambda x: blur_generator.srgb_to_linear(x).sum())(
      jnp.zeros(3))).all()


def test_kernels_are_non_negative_and_sum_to_one():
  g = trained_like()
  kernels, noise = g.blur_parameters(jax.random.normal(jax.random.key(2), (5, 4)))
  assert kernels.shape == (5, 9, 9)
  assert (kernels >= 0).all()
  np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 1.0, atol=1e-5)
  assert (noise > 0).all()
  # Different codes, different kernels: z is the blur's only source.
  assert float(jnp.abs(kernels[0] - kernels[1]).max()) > 1e-3


def test_output_is_a_convex_blend_of_input_pixels_in_linear_light():
  g = trained_like()
  images = faces()
  codes = jax.random.normal(jax.random.key(3), (3, 4))
  output = g(images, codes)  # no noise keys: no noise
  kernels, _ = g.blur_parameters(codes)
  linear_in = np.asarray(blur_generator.srgb_to_linear(images), np.float64)
  linear_out = np.asarray(blur_generator.srgb_to_linear(output), np.float64)
  pad = 4
  for index in range(3):
    padded = np.pad(linear_in[index], ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    expected = np.zeros_like(linear_in[index])
    kernel = np.asarray(kernels[index], np.float64)
    for dy in range(9):
      for dx in range(9):  # convolution: output(y, x) = sum k(dy, dx) in(y - dy + 4, x - dx + 4)
        expected += kernel[dy, dx] * padded[2 * pad - dy:2 * pad - dy + 32,
                                            2 * pad - dx:2 * pad - dx + 32]
    np.testing.assert_allclose(linear_out[index], expected, atol=2e-5)
    # Hence within the input's range, channel by channel.
    assert linear_out[index].min() >= linear_in[index].min() - 1e-5
    assert linear_out[index].max() <= linear_in[index].max() + 1e-5


def test_the_kernel_follows_the_code_alone_never_the_image():
  g = trained_like()
  codes = jax.random.normal(jax.random.key(4), (1, 4))
  impulse = jnp.zeros((1, 17, 17, 3)).at[0, 8, 8].set(1.0)
  response = blur_generator.srgb_to_linear(g(impulse, codes))[0, 4:13, 4:13, 0]
  kernel, _ = g.blur_parameters(codes)
  # The impulse response is the kernel: whatever else the image holds cannot change it.
  np.testing.assert_allclose(response, kernel[0], atol=1e-5)


def test_no_energy_above_the_input_spectrum_beyond_the_noise():
  g = trained_like()
  # Smooth faces-like images (little power at high frequencies), where an added texture or a
  # hidden signal would show.
  rng = np.random.default_rng(1)
  coarse = rng.uniform(0.1, 0.9, (4, 8, 8, 3))
  images = jax.image.resize(jnp.asarray(coarse, jnp.float32), (4, 64, 64, 3), "cubic")
  images = jnp.clip(images, 0, 1)
  codes = jax.random.normal(jax.random.key(5), (4, 4))
  noise_keys = jax.random.split(jax.random.key(6), 4)
  _, noise = g.blur_parameters(codes)
  linear_in = np.asarray(blur_generator.srgb_to_linear(images), np.float64)
  clean = np.asarray(blur_generator.srgb_to_linear(g(images, codes)), np.float64)
  noisy = np.asarray(blur_generator.srgb_to_linear(g(images, codes, noise_keys)), np.float64)

  def high_band_power(image):  # mean power per frequency bin above half Nyquist
    centred = image - image.mean(axis=(0, 1))
    spectrum = np.abs(np.fft.fft2(centred, axes=(0, 1))) ** 2 / image.shape[0] ** 2
    frequency = np.abs(np.fft.fftfreq(image.shape[0]))
    mask = np.maximum(frequency[:, None], frequency[None, :]) > 0.25
    return spectrum[mask].mean()

  for index in range(4):
    assert high_band_power(clean[index]) <= high_band_power(linear_in[index]) * 1.001
    # White noise of variance v puts v in every bin (Parseval): that, and nothing more.
    variance = float(noise[index, 0] * clean[index].mean() + noise[index, 1])
    assert high_band_power(noisy[index]) <= high_band_power(linear_in[index]) + 1.15 * variance


def test_noise_is_zero_mean():
  g = KernelBlurGenerator(kernel_size=5, code_dim=4, initial_photons=50.0,
                          rngs=nnx.Rngs(0))
  grey = jnp.full((8, 32, 32, 3), 0.5)
  clean = blur_generator.srgb_to_linear(g(grey))
  noisy = blur_generator.srgb_to_linear(g(grey, None, jax.random.split(jax.random.key(0), 8)))
  difference = np.asarray(noisy - clean)
  assert difference.std() > 0.02  # 50 photons at white: clearly noisy
  assert abs(difference.mean()) < 4 * difference.std() / np.sqrt(difference.size)


@pytest.mark.parametrize("upsample", ["transposed", "resize"])
def test_resnet_generator_code_and_upsampling(upsample):
  g = ResnetGenerator(num_blocks=1, features=4, upsample=upsample, code_dim=3, rngs=nnx.Rngs(0))
  images = faces(count=2, size=16)
  a = g(images, jnp.zeros((2, 3)))
  b = g(images, jnp.ones((2, 3)))
  assert a.shape == images.shape
  assert float(jnp.abs(a - b).max()) > 0  # the code reaches the output
  np.testing.assert_array_equal(g(images), a)  # no code = the zero code
  with pytest.raises(ValueError, match="upsample"):
    ResnetGenerator(num_blocks=1, features=4, upsample="bicubic", rngs=nnx.Rngs(0))


def test_kernels_are_centred_on_their_middle_tap():
  g = trained_like()
  # Push the logits' mass off centre: the centring must bring it back.
  size = g.kernel_size
  offsets = jnp.arange(size) - size // 2
  skew = (1.5 * offsets[:, None] + 1.0 * offsets[None, :]).reshape(-1) / g.head_scale / 4
  g.kernel_head.bias[...] = g.kernel_head.bias[...] + skew
  kernels, _ = g.blur_parameters(jax.random.normal(jax.random.key(7), (6, 4)))
  centre_y = np.einsum("nij,i->n", np.asarray(kernels), np.asarray(offsets))
  centre_x = np.einsum("nij,j->n", np.asarray(kernels), np.asarray(offsets))
  assert np.abs(centre_y).max() < 0.1 and np.abs(centre_x).max() < 0.1
  assert (np.asarray(kernels) >= 0).all()
  np.testing.assert_allclose(np.asarray(kernels).sum(axis=(1, 2)), 1.0, atol=1e-5)


def test_jpeg_is_the_codec_forward_and_the_identity_backward():
  images = faces(count=2, size=32)
  qualities = jnp.array([30, 90])
  coded = blur_generator.jpeg_straight_through(images, qualities)
  np.testing.assert_allclose(coded, blur_generator.jpeg_round_trip(np.asarray(images),
                                                              np.asarray(qualities)), atol=1e-6)
  assert float(jnp.abs(coded - images).mean()) > 0.01  # quality 30 changes the pixels
  gradient = jax.grad(lambda x: (blur_generator.jpeg_straight_through(x, qualities) * x).sum())(
      images)
  np.testing.assert_allclose(gradient, coded + images, atol=1e-5)  # d/dx (c(x) x) with dc/dx=1
  g = KernelBlurGenerator(kernel_size=5, code_dim=4, jpeg_quality=(40, 60), rngs=nnx.Rngs(0))
  keys = jax.random.split(jax.random.key(0), 2)
  with_jpeg = jax.jit(lambda x: g(x, None, keys))(images)  # runs inside jit too
  assert with_jpeg.shape == images.shape


def test_the_tone_curve_is_one_monotone_map_of_the_blur_for_every_code():
  """With `tone_curve=True` G's output is the tone-free blur through one global contrast
  curve: monotone, fixing 0, 1/2 and 1, the same whatever the code (nothing for mode
  seeking to spread)."""
  plain = trained_like()
  toned = trained_like(tone_curve=True)
  np.testing.assert_allclose(toned(faces(), jnp.ones((3, 4))), plain(faces(), jnp.ones((3, 4))),
                             atol=1e-6)  # starts as no curve
  toned.tone_strength[...] = 0.02  # k = tanh(20 * 0.02)
  codes = jax.random.normal(jax.random.key(3), (3, 4))
  blurred, curved = plain(faces(), codes), toned(faces(), codes)
  k = np.tanh(0.4)
  expected = blurred + k * (blurred * blurred * (3 - 2 * blurred) - blurred)
  np.testing.assert_allclose(curved, expected, atol=1e-6)
  values = jnp.linspace(0.0, 1.0, 201)
  mapped = blur_generator.contrast_curve(values, k)
  assert np.all(np.diff(np.asarray(mapped)) > 0)
  np.testing.assert_allclose(mapped[jnp.array([0, 100, 200])], [0.0, 0.5, 1.0], atol=1e-6)
