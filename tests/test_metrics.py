"""PSNR and SSIM agree with scikit-image on real, really degraded images."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from skimage import data, transform
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from faceblur import metrics


def _y_numpy(images):
  r, g, b = images[..., 0], images[..., 1], images[..., 2]
  return (16 + 65.481 * r + 128.553 * g + 24.966 * b)[..., None] / 255


@pytest.fixture(scope="module")
def pairs():
  """Three crops of the astronaut photo (face, badge, shoulder), 96x80, and degraded copies:
  a horizontal motion blur of 7 px, a Gaussian blur, and both plus noise, quantised to 8 bit."""
  astronaut = data.astronaut().astype(np.float64) / 255
  crops = [astronaut[0:240, 140:340], astronaut[260:500, 200:400], astronaut[200:440, 0:200]]
  sharp = np.stack([transform.resize(c, (96, 80), anti_aliasing=True) for c in crops])
  rng = np.random.default_rng(0)
  motion = np.full((1, 7, 1), 1 / 7)
  degraded = np.stack([
      ndimage.convolve(sharp[0], motion, mode="reflect"),
      ndimage.gaussian_filter(sharp[1], sigma=(1.5, 1.5, 0)),
      ndimage.convolve(ndimage.gaussian_filter(sharp[2], sigma=(1, 1, 0)), motion, mode="reflect")
      + rng.normal(0, 0.03, sharp[2].shape),
  ])
  quantise = lambda x: np.round(np.clip(x, 0, 1) * 255) / 255
  return quantise(degraded).astype(np.float32), quantise(sharp).astype(np.float32)


def _skimage_ssim(a, b):
  return structural_similarity(a.astype(np.float64), b.astype(np.float64), gaussian_weights=True,
                               sigma=1.5, use_sample_covariance=False, data_range=1,
                               channel_axis=-1)


def test_psnr_and_ssim_match_skimage_on_rgb(pairs):
  restored, reference = pairs
  psnr = np.asarray(metrics.psnr(restored, reference))
  ssim = np.asarray(metrics.ssim(restored, reference))
  assert psnr.shape == ssim.shape == (3,)
  for i in range(3):
    expected_psnr = peak_signal_noise_ratio(reference[i].astype(np.float64),
                                            restored[i].astype(np.float64), data_range=1)
    np.testing.assert_allclose(psnr[i], expected_psnr, atol=1e-4)
    np.testing.assert_allclose(ssim[i], _skimage_ssim(restored[i], reference[i]), atol=1e-4)
  # The degradations are real: far from identical, and different from each other.
  assert (psnr < 35).all() and (ssim < 0.95).all() and len(set(np.round(ssim, 3))) == 3


def test_y_channel_variants_match_skimage_on_the_luma_image(pairs):
  restored, reference = pairs
  y_restored, y_reference = _y_numpy(restored.astype(np.float64)), _y_numpy(
      reference.astype(np.float64))
  np.testing.assert_allclose(metrics.rgb_to_y(restored), y_restored, atol=1e-6)
  psnr = np.asarray(metrics.psnr(restored, reference, y_channel=True))
  ssim = np.asarray(metrics.ssim(restored, reference, y_channel=True))
  for i in range(3):
    np.testing.assert_allclose(
        psnr[i], peak_signal_noise_ratio(y_reference[i], y_restored[i], data_range=1), atol=1e-4)
    np.testing.assert_allclose(ssim[i], _skimage_ssim(y_restored[i], y_reference[i]), atol=1e-4)


def test_rgb_to_y_is_bt601_luma():
  corners = jnp.array([[[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]]])
  np.testing.assert_allclose(metrics.rgb_to_y(corners)[0, 0, :, 0],
                             [16 / 255, 235 / 255, (16 + 65.481) / 255], atol=1e-6)


def test_identical_images_give_infinite_psnr_and_ssim_one(pairs):
  _, reference = pairs
  assert np.isposinf(np.asarray(metrics.psnr(reference, reference))).all()
  np.testing.assert_allclose(metrics.ssim(reference, reference), 1.0, atol=1e-6)
  np.testing.assert_allclose(metrics.ssim(reference, reference, y_channel=True), 1.0, atol=1e-6)


def test_max_value_scales_like_skimage_data_range(pairs):
  """On 8-bit images (0..255) with max_value=255, both metrics equal skimage's data_range=255."""
  restored, reference = pairs
  restored8 = np.round(restored * 255).astype(np.uint8)
  reference8 = np.round(reference * 255).astype(np.uint8)
  psnr = np.asarray(metrics.psnr(restored8.astype(np.float32), reference8.astype(np.float32),
                                 max_value=255.0))
  ssim = np.asarray(metrics.ssim(restored8.astype(np.float32), reference8.astype(np.float32),
                                 max_value=255.0))
  for i in range(3):
    np.testing.assert_allclose(
        psnr[i], peak_signal_noise_ratio(reference8[i], restored8[i], data_range=255), atol=1e-4)
    expected_ssim = structural_similarity(
        restored8[i].astype(np.float64), reference8[i].astype(np.float64), gaussian_weights=True,
        sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)
    np.testing.assert_allclose(ssim[i], expected_ssim, atol=1e-4)


def test_bad_shapes_are_rejected():
  with pytest.raises(ValueError, match="same shape"):
    metrics.psnr(jnp.zeros((1, 16, 16, 3)), jnp.zeros((1, 16, 15, 3)))
  with pytest.raises(ValueError, match="at least 11"):
    metrics.ssim(jnp.zeros((1, 10, 16, 3)), jnp.zeros((1, 10, 16, 3)))

