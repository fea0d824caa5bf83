"""Paired bootstrap confidence intervals: when is one method better than another on a test set?

Two methods scored on the same images give paired scores; the claim "A beats B" is about the
mean of the per-image differences A - B, and its uncertainty comes from which images happened
to be in the test set. The percentile bootstrap (Efron & Tibshirani 1993, ch. 13) resamples
the images with replacement, keeping each image's pair together, and reads the interval off
the resampled means. A difference is a claim only when its interval excludes 0.
"""

import dataclasses

import numpy as np

NUM_RESAMPLES = 10_000
CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
  """The mean paired difference over `count` images and its bootstrap interval."""

  mean: float
  low: float
  high: float
  count: int
  confidence: float = CONFIDENCE

  @property
  def excludes_zero(self) -> bool:
    return self.low > 0 or self.high < 0

  def format(self, digits: int = 2, signed: bool = True) -> str:
    """E.g. '+0.41 [+0.22, +0.60]'."""
    sign = "+" if signed else ""
    return (f"{self.mean:{sign}.{digits}f} [{self.low:{sign}.{digits}f}, "
            f"{self.high:{sign}.{digits}f}]")


def paired_difference(first, second, *, num_resamples: int = NUM_RESAMPLES,
                      confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
  """Mean of `first - second` over paired per-image scores, with its percentile interval.

  Booleans (detected or not) are scored as 0/1, so a detection-rate difference comes out in
  the same way. NaN pairs (an image a metric could not score) are left out. The seed makes the
  interval reproducible: calls of the same size and seed resample the same image sets, so
  the intervals of one report are drawn alike.
  """
  differences = _paired(first, second)
  differences = differences[np.isfinite(differences)]
  count = differences.size
  if count == 0:
    return _empty(confidence)
  means = np.concatenate([differences[indices].mean(axis=1)
                          for indices in _resamples(count, num_resamples, seed)])
  low, high = _percentiles(means, confidence)
  return Interval(float(differences.mean()), low, high, count, confidence)


def paired_ratio(numerator, denominator, *, num_resamples: int = NUM_RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
  """mean(numerator) / mean(denominator) over the same images, with its percentile interval.

  E.g. the share of the oracle's PSNR gain that ours recovers: numerator ours - blurred,
  denominator oracle - blurred, per image. The ratio of means (not the mean of per-image
  ratios, which a near-zero gain on one image would swamp) is recomputed on each resample of
  the images, the same resamples `paired_difference` draws for that count and seed. Images
  where either side is NaN are left out. Where resamples' denominator means reach 0 the ratio
  is undefined, and the interval comes out infinite or NaN rather than a finite number.
  """
  numerator = np.asarray(numerator, np.float64).reshape(-1)
  denominator = np.asarray(denominator, np.float64).reshape(-1)
  _paired(numerator, denominator)  # the same length check
  kept = np.isfinite(numerator) & np.isfinite(denominator)
  numerator, denominator = numerator[kept], denominator[kept]
  count = numerator.size
  if count == 0:
    return _empty(confidence)
  with np.errstate(divide="ignore", invalid="ignore"):
    ratios = np.concatenate([numerator[indices].mean(axis=1) / denominator[indices].mean(axis=1)
                             for indices in _resamples(count, num_resamples, seed)])
    ratio = numerator.mean() / denominator.mean()
  low, high = _percentiles(ratios, confidence)
  return Interval(float(ratio), low, high, count, confidence)


def mean_over_runs(values, *, confidence: float = CONFIDENCE) -> Interval:
  """The mean of a few per-run figures (e.g. one per training seed), with Student's t interval.

  For claims about a training recipe, whose unit is the run: with a handful of runs the
  bootstrap's percentiles come out too narrow (they can never leave the values' range), while
  t's interval is exact for normally distributed runs. Needs at least two finite values.
  """
  import scipy.stats  # noqa: PLC0415 (only this function needs it)

  values = np.asarray(values, np.float64).reshape(-1)
  values = values[np.isfinite(values)]
  if values.size < 2:
    return _empty(confidence)
  mean = float(values.mean())
  half = float(scipy.stats.t.ppf((1 + confidence) / 2, values.size - 1)
               * values.std(ddof=1) / np.sqrt(values.size))
  return Interval(mean, mean - half, mean + half, values.size, confidence)


# Indices drawn per chunk of resamples: bounds memory (10,000 resamples of 10,000 images would
# be 800 MB at once); the chunks continue one random stream, so the indices are those of one
# draw of all resamples.
_CHUNK_INDICES = 1 << 22


def _resamples(count: int, num_resamples: int, seed: int):
  """The bootstrap's (resamples, count) index arrays, chunk by chunk, from one seeded stream."""
  rng = np.random.default_rng(seed)
  rows = max(1, _CHUNK_INDICES // count)
  for start in range(0, num_resamples, rows):
    yield rng.integers(0, count, size=(min(rows, num_resamples - start), count))


def _paired(first, second) -> np.ndarray:
  first = np.asarray(first, np.float64).reshape(-1)
  second = np.asarray(second, np.float64).reshape(-1)
  if first.shape != second.shape:
    raise ValueError(f"paired scores need equal lengths, got {first.size} and {second.size}")
  return first - second


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
  tail = (1 - confidence) / 2 * 100
  low, high = np.percentile(values, [tail, 100 - tail])
  return float(low), float(high)


def _empty(confidence: float) -> Interval:
  nan = float("nan")
  return Interval(nan, nan, nan, 0, confidence)
