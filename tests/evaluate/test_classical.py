"""Classical deconvolution restores a motion-blurred real face, and the blind guess is sane.

The face is a 128 px crop of scikit-image's astronaut portrait; blur is applied here with
scipy.ndimage.convolve and a little seeded Gaussian noise.
"""

import functools

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.transform

from faceblur.evaluate import classical

NOISE_SIGMA = 0.003


@functools.cache
def _face() -> np.ndarray:
  crop = skimage.data.astronaut()[20:276, 110:366] / 255.0
  return skimage.transform.resize(crop, (128, 128), anti_aliasing=True)


def _blur(image, psf, seed=0):
  blurred = np.stack([scipy.ndimage.convolve(image[..., c], psf, mode="reflect")
                      for c in range(3)], axis=-1)
  noise = np.random.default_rng(seed).normal(0.0, NOISE_SIGMA, blurred.shape)
  return np.clip(blurred + noise, 0.0, 1.0)


def _psnr(image, reference):
  return 10 * np.log10(1.0 / np.mean((np.asarray(image, np.float64) - reference) ** 2))


def _angle_error(first, second):
  return abs((first - second + 90) % 180 - 90)


@pytest.mark.parametrize("length, angle", [(9, 0.0), (12, 35.0), (15, 120.0)])
def test_linear_motion_psf_is_a_normalised_line(length, angle):
  psf = classical.linear_motion_psf(length, angle)
  assert psf.ndim == 2 and psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1
  assert psf.min() >= 0 and psf.sum() == pytest.approx(1.0)
  rows, cols = np.indices(psf.shape) - psf.shape[0] // 2
  x, y = cols, -rows  # y up, so the angle is counter-clockwise
  assert np.sum(psf * x) == pytest.approx(0, abs=1e-6)
  assert np.sum(psf * y) == pytest.approx(0, abs=1e-6)
  covariance = [[np.sum(psf * x * x), np.sum(psf * x * y)], [np.sum(psf * x * y),
                                                              np.sum(psf * y * y)]]
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)
  main_axis = np.rad2deg(np.arctan2(eigenvectors[1, 1], eigenvectors[0, 1]))
  assert _angle_error(main_axis, angle) < 2
  assert np.sqrt(12 * eigenvalues[1]) == pytest.approx(length, rel=0.1)  # a line's variance
  assert eigenvalues[0] < 0.2  # thin


@pytest.mark.parametrize("length, angle", [(9, 0.0), (13, 30.0), (15, 120.0)])
def test_deconvolution_with_the_true_kernel_restores_detail(length, angle):
  psf = classical.linear_motion_psf(length, angle)
  blurred = _blur(_face(), psf)
  before = _psnr(blurred, _face())
  for restored in (classical.richardson_lucy(blurred, psf), classical.wiener(blurred, psf)):
    assert restored.shape == blurred.shape and restored.dtype == np.float32
    assert restored.min() >= 0 and restored.max() <= 1
    assert _psnr(restored, _face()) > before + 1.5  # measured +4.3 to +5.3 dB


def test_a_delta_kernel_leaves_the_image_unchanged():
  blurred = _blur(_face(), classical.linear_motion_psf(11, 60.0))
  delta = np.ones((1, 1))
  np.testing.assert_allclose(classical.richardson_lucy(blurred, delta), blurred, atol=1e-5)
  assert _psnr(classical.wiener(blurred, delta), blurred) > 45  # shrinks detail by 1/(1+0.01)
  np.testing.assert_allclose(classical.wiener(blurred, delta, balance=0.0), blurred, atol=1e-5)


def test_grey_images_keep_their_shape():
  grey = _blur(_face(), classical.linear_motion_psf(9, 10.0))[..., 0]
  psf = classical.linear_motion_psf(9, 10.0)
  assert classical.richardson_lucy(grey, psf, num_iterations=5).shape == grey.shape
  assert classical.wiener(grey, psf).shape == grey.shape


def test_invalid_kernels_are_rejected():
  with pytest.raises(ValueError, match="psf"):
    classical.richardson_lucy(_face(), -np.ones((3, 3)))
  with pytest.raises(ValueError, match="psf"):
    classical.wiener(_face(), np.zeros((3, 3, 3)))


@pytest.mark.parametrize("angle", [20.0, 75.0, 140.0])
def test_blind_estimate_finds_a_clear_straight_blur(angle):
  blurred = _blur(_face(), classical.linear_motion_psf(15, angle), seed=1)
  motion = classical.estimate_linear_motion(blurred)
  # Measured: angle errors 0.39, 0.22, 0.05 degrees; lengths 15.16, 15.34, 15.40; peak scores
  # 17.1, 18.5, 18.0; the restoration gains +4.2, +4.5, +3.7 dB (angles 20, 75, 140).
  assert _angle_error(motion.angle_deg, angle) < 1.5
  assert motion.length == pytest.approx(15, abs=1)
  assert motion.peak_score > 12
  psf = classical.estimate_motion_psf(blurred)
  np.testing.assert_array_equal(psf, classical.estimate_motion_psf(blurred))  # deterministic
  restored = classical.richardson_lucy(blurred, psf)
  assert _psnr(restored, _face()) > _psnr(blurred, _face()) + 3.0


def test_blind_estimate_leaves_a_sharp_image_alone():
  sharp = np.clip(_face() + np.random.default_rng(2).normal(0, NOISE_SIGMA, (128, 128, 3)), 0, 1)
  assert classical.estimate_linear_motion(sharp).peak_score < 6
  np.testing.assert_array_equal(classical.estimate_motion_psf(sharp), np.ones((1, 1)))


def test_the_evaluations_deconvolution_row_restores_a_batch_over_threads_as_one_by_one():
  """The `richardson_lucy` method's batch path (threads) gives each image what `restore` does."""
  from faceblur.evaluate import evaluation  # noqa: PLC0415

  restore = evaluation.METHODS.get("richardson_lucy")(None)
  kernel = np.zeros((9, 9))
  kernel[4] = 1 / 9
  blurred = [np.clip(scipy.ndimage.convolve(_face()[::2, ::2], kernel[..., None], mode="nearest")
                     + shift, 0, 1) for shift in (0.0, 0.05, -0.05, 0.1, -0.1)]
  batched = restore.restore_images(blurred)
  for image, output in zip(blurred, batched, strict=True):
    np.testing.assert_array_equal(output, restore(image))
