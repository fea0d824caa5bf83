"""Paired bootstrap intervals against numbers worked out by hand or by a direct computation."""

import numpy as np
import pytest

from faceblur.evaluate import intervals
from faceblur.evaluate.intervals import paired_difference, paired_ratio


def test_the_interval_is_the_percentiles_of_means_over_images_resampled_with_replacement():
  first = np.array([31.0, 28.5, 30.2, 27.9, 33.1, 29.4])
  second = np.array([30.1, 28.9, 29.0, 27.0, 31.5, 29.6])
  differences = first - second
  # The resampling done directly: 500 resamples of the 6 images' indices from seed 3.
  indices = np.random.default_rng(3).integers(0, 6, size=(500, 6))
  means = differences[indices].mean(axis=1)
  low, high = np.percentile(means, [2.5, 97.5])

  interval = paired_difference(first, second, num_resamples=500, seed=3)
  assert interval.mean == pytest.approx(differences.mean())
  assert (interval.low, interval.high) == pytest.approx((low, high))
  assert interval.count == 6 and interval.excludes_zero == (low > 0 or high < 0)


def test_two_images_differing_by_0_and_1_give_the_interval_0_to_1():
  # Resample means are 0, 0.5 or 1 (probabilities 1/4, 1/2, 1/4): 2.5 % and 97.5 % fall on
  # the ends.
  interval = paired_difference([1.0, 2.0], [1.0, 1.0], num_resamples=4000)
  assert (interval.mean, interval.low, interval.high) == (0.5, 0.0, 1.0)
  assert not interval.excludes_zero


def test_constant_differences_give_a_degenerate_interval_at_the_constant():
  interval = paired_difference(np.arange(10.0) + 0.25, np.arange(10.0))
  assert (interval.mean, interval.low, interval.high) == pytest.approx((0.25, 0.25, 0.25))
  assert interval.excludes_zero


def test_normal_differences_cover_their_mean_with_the_textbook_width():
  differences = np.random.default_rng(1).normal(1.0, 1.0, size=400)
  interval = paired_difference(differences, np.zeros(400))
  assert interval.low < 1.0 < interval.high
  # The standard error of a mean of 400 unit-variance values is 1/20: width ~ 2 * 1.96 / 20.
  assert interval.high - interval.low == pytest.approx(2 * 1.96 / 20, rel=0.1)


def test_booleans_count_as_0_and_1():
  found_a = [True, True, False, True]
  found_b = [False, True, False, False]
  interval = paired_difference(found_a, found_b, num_resamples=200)
  assert interval.mean == 0.5
  assert interval == paired_difference([1.0, 1, 0, 1], [0.0, 1, 0, 0], num_resamples=200)


def test_nan_pairs_are_left_out():
  with_nan = paired_difference([1.0, np.nan, 3.0, 2.0], [0.0, 1.0, 1.0, np.nan],
                               num_resamples=300)
  assert with_nan == paired_difference([1.0, 3.0], [0.0, 1.0], num_resamples=300)
  assert with_nan.count == 2
  assert paired_difference([np.nan], [1.0]).count == 0


def test_unequal_lengths_raise():
  with pytest.raises(ValueError, match="equal lengths, got 3 and 2"):
    paired_difference([1, 2, 3], [1, 2])
  with pytest.raises(ValueError, match="equal lengths, got 2 and 3"):
    paired_ratio([1, 2], [1, 2, 3])


def test_resampling_in_chunks_draws_the_same_resamples(monkeypatch):
  values = np.random.default_rng(0).normal(size=37)
  whole = paired_difference(values, np.zeros(37), num_resamples=1000)
  monkeypatch.setattr(intervals, "_CHUNK_INDICES", 37 * 7)  # 143 chunks of 7 resamples
  assert paired_difference(values, np.zeros(37), num_resamples=1000) == whole


def test_ratio_of_means_by_hand():
  # Gains 1 and 3 over a gain of 2 on both images: ratio of means 1; resampled numerator
  # means 1, 2, 3 over a constant 2 give 0.5, 1, 1.5, so the interval is [0.5, 1.5].
  interval = paired_ratio([1.0, 3.0], [2.0, 2.0], num_resamples=4000)
  assert (interval.mean, interval.low, interval.high, interval.count) == (1.0, 0.5, 1.5, 2)
  # Not the mean of per-image ratios (1/4 and 3/1 average 1.625).
  assert paired_ratio([1.0, 3.0], [4.0, 1.0]).mean == pytest.approx(4 / 5)


def test_ratio_of_proportional_gains_is_degenerate_and_drops_nan_pairs():
  denominator = np.array([2.0, 0.5, 3.0, 1.5, np.nan])
  numerator = np.array([0.8, 0.2, 1.2, np.nan, 9.0])
  interval = paired_ratio(numerator, denominator)
  assert (interval.mean, interval.low, interval.high) == pytest.approx((0.4, 0.4, 0.4))
  assert interval.count == 3


def test_ratio_resamples_match_a_direct_computation():
  rng = np.random.default_rng(5)
  numerator, denominator = rng.normal(1, 1, 12), rng.normal(2, 1, 12)
  indices = np.random.default_rng(0).integers(0, 12, size=(300, 12))
  ratios = numerator[indices].mean(axis=1) / denominator[indices].mean(axis=1)
  interval = paired_ratio(numerator, denominator, num_resamples=300)
  assert interval.mean == pytest.approx(numerator.mean() / denominator.mean())
  assert (interval.low, interval.high) == pytest.approx(tuple(np.percentile(ratios, [2.5, 97.5])))


def test_the_oracle_share_is_undefined_where_the_oracle_gains_nothing():
  from faceblur.evaluate import comparisons

  pairs = [("ours", "blurred"), ("oracle", "blurred")]
  blurred = [20.0, 21.0, 22.0, 23.0]
  gaining = {"psnr": {"blurred": blurred, "ours": [b + 0.5 for b in blurred],
                      "oracle": [b + 1.0 for b in blurred]}}
  share = comparisons.oracle_share(gaining, pairs)
  assert share["defined"] and share["mean"] == pytest.approx(0.5)
  wobble = [0.1, -0.1, 0.2, -0.2]
  level = {"psnr": {"blurred": blurred, "ours": [b + 0.5 for b in blurred],
                    "oracle": [b + d for b, d in zip(blurred, wobble, strict=True)]}}
  assert not comparisons.oracle_share(level, pairs)["defined"]


def test_mean_over_runs_is_students_t_interval_by_hand():
  # Values 1, 2, 3, 6: mean 3, sample sd sqrt(14/3), t(0.975, 3 df) = 3.182446305.
  interval = intervals.mean_over_runs([1.0, 2.0, 3.0, 6.0, float("nan")])
  half = 3.182446305 * np.sqrt(14 / 3) / 2
  assert interval.count == 4 and interval.mean == pytest.approx(3.0)
  assert (interval.low, interval.high) == pytest.approx((3 - half, 3 + half))
  assert intervals.mean_over_runs([2.0]).count == 0  # one run: no interval
