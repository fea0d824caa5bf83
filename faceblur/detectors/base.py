"""The interface every face detector has, and what the paper's Table 2 counts as a success.

A detector maps an HxWx3 float32 image in [0, 1] to `Detection`s already filtered by its own
threshold. An image counts as a success when the detector finds the face: with a known
ground-truth box, a detection overlapping it with IoU >= 0.5; without one (face crops, where
the face is the image), any detection at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np

Box = tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True, eq=False)
class Detection:
  """One face: box (x0, y0, x1, y1) in pixels, detector score, optional (5, 2) landmarks (x, y)."""
  box: Box
  score: float
  landmarks: np.ndarray | None = None


class FaceDetector(Protocol):
  name: str
  version: str
  threshold: float

  def detect(self, image: np.ndarray) -> list[Detection]:
    """HxWx3 float32 image in [0, 1] -> detections above the detector's threshold, highest
    score first (the evaluation takes the first one on a ground-truth image as its face)."""

  def detect_batch(self, images: np.ndarray | Sequence[np.ndarray]) -> list[list[Detection]]:
    """Several images (any sizes) -> one list of detections per image."""

  def describe(self) -> str:
    """One line for reports: detector, package version of the weights, thresholds."""


def box_iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
  """Intersection over union of two (x0, y0, x1, y1) boxes; 0 when the union is empty."""
  ax0, ay0, ax1, ay1 = (float(v) for v in box_a)
  bx0, by0, bx1, by1 = (float(v) for v in box_b)
  intersection = (max(0.0, min(ax1, bx1) - max(ax0, bx0))
                  * max(0.0, min(ay1, by1) - max(ay0, by0)))
  union = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0) + max(0.0, bx1 - bx0) * max(0.0, by1 - by0) \
      - intersection
  return intersection / union if union > 0 else 0.0


def face_found(detections: Sequence[Detection], face_box: Sequence[float] | None = None, *,
               iou_threshold: float = 0.5) -> bool:
  """With a ground-truth box: any detection with IoU >= iou_threshold; without: any detection."""
  if face_box is None:
    return len(detections) > 0
  return any(box_iou(d.box, face_box) >= iou_threshold for d in detections)
