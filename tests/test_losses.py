"""The losses of equations 1-3 against numbers worked out by hand or in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faceblur import losses
from faceblur.errors import ConfigError


def test_lsgan_discriminator_loss_by_hand():
  real = jnp.array([[1.0, 0.5], [0.0, 2.0]])
  fake = jnp.array([0.0, 1.0, -1.0])
  # real: (0 + .25 + 1 + 1) / 4 = .5625; fake: (0 + 1 + 1) / 3 = 2/3; halved sum.
  value = losses.lsgan_discriminator_loss(real, fake)
  assert value.shape == () and value.dtype == jnp.float32
  np.testing.assert_allclose(value, 0.5 * (0.5625 + 2 / 3), rtol=1e-6)
  # real label 0.9 (the paper's code): real: (.01 + .16 + .81 + 1.21) / 4 = .5475.
  np.testing.assert_allclose(losses.lsgan_discriminator_loss(real, fake, real_label=0.9),
                             0.5 * (0.5475 + 2 / 3), rtol=1e-6)


def test_lsgan_generator_loss_by_hand():
  fake = jnp.array([1.0, 0.0, 3.0, 0.5])
  np.testing.assert_allclose(losses.lsgan_generator_loss(fake), (0 + 1 + 4 + 0.25) / 4, rtol=1e-6)
  np.testing.assert_allclose(losses.lsgan_generator_loss(fake, real_label=0.9),
                             (0.01 + 0.81 + 4.41 + 0.16) / 4, rtol=1e-6)


def test_discriminator_loss_is_zero_for_a_perfect_critic_and_upcasts_bfloat16():
  real = jnp.ones((2, 30, 30, 1), jnp.bfloat16)
  fake = jnp.zeros((2, 30, 30, 1), jnp.bfloat16)
  value = losses.lsgan_discriminator_loss(real, fake)
  assert value.dtype == jnp.float32 and float(value) == 0.0


def test_l1_loss_by_hand():
  predicted = jnp.array([[0.0, 1.0], [-1.0, 0.5]])
  target = jnp.array([[0.5, 1.0], [1.0, 0.0]])
  value = losses.l1_loss(predicted, target)
  assert value.shape == () and value.dtype == jnp.float32
  np.testing.assert_allclose(value, (0.5 + 0 + 2 + 0.5) / 4, rtol=1e-6)


def test_cycle_and_identity_losses_are_on_the_minus_one_to_one_scale():
  # Images in [0, 1]; the references normalise them as (x - 0.5) / 0.5 before the L1.
  reconstructed = np.array([[0.0, 1.0], [0.25, 0.5]], np.float32)
  original = np.array([[0.5, 1.0], [1.0, 0.0]], np.float32)
  normalise = lambda x: (x - 0.5) / 0.5  # torchvision's Normalize(0.5, 0.5)
  # By hand on [-1, 1]: |-1 - 0| + |1 - 1| + |-0.5 - 1| + |0 - (-1)| = 1 + 0 + 1.5 + 1.
  expected = (1.0 + 0.0 + 1.5 + 1.0) / 4
  np.testing.assert_allclose(np.abs(normalise(reconstructed) - normalise(original)).mean(),
                             expected)
  for loss in (losses.cycle_consistency_loss, losses.identity_loss):
    value = loss(reconstructed, original)
    assert value.shape == () and value.dtype == jnp.float32
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    # Twice the [0, 1]-scale L1: the bug this guards against halves lambda.
    np.testing.assert_allclose(value, 2 * losses.l1_loss(reconstructed, original), rtol=1e-6)


def test_resize_images_halves_by_pair_averages_without_antialiasing():
  image = np.arange(64, dtype=np.float32).reshape(1, 8, 8, 1)
  half = np.asarray(losses.resize_images(image, 4, 4))
  np.testing.assert_allclose(half[0, :, :, 0],
                             image[0, :, :, 0].reshape(4, 2, 4, 2).mean(axis=(1, 3)), rtol=1e-6)
  # A quarter: half-pixel centres at 4i + 1.5, i.e. the middle two of every four pixels (TF2
  # bilinear without antialias); an antialiased resize would average all four.
  quarter = np.asarray(losses.resize_images(image, 2, 2))
  blocks = image[0, :, :, 0].reshape(2, 4, 2, 4)[:, 1:3, :, 1:3]
  np.testing.assert_allclose(quarter[0, :, :, 0], blocks.mean(axis=(1, 3)), rtol=1e-6)
  np.testing.assert_array_equal(losses.resize_images(image, 8, 8), image)


def _numpy_resize_half(image):
  n, h, w, c = image.shape
  return image.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def test_multiscale_euclidean_loss_three_scales_unequal_weights():
  rng = np.random.default_rng(0)
  sharp = rng.random((2, 16, 16, 3), np.float32)
  sizes = (4, 8, 16)
  estimates = [rng.random((2, s, s, 3), np.float32) for s in sizes]
  weights = (0.25, 0.5, 2.0)
  targets = {16: sharp}
  targets[8] = _numpy_resize_half(sharp)
  # A 4x reduction is not two halvings: TF2 bilinear takes the middle two of every four pixels.
  targets[4] = sharp.reshape(2, 4, 4, 4, 4, 3)[:, :, 1:3, :, 1:3].mean(axis=(2, 4))
  expected = sum(w * np.mean((e.astype(np.float64) - targets[s]) ** 2)
                 for w, e, s in zip(weights, estimates, sizes, strict=True))
  value = losses.multiscale_euclidean_loss([jnp.asarray(e) for e in estimates],
                                           jnp.asarray(sharp), weights)
  assert value.shape == () and value.dtype == jnp.float32
  np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_multiscale_euclidean_loss_defaults_to_equal_weights_and_is_jittable():
  rng = np.random.default_rng(1)
  sharp = jnp.asarray(rng.random((1, 8, 8, 3), np.float32))
  estimates = [jnp.asarray(rng.random((1, s, s, 3), np.float32)) for s in (2, 4, 8)]
  separate = sum(losses.multiscale_euclidean_loss([e], sharp) for e in estimates)
  together = jax.jit(losses.multiscale_euclidean_loss)(estimates, sharp)
  np.testing.assert_allclose(together, separate, rtol=1e-6)
  np.testing.assert_allclose(losses.multiscale_euclidean_loss(estimates, sharp, (1.0, 1.0, 1.0)),
                             together, rtol=1e-6)
  assert float(losses.multiscale_euclidean_loss([sharp], sharp)) == 0.0


def test_multiscale_euclidean_loss_gradient_reaches_every_scale():
  sharp = jnp.ones((1, 8, 8, 3))
  estimates = [jnp.zeros((1, s, s, 3)) for s in (2, 4, 8)]
  grads = jax.grad(losses.multiscale_euclidean_loss)(estimates, sharp, (1.0, 2.0, 3.0))
  # d/de mean((e - 1)^2) = 2 (e - 1) / N at e = 0: -2 w / N.
  for grad, weight, size in zip(grads, (1.0, 2.0, 3.0), (2, 4, 8), strict=True):
    np.testing.assert_allclose(grad, -2 * weight / (size * size * 3), rtol=1e-6)


def test_multiscale_euclidean_loss_rejects_a_weight_per_scale_mismatch():
  sharp = jnp.zeros((1, 8, 8, 3))
  estimates = [jnp.zeros((1, 4, 4, 3)), sharp]
  with pytest.raises(ConfigError, match="scale_weights"):
    losses.multiscale_euclidean_loss(estimates, sharp, (1.0, 1.0, 1.0))
  with pytest.raises(ConfigError):
    losses.multiscale_euclidean_loss(estimates, sharp, (1.0,))
