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
  interval reproducible; the resamples are drawn once and shared by every call of the same
  size and seed, so intervals in one report use the same resampled image sets.
  """
  first = np.asarray(first, np.float64).reshape(-1)
  second = np.asarray(second, np.float64).reshape(-1)
  if first.shape != second.shape:
    raise ValueError(f"paired scores need equal lengths, got {first.size} and {second.size}")
  differences = first - second
  differences = differences[np.isfinite(differences)]
  count = differences.size
  if count == 0:
    nan = float("nan")
    return Interval(nan, nan, nan, 0, confidence)
  indices = np.random.default_rng(seed).integers(0, count, size=(num_resamples, count))
  means = differences[indices].mean(axis=1)
  tail = (1 - confidence) / 2 * 100
  low, high = np.percentile(means, [tail, 100 - tail])
  return Interval(float(differences.mean()), float(low), float(high), count, confidence)
