"""The blur-realism score tells blur laws apart, not faces, and is a correct two-sample test.

Real images: the 100 LFW faces in scikit-image (25x25 grey, upsampled x3 to RGB) and crops of
the astronaut portrait. Blur is made here with scipy (a straight line kernel, or a Gaussian),
independent of the package's data code.
"""

import functools

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.transform

from faceblur import blur_realism
from faceblur.errors import DataError

NOISE_SIGMA = 0.01


def _line_kernel(length: int, angle_deg: float) -> np.ndarray:
  size = 2 * (length // 2) + 3
  centre = size // 2
  steps = np.linspace(-(length - 1) / 2, (length - 1) / 2, 8 * length)
  angle = np.deg2rad(angle_deg)
  kernel = np.zeros((size, size))
  np.add.at(kernel, (np.round(centre - steps * np.sin(angle)).astype(int),
                     np.round(centre + steps * np.cos(angle)).astype(int)), 1.0)
  return kernel / kernel.sum()


def _motion_blur(image, length, angle_deg):
  kernel = _line_kernel(length, angle_deg)
  return np.stack([scipy.ndimage.convolve(image[..., c], kernel, mode="reflect")
                   for c in range(image.shape[-1])], axis=-1)


def _gaussian_blur(image, sigma):
  return scipy.ndimage.gaussian_filter(image, (sigma, sigma, 0), mode="reflect")


def _noisy(image, rng):
  return np.clip(image + rng.normal(0.0, NOISE_SIGMA, image.shape), 0.0, 1.0)


@functools.cache
def _faces() -> np.ndarray:
  """The 100 LFW faces as (100, 75, 75, 3) float64 in [0, 1]."""
  grey = skimage.data.lfw_subset()[:100]
  upsampled = np.clip(scipy.ndimage.zoom(grey, (1, 3, 3), order=3), 0.0, 1.0)
  return np.repeat(upsampled[..., None], 3, axis=-1)


def _random_motion(image, rng):
  return _motion_blur(image, int(rng.integers(9, 16)), rng.uniform(0.0, 180.0))


def _random_gaussian(image, rng):
  return _gaussian_blur(image, rng.uniform(2.0, 3.5))  # about as wide as the lines


@pytest.fixture(scope="module")
def scenario():
  """'Real' = faces 0-49 with random straight motion blur of 9-15 px; candidates use faces
  50-99: A with the same blur law, B with Gaussian blur, and the sharp faces."""
  rng = np.random.default_rng(0)
  faces = _faces()
  return {
      "real": np.stack([_noisy(_random_motion(face, rng), rng) for face in faces[:50]]),
      "same_law": np.stack([_noisy(_random_motion(face, rng), rng) for face in faces[50:]]),
      "gaussian": np.stack([_noisy(_random_gaussian(face, rng), rng) for face in faces[50:]]),
      "sharp": np.stack([_noisy(face, rng) for face in faces[50:]]),
  }


@pytest.fixture(scope="module")
def scores(scenario):
  candidates = {name: scenario[name] for name in ("same_law", "gaussian", "sharp")}
  return blur_realism.blur_realism(scenario["real"], candidates, seed=0)


def test_features_are_finite_one_row_per_image_for_any_sizes():
  rng = np.random.default_rng(1)
  images = [_faces()[0], rng.random((40, 57, 3)), np.full((16, 16, 3), 0.5), np.zeros((20, 30))]
  features = blur_realism.blur_features(images)
  assert features.shape == (4, len(blur_realism.FEATURE_NAMES)) and features.dtype == np.float64
  assert np.all(np.isfinite(features))
  batch = blur_realism.blur_features(_faces()[:3])
  np.testing.assert_allclose(batch[0], features[0])


def test_too_small_images_are_a_data_error():
  with pytest.raises(DataError, match="image 1"):
    blur_realism.blur_features([np.zeros((32, 32, 3)), np.zeros((8, 8, 3))])


def test_features_follow_the_blur_not_the_image_size():
  """The same blur on 64 and 96 px versions of a crop lands much closer than another blur."""
  astronaut = skimage.data.astronaut() / 255.0
  rng = np.random.default_rng(2)
  features = {"motion64": [], "motion96": [], "gaussian64": []}
  for _ in range(24):
    side = int(rng.integers(160, 320))
    top, left = rng.integers(0, 512 - side, size=2)
    crop = astronaut[top:top + side, left:left + side]
    small = skimage.transform.resize(crop, (64, 64), anti_aliasing=True)
    large = skimage.transform.resize(crop, (96, 96), anti_aliasing=True)
    length, angle, sigma = int(rng.integers(9, 16)), rng.uniform(0, 180), rng.uniform(2, 3.5)
    features["motion64"].append(_noisy(_motion_blur(small, length, angle), rng))
    features["motion96"].append(_noisy(_motion_blur(large, length, angle), rng))
    features["gaussian64"].append(_noisy(_gaussian_blur(small, sigma), rng))
  features = {name: blur_realism.blur_features(images) for name, images in features.items()}
  pooled = np.concatenate(list(features.values()))
  standardised = {name: (f - pooled.mean(0)) / pooled.std(0) for name, f in features.items()}

  def distances(first, second):
    paired = np.linalg.norm(standardised[first] - standardised[second], axis=1)
    means = np.linalg.norm(standardised[first].mean(0) - standardised[second].mean(0))
    return np.median(paired), means

  size_paired, size_means = distances("motion64", "motion96")
  blur_paired, blur_means = distances("motion64", "gaussian64")
  assert size_means < 0.6 * blur_means  # measured 0.39
  assert size_paired < 0.75 * blur_paired  # measured 0.55


def _naive_unbiased_mmd2(x, y, bandwidth):
  def k(a, b):
    return np.exp(-np.sum((a - b) ** 2) / (2 * bandwidth ** 2))

  n, m = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
  return xx + yy - 2 * xy


def test_mmd_matches_the_textbook_estimator_on_standardised_features():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(7, 4)), rng.normal(0.5, 2.0, size=(9, 4))
  result = blur_realism.mmd_two_sample(x, y, num_permutations=50)
  pooled = np.concatenate([x, y])
  pooled = (pooled - pooled.mean(0)) / pooled.std(0)
  distances = [np.linalg.norm(pooled[i] - pooled[j])
               for i in range(len(pooled)) for j in range(i + 1, len(pooled))]
  assert result.bandwidth == pytest.approx(np.median(distances))
  assert result.mmd2 == pytest.approx(_naive_unbiased_mmd2(pooled[:7], pooled[7:],
                                                           result.bandwidth))
  assert 1 / 51 <= result.p_value <= 1 and result.classifier_accuracy is None
  assert blur_realism.mmd_two_sample(x, y, num_permutations=50) == result  # seeded


def test_mmd_of_identical_sets_is_about_zero(scenario):
  """Unbiased MMD^2 of a set with itself is slightly negative: -2 (1 - mean k(x, x')) / n."""
  features = blur_realism.blur_features(scenario["real"])
  result = blur_realism.mmd_two_sample(features, features)
  assert -2 / len(features) <= result.mmd2 <= 0
  assert result.p_value > 0.5


def test_two_halves_of_one_blur_law_are_not_told_apart(scenario):
  features = blur_realism.blur_features(scenario["real"])
  halves = blur_realism.mmd_two_sample(features[:25], features[25:])
  gaussian = blur_realism.mmd_two_sample(features[:25],
                                         blur_realism.blur_features(scenario["gaussian"][:25]))
  assert halves.p_value > 0.05 and gaussian.p_value < 0.05
  assert abs(halves.mmd2) < 0.2 * gaussian.mmd2


def test_the_matching_blur_law_scores_as_more_realistic(scores):
  same_law, gaussian, sharp = scores["same_law"], scores["gaussian"], scores["sharp"]
  assert same_law.mmd2 < 0.1 * gaussian.mmd2 and gaussian.mmd2 < sharp.mmd2
  assert same_law.p_value > 0.05 and gaussian.p_value < 0.05 and sharp.p_value < 0.05
  assert abs(same_law.classifier_accuracy - 0.5) < 0.15  # measured 0.56
  assert gaussian.classifier_accuracy > 0.9 and sharp.classifier_accuracy > 0.9  # 0.98, 1.0


def test_sets_with_fewer_than_two_images_name_the_set(scenario):
  with pytest.raises(DataError, match="'lonely'"):
    blur_realism.blur_realism(scenario["real"][:5], {"lonely": scenario["sharp"][:1]})


def test_precision_falls_by_the_share_of_synthetic_samples_off_the_real_support():
  """Hand-made features: a synthetic set drawn like the real one has precision and recall near
  1; moving a fifth of it far away lowers precision by about a fifth and leaves recall; a set
  that covers only part of the real one keeps precision and loses recall; a small set drawn
  like the real one covers it (recall uses the synthetic set's radii). MMD^2, for contrast,
  moves far less for the fifth than for the whole set moved (it is quadratic in the share)."""
  rng = np.random.default_rng(0)
  real = rng.normal(size=(400, 4))
  same = rng.normal(size=(400, 4))
  precision, recall = blur_realism.precision_recall(same, real)
  assert precision > 0.95 and recall > 0.95
  tail = same.copy()
  tail[:80] += 6.0  # a fifth, well outside
  precision, recall = blur_realism.precision_recall(tail, real)
  assert 0.75 <= precision <= 0.85 and recall > 0.9
  narrow = rng.normal(size=(400, 4)) * 0.3  # inside, but covering only the middle
  precision, recall = blur_realism.precision_recall(narrow, real)
  assert precision > 0.95 and recall < 0.6
  # Few synthetic samples drawn like the real ones: their own (wide) balls cover the real set.
  precision, recall = blur_realism.precision_recall(rng.normal(size=(40, 4)), real)
  assert recall > 0.8
  moved = same + 6.0
  mmd_tail = blur_realism.mmd_two_sample(tail, real, num_permutations=1).mmd2
  mmd_all = blur_realism.mmd_two_sample(moved, real, num_permutations=1).mmd2
  assert mmd_tail < 0.1 * mmd_all  # measured 0.04 of it: (1/5)^2
  with pytest.raises(DataError, match="k=5"):
    blur_realism.precision_recall(real[:5], real)


def _blurred_faces(sigma: float, noise: float, seed: int) -> np.ndarray:
  """The first 50 LFW faces cropped to 64 px, Gaussian blur `sigma`, noise `noise`/255."""
  rng = np.random.default_rng(seed)
  return np.stack([np.clip(_gaussian_blur(face, sigma) + rng.normal(0.0, noise / 255, face.shape),
                           0.0, 1.0) for face in _faces()[:50, 5:69, 5:69]])


def test_falloff_profile_falls_as_the_blur_widens_and_ignores_contrast():
  profiles = [blur_realism.falloff_profile(_blurred_faces(sigma, 2, 0))
              for sigma in (0.6, 0.9, 1.2, 1.5)]
  assert [len(profile) for profile in profiles] == [2] * 4  # 3/32-4/32 and 4/32-5/32
  for wider, narrower in zip(profiles[1:], profiles, strict=False):
    assert np.all(wider < narrower - 0.05)
  faces = _blurred_faces(1.0, 2, 0)
  np.testing.assert_allclose(blur_realism.falloff_profile(0.5 * faces + 0.2),
                             blur_realism.falloff_profile(faces), atol=1e-9)


def test_falloff_follows_the_blur_width_not_the_noise_level():
  """Five times the noise moves the profile less than a fifth as far as a 0.3 px wider blur:
  a G cannot make up for too wide a kernel with noise, as it can in per-image features."""
  real = blur_realism.falloff_profile(_blurred_faces(1.0, 2, 0))
  noisier = blur_realism.falloff_profile(_blurred_faces(1.0, 10, 1))
  wider = blur_realism.falloff_profile(_blurred_faces(1.3, 2, 1))
  assert blur_realism.falloff_distance(real, real) == 0.0
  assert blur_realism.falloff_shift(real, wider) < 0 < blur_realism.falloff_shift(wider, real)
  assert (blur_realism.falloff_distance(real, noisier)
          < blur_realism.falloff_distance(real, wider) / 25)


def test_the_per_image_falloff_sees_a_mixture_that_the_pooled_profile_averages_away():
  """Half near-points and half wide blurs pool to the spectrum of a moderate blur: the pooled
  shift calls the mixture no wider than the photos, while the per-image distribution, which
  keeps each face's attenuation, is further from them than a second draw of the photos' own
  kind (the study's bimodal kernels, README)."""
  real = _blurred_faces(1.0, 2, 0)
  again = _blurred_faces(1.0, 2, 1)
  mixture = np.concatenate([_blurred_faces(0.3, 2, 2)[:25], _blurred_faces(1.8, 2, 3)[25:]])
  assert blur_realism.falloff_shift(blur_realism.falloff_profile(real),
                                    blur_realism.falloff_profile(mixture)) > 0
  real_falloffs = blur_realism.per_image_falloff(real)
  assert real_falloffs.shape == (50,)
  assert (blur_realism.falloff_wasserstein(real_falloffs, blur_realism.per_image_falloff(mixture))
          > 3 * blur_realism.falloff_wasserstein(real_falloffs,
                                                 blur_realism.per_image_falloff(again)))
  assert blur_realism.falloff_wasserstein(real_falloffs, real_falloffs) == 0.0
  same = np.stack([real[0]] * 4)  # one face four times: pooled and per-image agree
  np.testing.assert_allclose(blur_realism.per_image_falloff(same),
                             blur_realism.falloff_profile(same).mean(), atol=1e-9)


def test_falloff_needs_two_images_of_at_least_32_px():
  with pytest.raises(DataError, match="at least 2 images"):
    blur_realism.falloff_profile(_blurred_faces(1.0, 2, 0)[:1])
  with pytest.raises(DataError, match="32 px"):
    blur_realism.falloff_profile(np.zeros((4, 24, 24, 3)))
  with pytest.raises(DataError, match="32 px"):
    blur_realism.per_image_falloff(np.zeros((4, 24, 24, 3)))
