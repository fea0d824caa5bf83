"""Blur realism: how close a set of synthetic blurred images is to a set of real blurred ones.

The paper's central claim is that blur learned by a CycleGAN from real blurred photos is more
realistic than blur synthesised with random kernels. Realism of a *distribution* needs no
ground-truth pairs: describe every image by features of its blur, then compare the two
feature clouds.

* `blur_features` describes the blur, not the content: the shape of the luma's power
  spectrum (how fast it falls off, how anisotropic it is), gradient statistics normalised by
  the image's contrast (how sparse and how directional its edges are), the sharpness of the
  Laplacian and the noise level. Every feature is computed per image and is a ratio, a
  frequency in cycles/px or a log of one, so images of different sizes and brightness
  compare directly.
* `mmd_two_sample` is the kernel two-sample test (Gretton et al., JMLR 2012): the unbiased
  squared maximum mean discrepancy with a Gaussian kernel on standardised features,
  bandwidth by the median heuristic, p-value by permutation.
* `blur_realism` scores each candidate synthetic set against the real set: lower MMD^2 is
  more realistic, and a small p-value says the two sets are distinguishable. It also reports
  the cross-validated balanced accuracy of a logistic-regression "real or synthetic?"
  classifier on the same features: 0.5 means indistinguishable, 1.0 means always told apart.
"""

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.ndimage
import scipy.stats

from faceblur.errors import DataError
from faceblur.images import luma

MIN_IMAGE_SIDE = 16
# Radial frequency bands (cycles/px), log-spaced from 0.03 (the first zero of a 33 px motion
# blur; lower bands hold only a few, window-dominated bins in a 64 px image) to Nyquist.
_BAND_EDGES = np.geomspace(0.03, 0.5, 10)
# Immerkær (1996) noise-estimation mask: annihilates locally linear images.
_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
_LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float64)
_TINY = 1e-12

FEATURE_NAMES = (
    tuple(f"log_band_power_{low:.3f}_{high:.3f}"
          for low, high in zip(_BAND_EDGES[:-1], _BAND_EDGES[1:], strict=True))
    + ("spectral_slope", "spectral_anisotropy", "log_spectral_sector_ratio",
       "log_gradient_mean", "gradient_p50_over_mean", "gradient_p90_over_mean",
       "gradient_p99_over_mean", "log_gradient_kurtosis", "gradient_coherence",
       "local_gradient_coherence", "log_laplacian_variance", "log_noise_sigma"))


@dataclasses.dataclass(frozen=True)
class MMDResult:
  """A two-sample comparison of blur features.

  mmd2: unbiased squared MMD; about 0 for one distribution and can then be slightly
    negative (the estimator subtracts the within-set self-similarities: two identical sets
    of n images give -2 (1 - mean off-diagonal kernel) / n).
  p_value: permutation p-value of mmd2 (small: the sets differ).
  bandwidth: the Gaussian kernel's sigma, in standardised feature units.
  classifier_accuracy: cross-validated balanced accuracy of a real-vs-synthetic logistic
    regression (0.5: indistinguishable); None when not computed.
  precision, recall: `precision_recall` of the synthetic set; None when not computed.
  """
  mmd2: float
  p_value: float
  bandwidth: float
  classifier_accuracy: float | None = None
  precision: float | None = None
  recall: float | None = None


def _windowed_power(brightness: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The power spectrum of the Hann-windowed, mean-removed image, and each bin's row and
  column frequency (cycles/px)."""
  height, width = brightness.shape
  window = np.outer(np.hanning(height), np.hanning(width))
  power = np.abs(np.fft.fft2((brightness - brightness.mean()) * window)) ** 2
  freq_rows, freq_cols = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width),
                                     indexing="ij")
  return power, freq_rows, freq_cols


def _spectrum_features(brightness: np.ndarray) -> list[float]:
  """Band powers, slope and anisotropy of the Hann-windowed power spectrum.

  Band powers are the mean power per frequency bin in each band over the mean power of all
  bins, so image size and contrast cancel; blur removes the high bands first. Anisotropy is
  the magnitude of the spectrum's second angular harmonic at mid-high frequencies (0: the
  same energy in every direction; motion blur removes the energy along its direction), and
  the log ratio of the strongest to the weakest of 8 angular sectors.
  """
  power, freq_rows, freq_cols = _windowed_power(brightness)
  radius = np.hypot(freq_rows, freq_cols)
  usable = (radius >= _BAND_EDGES[0]) & (radius <= _BAND_EDGES[-1])
  total = power[usable].mean() + _TINY
  band_index = np.digitize(radius, _BAND_EDGES) - 1
  band_power = np.array([power[usable & (band_index == band)].mean()
                         if np.any(usable & (band_index == band)) else 0.0
                         for band in range(len(_BAND_EDGES) - 1)])
  log_band = np.log(band_power / total + 1e-8)
  centres = np.log(np.sqrt(_BAND_EDGES[:-1] * _BAND_EDGES[1:]))
  slope = np.polyfit(centres, log_band, 1)[0]

  mid_high = (radius >= 0.06) & (radius <= 0.4)
  angle = np.arctan2(freq_rows, freq_cols)[mid_high]
  energy = power[mid_high]
  anisotropy = np.abs(np.sum(energy * np.exp(2j * angle))) / (energy.sum() + _TINY)
  sector = ((angle % np.pi) / (np.pi / 8)).astype(int) % 8
  sector_energy = np.bincount(sector, weights=energy, minlength=8) + _TINY
  sector_ratio = np.log(sector_energy.max() / sector_energy.min())
  return [*log_band, slope, anisotropy, sector_ratio]


def _gradient_features(brightness: np.ndarray) -> list[float]:
  """Gradient magnitude level and shape, kurtosis, and how directional the gradients are.

  The magnitude is divided by the image's standard deviation (contrast); percentiles are
  divided by the mean magnitude, so they describe the distribution's shape (sharp images
  have sparse, heavy-tailed gradients; blur makes them dense). Coherence is
  (l1 - l2) / (l1 + l2) of the structure tensor's eigenvalues, over the whole image and
  averaged locally: motion blur suppresses one gradient direction everywhere.
  """
  contrast = brightness.std() + 1e-6
  d_rows, d_cols = np.gradient(brightness / contrast)
  magnitude = np.hypot(d_rows, d_cols)
  mean = magnitude.mean() + _TINY
  p50, p90, p99 = np.percentile(magnitude, [50, 90, 99]) / mean
  derivatives = np.concatenate([d_rows.ravel(), d_cols.ravel()])
  derivatives = derivatives - derivatives.mean()
  kurtosis = np.mean(derivatives ** 4) / (np.mean(derivatives ** 2) ** 2 + _TINY)  # 0 if flat

  def coherence(jxx, jyy, jxy):
    return np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy + _TINY)

  products = d_cols ** 2, d_rows ** 2, d_cols * d_rows
  global_coherence = coherence(*(p.mean() for p in products))
  local = [scipy.ndimage.gaussian_filter(p, 2.0) for p in products]
  trace = local[0] + local[1]
  local_coherence = np.sum(coherence(*local) * trace) / (trace.sum() + _TINY)
  return [np.log(mean), p50, p90, p99, np.log1p(kurtosis), global_coherence, local_coherence]


def _sharpness_and_noise(brightness: np.ndarray) -> list[float]:
  """log(var(Laplacian) / var(image)) and log of Immerkær's noise sigma estimate."""
  laplacian = scipy.ndimage.convolve(brightness, _LAPLACIAN, mode="reflect")[1:-1, 1:-1]
  log_laplacian = np.log(laplacian.var() / (brightness.var() + _TINY) + 1e-8)
  response = scipy.ndimage.convolve(brightness, _NOISE_MASK, mode="reflect")[1:-1, 1:-1]
  sigma = np.sqrt(np.pi / 2) / 6 * np.abs(response).mean()
  return [log_laplacian, np.log(sigma + 1e-4)]


def _image_features(image: np.ndarray) -> np.ndarray:
  brightness = luma(np.asarray(image, np.float64))
  return np.asarray(_spectrum_features(brightness) + _gradient_features(brightness)
                    + _sharpness_and_noise(brightness), np.float64)


def blur_features(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
  """Blur descriptors (N, D) float64 of N images (NHWC array, or a list of HxWx3 of any sizes).

  D = len(FEATURE_NAMES). Computed per image on its luma, so sizes may differ.
  """
  features = []
  for index, image in enumerate(images):
    image = np.asarray(image)
    if image.ndim not in (2, 3) or min(image.shape[:2]) < MIN_IMAGE_SIDE:
      raise DataError(f"image {index} has shape {image.shape}; blur features need HxW(xC) "
                      f"images at least {MIN_IMAGE_SIDE} px a side")
    features.append(_image_features(image))
  if not features:
    raise DataError("blur_features got no images")
  return np.stack(features)


def _standardised(pooled: np.ndarray) -> np.ndarray:
  std = pooled.std(axis=0)
  return (pooled - pooled.mean(axis=0)) / np.where(std > 0, std, 1.0)


def mmd_two_sample(features_a: np.ndarray, features_b: np.ndarray, *, num_permutations: int = 200,
                   seed: int = 0) -> MMDResult:
  """Unbiased MMD^2 between two feature sets with a permutation p-value.

  Features are standardised with the pooled mean and std (so no feature dominates by its
  units), the Gaussian kernel's bandwidth is the median pairwise distance of the pooled set,
  and the null distribution comes from `num_permutations` random relabellings of the pooled
  set (p = (1 + #{permuted >= observed}) / (1 + num_permutations)). All permutations are
  evaluated at once as quadratic forms of the kernel matrix.
  """
  features_a = np.asarray(features_a, np.float64)
  features_b = np.asarray(features_b, np.float64)
  size_a, size_b = len(features_a), len(features_b)
  if size_a < 2 or size_b < 2:
    raise DataError(f"MMD needs at least 2 samples per set, got {size_a} and {size_b}")
  pooled = _standardised(np.concatenate([features_a, features_b]))
  squared_norms = np.sum(pooled ** 2, axis=1)
  squared_distances = np.maximum(
      squared_norms[:, None] + squared_norms[None, :] - 2 * pooled @ pooled.T, 0.0)
  upper = np.triu_indices(len(pooled), k=1)
  bandwidth = float(np.median(np.sqrt(squared_distances[upper])))
  if bandwidth <= 0:
    bandwidth = 1.0  # all samples identical: any bandwidth gives the same (zero) answer
  kernel = np.exp(-squared_distances / (2 * bandwidth ** 2))

  rng = np.random.default_rng(seed)
  in_a = np.zeros((num_permutations + 1, len(pooled)))
  in_a[0, :size_a] = 1.0  # row 0: the observed labelling
  for row in range(1, num_permutations + 1):
    in_a[row, rng.permutation(len(pooled))[:size_a]] = 1.0
  kernel_in_a = in_a @ kernel
  sum_aa = np.sum(kernel_in_a * in_a, axis=1)
  sum_ab = np.sum(kernel_in_a * (1.0 - in_a), axis=1)
  sum_bb = kernel.sum() - sum_aa - 2 * sum_ab
  # The kernel's diagonal is exp(0) = 1: dropping it makes the within-set means unbiased.
  mmd2 = ((sum_aa - size_a) / (size_a * (size_a - 1)) + (sum_bb - size_b) / (size_b * (size_b - 1))
          - 2 * sum_ab / (size_a * size_b))
  p_value = (1 + np.sum(mmd2[1:] >= mmd2[0])) / (1 + num_permutations)
  return MMDResult(mmd2=float(mmd2[0]), p_value=float(p_value), bandwidth=bandwidth)


def _fit_logistic(features: np.ndarray, labels: np.ndarray, *, num_steps: int = 300,
                  l2: float = 1e-2) -> tuple[np.ndarray, float]:
  """Class-balanced, L2-regularised logistic regression by gradient descent.

  The step is 1 / L with L the gradient's Lipschitz constant (0.25 |X|_2^2 / n + l2), so it
  converges without tuning for any feature scale.
  """
  weight = np.where(labels == 1, 0.5 / labels.mean(), 0.5 / (1 - labels.mean())) / len(labels)
  design = np.concatenate([features, np.ones((len(features), 1))], axis=1)
  step = 1.0 / (0.25 * np.max(weight) * np.linalg.norm(design, 2) ** 2 + l2)
  params = np.zeros(design.shape[1])
  for _ in range(num_steps):
    probability = 1.0 / (1.0 + np.exp(-(design @ params)))
    gradient = design.T @ (weight * (probability - labels)) + l2 * np.append(params[:-1], 0.0)
    params -= step * gradient
  return params[:-1], params[-1]


def classifier_accuracy(features_a: np.ndarray, features_b: np.ndarray, *, num_repeats: int = 5,
                        seed: int = 0) -> float:
  """Held-out balanced accuracy of a logistic regression telling set a from set b.

  2-fold cross-validation, stratified, repeated `num_repeats` times with fresh splits and
  averaged (one split of a few dozen images is noisy). Balanced accuracy (the mean of the two
  per-class recalls) makes 0.5 the chance level whatever the set sizes. With only a few
  images per set it is noisy and can land well below 0.5 by chance.
  """
  features_a = np.asarray(features_a, np.float64)
  features_b = np.asarray(features_b, np.float64)
  if len(features_a) < 2 or len(features_b) < 2:
    raise DataError(f"the classifier needs at least 2 samples per set, got {len(features_a)} "
                    f"and {len(features_b)}")
  features = np.concatenate([features_a, features_b])
  labels = np.concatenate([np.ones(len(features_a)), np.zeros(len(features_b))])
  rng = np.random.default_rng(seed)
  accuracies = []
  for _ in range(num_repeats):
    fold = np.empty(len(labels), int)
    for label in (0, 1):
      members = rng.permutation(np.flatnonzero(labels == label))
      fold[members] = np.arange(len(members)) % 2
    for test_fold in (0, 1):
      train, test = fold != test_fold, fold == test_fold
      mean, std = features[train].mean(axis=0), features[train].std(axis=0)
      scale = np.where(std > 0, std, 1.0)
      coefficients, bias = _fit_logistic((features[train] - mean) / scale, labels[train])
      predicted = ((features[test] - mean) / scale) @ coefficients + bias > 0
      recalls = [np.mean(predicted[labels[test] == label] == label) for label in (0, 1)]
      accuracies.append(np.mean(recalls))
  return float(np.mean(accuracies))


def precision_recall(features_fake: np.ndarray, features_real: np.ndarray, *,
                     k: int = 5) -> tuple[float, float]:
  """k-NN precision and recall of a synthetic set against a real one (Kynkäänniemi et al.,
  NeurIPS 2019), on features standardised with the pooled mean and std.

  Each set's support is the union of balls around its points reaching their k-th nearest
  neighbour. Precision: the share of synthetic images inside the real support; recall: the
  share of real images inside the synthetic support. MMD^2 grows with the square of the share
  of a mixture that is off (10 % of images blurred far too wide moves it a hundredth as much as
  all of them), so a minority of unrealistic blurs barely shows there; precision drops by
  about that share.
  """
  fake = np.asarray(features_fake, np.float64)
  real = np.asarray(features_real, np.float64)
  if min(len(fake), len(real)) <= k:
    raise DataError(f"precision and recall with k={k} need more than {k} samples per set, got "
                    f"{len(fake)} and {len(real)}")
  pooled = _standardised(np.concatenate([fake, real]))
  fake, real = pooled[:len(fake)], pooled[len(fake):]

  def distances(a, b):
    squared = np.sum(a ** 2, 1)[:, None] + np.sum(b ** 2, 1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))

  # Column k of each sorted row: the k-th neighbour, past the point itself at column 0.
  real_radius = np.sort(distances(real, real), axis=1)[:, k]
  fake_radius = np.sort(distances(fake, fake), axis=1)[:, k]
  precision = np.mean(np.any(distances(fake, real) <= real_radius[None, :], axis=1))
  recall = np.mean(np.any(distances(real, fake) <= fake_radius[None, :], axis=1))
  return float(precision), float(recall)


def score_against(real_features: np.ndarray, images: np.ndarray | Sequence[np.ndarray], *,
                  seed: int = 0, num_permutations: int = 200) -> MMDResult:
  """One candidate set of synthetic blurred images against real blurred photos' features
  (`blur_features` of them, computed once by a caller that scores many candidates)."""
  if len(real_features) < 2:
    raise DataError(f"blur realism needs at least 2 real blurred images, got {len(real_features)}")
  if len(images) < 2:
    raise DataError(f"blur realism needs at least 2 synthetic images, got {len(images)}")
  features = blur_features(images)
  result = mmd_two_sample(features, real_features, num_permutations=num_permutations, seed=seed)
  precision, recall = (precision_recall(features, real_features)
                       if min(len(features), len(real_features)) > 5 else (None, None))
  return dataclasses.replace(
      result, classifier_accuracy=classifier_accuracy(features, real_features, seed=seed),
      precision=precision, recall=recall)


def blur_realism(real_blurred: np.ndarray | Sequence[np.ndarray],
                 candidates: Mapping[str, np.ndarray | Sequence[np.ndarray]], *, seed: int = 0,
                 num_permutations: int = 200) -> dict[str, MMDResult]:
  """Scores each candidate set of synthetic blurred images against the real blurred images.

  Lower `mmd2` (and `classifier_accuracy` nearer 0.5) = blur closer to the real one. Sets may
  hold images of different sizes (lists of HxWx3); each needs at least 2 images.
  """
  if len(real_blurred) < 2:
    raise DataError(f"blur realism needs at least 2 real blurred images, got {len(real_blurred)}")
  real_features = blur_features(real_blurred)
  scores = {}
  for name, images in candidates.items():
    if len(images) < 2:
      raise DataError(f"blur realism needs at least 2 images in set {name!r}, got {len(images)}")
    scores[name] = score_against(real_features, images, seed=seed,
                                 num_permutations=num_permutations)
  return scores


# The falloff profile's radial bins (cycles/px). At the demo's 64 px faces and its camera's
# point spreads (RMS radius about 1.4 px) the blur attenuates 3/32-5/32 while the sensor noise
# and JPEG still sit well below the faces' power there; above it they dominate.
FALLOFF_BIN_WIDTH = 1 / 32
FALLOFF_REFERENCE_BAND = (1 / 32, 3 / 32)
FALLOFF_BAND = (3 / 32, 5 / 32)


def _radial_band_power(images: np.ndarray | Sequence[np.ndarray], edges: np.ndarray) -> np.ndarray:
  """(N, len(edges) - 1) mean power per radial bin of each image's Hann-windowed luma."""
  powers = []
  for image in images:
    power, freq_rows, freq_cols = _windowed_power(luma(np.asarray(image, np.float64)))
    index = np.digitize(np.hypot(freq_rows, freq_cols), edges) - 1
    powers.append([power[index == bin_].mean() if np.any(index == bin_) else np.nan
                   for bin_ in range(len(edges) - 1)])
  return np.asarray(powers)


def _falloff_bands(images: Sequence[np.ndarray], reference_band: tuple[float, float],
                   band: tuple[float, float], bin_width: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Each image's power per radial bin (N, bins), and which bins are in `reference_band` and
  in `band`; checks that the set can be profiled."""
  low, high = min(reference_band[0], band[0]), max(reference_band[1], band[1])
  edges = np.arange(round(low / bin_width), round(high / bin_width) + 1) * bin_width
  if len(images) < 2:
    raise DataError(f"a falloff profile needs at least 2 images, got {len(images)}")
  if min(np.asarray(images[0]).shape[:2]) < 1 / bin_width:
    raise DataError(f"a falloff profile in bins of {bin_width:g} cycles/px needs images at "
                    f"least {round(1 / bin_width)} px a side, got {np.asarray(images[0]).shape}")
  centres = (edges[:-1] + edges[1:]) / 2
  return (_radial_band_power(images, edges),
          (centres >= reference_band[0]) & (centres < reference_band[1]),
          (centres >= band[0]) & (centres < band[1]))


def falloff_profile(images: np.ndarray | Sequence[np.ndarray], *,
                    reference_band: tuple[float, float] = FALLOFF_REFERENCE_BAND,
                    band: tuple[float, float] = FALLOFF_BAND,
                    bin_width: float = FALLOFF_BIN_WIDTH) -> np.ndarray:
  """How a set of images attenuates its mid frequencies: the log of the set's mean power in
  each bin of `band` (cycles/px), less the mean log power of `reference_band`'s bins.

  The power is pooled over the set before the log, so the faces' own content averages out,
  and the reference band cancels contrast and tone curves. Blur lowers the profile, the wider
  the lower; noise and JPEG barely touch it below the band where they dominate. Per-image
  blur features do not separate these: a G whose kernels are too wide but whose noise is too
  strong matches them, and its labels then teach stage 2 to over-sharpen. Pooling has its own
  blind spot: a set that mixes near-points with wide kernels averages to a profile like a
  set of moderate ones (`per_image_falloff` and `falloff_wasserstein` see the mixture).
  """
  power, in_reference, in_band = _falloff_bands(list(images), reference_band, band, bin_width)
  log_power = np.log(np.nanmean(power, axis=0) + _TINY)
  return log_power[in_band] - log_power[in_reference].mean()


def per_image_falloff(images: np.ndarray | Sequence[np.ndarray], *,
                      reference_band: tuple[float, float] = FALLOFF_REFERENCE_BAND,
                      band: tuple[float, float] = FALLOFF_BAND,
                      bin_width: float = FALLOFF_BIN_WIDTH) -> np.ndarray:
  """(N,) each image's own falloff: its mean log power over `band`'s bins less that over
  `reference_band`'s. One number per image, so the set's spread of blur widths survives;
  the face's content adds spread too, the same for two sets of the same kind of faces."""
  power, in_reference, in_band = _falloff_bands(list(images), reference_band, band, bin_width)
  log_power = np.log(power + _TINY)
  return log_power[:, in_band].mean(axis=1) - log_power[:, in_reference].mean(axis=1)


def falloff_wasserstein(real_falloffs: np.ndarray, fake_falloffs: np.ndarray) -> float:
  """The 1-D Wasserstein distance between two sets' `per_image_falloff`s (0: the same
  distribution): it grows with a shift of the widths and with a spread the real set lacks."""
  return float(scipy.stats.wasserstein_distance(np.asarray(real_falloffs),
                                                np.asarray(fake_falloffs)))


def falloff_distance(real_profile: np.ndarray, fake_profile: np.ndarray) -> float:
  """Mean squared difference of two `falloff_profile`s (0: the same attenuation)."""
  return float(np.mean((np.asarray(fake_profile) - np.asarray(real_profile)) ** 2))


def falloff_shift(real_profile: np.ndarray, fake_profile: np.ndarray) -> float:
  """Mean of the fake profile less the real one: below 0, the fake set attenuates its mid
  frequencies more than the real one, as a wider blur does; above 0, less."""
  return float(np.mean(np.asarray(fake_profile) - np.asarray(real_profile)))
