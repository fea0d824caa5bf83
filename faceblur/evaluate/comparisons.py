"""Paired differences between two columns of the evaluation, with bootstrap intervals.

A table of means says method A scored higher than B on this test set; whether A is better
depends on how much that gap moves with the choice of test faces. Each comparison "a-b" in
`evaluate.comparisons` gets, per paired test set and per metric, the mean per-face difference
a - b with its paired percentile bootstrap interval (`faceblur.evaluate.intervals`). Columns
are method names or `blurred`, the blurred input itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from faceblur.errors import ConfigError
from faceblur.evaluate.intervals import Interval, paired_difference, paired_ratio

# report.json's metric keys, in the order report.md shows them. Identity distance: lower is
# closer to the ground truth, so a negative difference favours `a`; it is reported as a - b like
# the rest. Detection: per-face success (0/1), so the difference is one of success rates.
METRICS = ("psnr", "ssim", "identity_distance", "detection", "detection_iou",
           "second_detector_detection", "second_detector_detection_iou")
# The share of the oracle's PSNR gain over the blurred input that ours recovers.
ORACLE_SHARE = (("ours", "blurred"), ("oracle", "blurred"))

Scores = Mapping[str, Mapping[str, Sequence[float | bool | None]]]  # metric -> column -> faces


def parse(comparisons: Sequence[str], columns: Sequence[str]) -> list[tuple[str, str]]:
  """`("ours-blurred", ...)` as column pairs; a malformed entry or a name that is not among
  `columns` is one ConfigError, as a typo would otherwise drop the comparison silently."""
  pairs, unknown = [], []
  for comparison in comparisons:
    names = str(comparison).split("-")
    if len(names) != 2 or not all(names):
      raise ConfigError(f"evaluate.comparisons has {comparison!r}; write each as 'a-b', two "
                        f"of {', '.join(columns)}")
    unknown += [name for name in names if name not in columns and name not in unknown]
    pairs.append((names[0], names[1]))
  if unknown:
    raise ConfigError(f"evaluate.comparisons names {', '.join(unknown)}, not among the methods "
                      f"({', '.join(columns)})")
  return pairs


def differences(scores: Scores, pairs: Sequence[tuple[str, str]]) -> dict:
  """{"a-b": {metric: interval entry}} for each pair and each metric both columns have."""
  result = {}
  for first, second in pairs:
    result[f"{first}-{second}"] = {
        metric: entry(paired_difference(_values(per_column[first]), _values(per_column[second])))
        for metric, per_column in scores.items()
        if first in per_column and second in per_column}
  return result


def oracle_share(scores: Scores, pairs: Sequence[tuple[str, str]]) -> dict | None:
  """mean(ours - blurred) / mean(oracle - blurred) in PSNR with its interval, when both
  comparisons are configured; else None. A share of a gain is defined only where there is
  one: where the oracle's own gain has an interval reaching 0, `defined` is False (the
  ratio's interval then spans hundreds)."""
  if not all(pair in pairs for pair in ORACLE_SHARE):
    return None
  psnr = {column: _values(values) for column, values in scores["psnr"].items()}
  (ours, blurred), (oracle, _) = ORACLE_SHARE
  oracle_gain = paired_difference(psnr[oracle], psnr[blurred])
  share = entry(paired_ratio(psnr[ours] - psnr[blurred], psnr[oracle] - psnr[blurred]))
  return share | {"defined": bool(oracle_gain.low > 0)}


def entry(interval: Interval) -> dict:
  """report.json's form: {"mean", "low", "high", "count"}; None where undefined (no faces)."""
  def number(value: float) -> float | None:
    return value if math.isfinite(value) else None
  return {"mean": number(interval.mean), "low": number(interval.low),
          "high": number(interval.high), "count": interval.count}


def _values(values: Sequence[float | bool | None]) -> np.ndarray:
  """Per-face scores as floats, None (not scored) as NaN, which the intervals leave out."""
  return np.asarray([np.nan if value is None else float(value) for value in values], np.float64)
