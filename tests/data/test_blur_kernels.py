"""Camera-shake kernels are valid PSFs, reproducible, of the asked length, and really blur."""

import numpy as np
import pytest

from faceblur.data import blur_kernels


def _rng(seed):
  return np.random.default_rng(seed)


def _sharp_image(size=48):
  image = _rng(0).random((size, size, 3)).astype(np.float32)
  image[size // 4: size // 2] = 1.0  # an edge and noise: lots of high frequencies
  return image


def _high_frequency_energy(image):
  spectrum = np.abs(np.fft.fft2(image - image.mean(axis=(0, 1)), axes=(0, 1))) ** 2
  frequencies = np.abs(np.fft.fftfreq(image.shape[0]))
  high = (frequencies[:, None] > 0.25) | (frequencies[None, :] > 0.25)
  return spectrum[high].sum()


@pytest.mark.parametrize("seed", range(5))
def test_random_psf_is_a_centred_normalised_kernel(seed):
  psf = blur_kernels.random_psf(_rng(seed), max_length=21.0)
  assert psf.dtype == np.float32 and psf.ndim == 2 and psf.shape[0] == psf.shape[1]
  assert psf.shape[0] % 2 == 1
  assert psf.min() >= 0 and abs(psf.sum() - 1) < 1e-5
  rows, cols = np.indices(psf.shape)
  centre = psf.shape[0] // 2
  assert abs((psf * rows).sum() - centre) < 0.05 and abs((psf * cols).sum() - centre) < 0.05


def test_fixed_kernel_size_is_respected():
  psf = blur_kernels.random_psf(_rng(0), kernel_size=64, max_length=60.0)
  assert psf.shape == (64, 64) and abs(psf.sum() - 1) < 1e-5


def test_kernels_are_reproducible_per_seed_and_differ_across_seeds():
  first = blur_kernels.random_psf(_rng(7), max_length=15.0)
  again = blur_kernels.random_psf(_rng(7), max_length=15.0)
  other = blur_kernels.random_psf(_rng(8), max_length=15.0)
  np.testing.assert_array_equal(first, again)
  assert first.shape != other.shape or not np.allclose(first, other)


def test_trajectory_has_the_asked_arc_length():
  for max_length in (5.0, 31.0, 60.0):
    trajectory = blur_kernels.random_trajectory(_rng(1), max_length=max_length)
    assert trajectory.dtype == np.complex128 and trajectory.shape == (2000,)
    assert trajectory[0] == 0
    np.testing.assert_allclose(np.abs(np.diff(trajectory)).sum(), max_length, rtol=1e-6)


def test_blur_extent_follows_max_length():
  medians = []
  for max_length in (8.0, 16.0, 32.0):
    extents = [blur_kernels.psf_extent(blur_kernels.random_psf(_rng(seed), max_length=max_length))
               for seed in range(40)]
    assert max(extents) <= max_length + 2  # a path never reaches farther than its length
    medians.append(np.median(extents))
    assert 0.25 * max_length < medians[-1] < 0.9 * max_length
  assert medians[0] < medians[1] < medians[2]


def test_shorter_exposure_gives_a_smaller_kernel():
  trajectory = blur_kernels.random_trajectory(_rng(3), max_length=30.0, anxiety=0.002)
  extents = [blur_kernels.psf_extent(blur_kernels.trajectory_to_psf(trajectory, exposure=e))
             for e in (0.1, 0.5, 1.0)]
  assert extents[0] < extents[1] < extents[2]


def test_blur_removes_high_frequencies():
  image = _sharp_image()
  psf = blur_kernels.random_psf(_rng(2), max_length=12.0)
  blurred = blur_kernels.blur_image(image, psf, noise_std=0.0)
  assert blurred.shape == image.shape and blurred.dtype == np.float32
  assert _high_frequency_energy(blurred) < 0.5 * _high_frequency_energy(image)


@pytest.mark.parametrize("size", [1, 4, 5])
def test_delta_psf_is_the_identity(size):
  image = _sharp_image(20)
  delta = np.zeros((size, size), np.float32)
  delta[size // 2, size // 2] = 1
  np.testing.assert_allclose(blur_kernels.blur_image(image, delta, noise_std=0.0), image,
                             atol=1e-5)


def test_blur_keeps_a_flat_image_flat_up_to_the_borders():
  image = np.full((16, 16, 3), 0.6, np.float32)
  psf = blur_kernels.random_psf(_rng(4), max_length=30.0)  # larger than the image
  np.testing.assert_allclose(blur_kernels.blur_image(image, psf, noise_std=0.0), 0.6, atol=1e-5)


def test_noise_is_reproducible_and_clipped():
  image = _sharp_image()
  psf = blur_kernels.motion_blur_psf(5, 30)
  noisy = blur_kernels.blur_image(image, psf, noise_std=0.05, rng=_rng(0))
  np.testing.assert_array_equal(noisy, blur_kernels.blur_image(image, psf, noise_std=0.05,
                                                               rng=_rng(0)))
  assert noisy.min() >= 0 and noisy.max() <= 1
  clean = blur_kernels.blur_image(image, psf, noise_std=0.0)
  assert 0.03 < np.std(noisy - clean) < 0.06


def test_motion_blur_psf_is_a_line_at_the_angle():
  horizontal = blur_kernels.motion_blur_psf(9, 0)
  rows, cols = np.nonzero(horizontal > 1e-3)
  assert set(rows) == {horizontal.shape[0] // 2}
  assert cols.max() - cols.min() in (9, 10)
  vertical = blur_kernels.motion_blur_psf(9, 90)
  np.testing.assert_allclose(vertical, horizontal.T, atol=1e-6)
  diagonal = blur_kernels.motion_blur_psf(9, 45)
  rows, cols = np.nonzero(diagonal > 0.02)
  # counter-clockwise from +x with rows pointing down: up-right, so row falls as column grows
  assert np.corrcoef(rows, cols)[0, 1] < -0.9
  assert blur_kernels.motion_blur_psf(1, 0).shape == (1, 1)
