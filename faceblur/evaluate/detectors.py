"""Face detectors behind one small interface, and what the paper's Table 2 counts as a success.

A detector maps an HxWx3 float32 image in [0, 1] to `Detection`s already filtered by its own
threshold. An image counts as a success when the detector finds the face: with a known
ground-truth box, a detection overlapping it with IoU >= 0.5; without one (face crops, where
the face is the image), any detection at all (`face_found`).

`make_detector('mtcnn')` is the project's detector (JAX port of the `mtcnn` 1.0.0 weights, see
`faceblur.evaluate.mtcnn`); `make_detector('haar')` is OpenCV's frontal-face Haar cascade, which
barely reacts to blur and is there as a contrast, only when OpenCV is installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from faceblur.errors import ConfigError

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
    """HxWx3 float32 image in [0, 1] -> detections above the detector's threshold."""

  def detect_batch(self, images: np.ndarray | Sequence[np.ndarray]) -> list[list[Detection]]:
    """Several images (any sizes) -> one list of detections per image."""

  def describe(self) -> str:
    """One line for reports: detector, package version of the weights, thresholds."""


def as_rgb_batch(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
  """A batch (N, H, W, 3), or a sequence of HxWx3 / HxW / HxWx1 images -> list of HxWx3 float32.

  Floats are taken as [0, 1] (the project's convention); integer images as [0, 255].
  """
  if isinstance(images, np.ndarray) and images.ndim == 4:
    images = list(images)
  batch = []
  for image in images:
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.integer):
      image = image.astype(np.float32) / 255
    if image.ndim == 2:
      image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
      raise ValueError(f"a detector takes HxWx3 (or HxW grey) images, got shape {image.shape}")
    batch.append(np.ascontiguousarray(np.broadcast_to(
        image, (*image.shape[:2], 3)), dtype=np.float32))
  return batch


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


class HaarCascade:
  """OpenCV's frontal-face Haar cascade (`opencv-python-headless<5`; OpenCV 5 ships no cascades).

  The score is the number of merged raw detections (OpenCV's `numDetections`); `threshold` is
  the minimum of it (`minNeighbors`), an integer.
  """

  name = "haar"

  def __init__(self, *, threshold: float = 3, scale_factor: float = 1.1, min_size: int = 20):
    import cv2  # optional dependency, imported only when asked for

    if threshold < 1 or threshold != int(threshold):
      raise ConfigError(f"haar threshold is a minimum neighbour count (integer >= 1), "
                        f"got {threshold}")
    path = f"{cv2.data.haarcascades}haarcascade_frontalface_default.xml"
    self._cascade = cv2.CascadeClassifier(path)
    if self._cascade.empty():
      raise ConfigError(f"OpenCV Haar cascade not found: {path}")
    self._cv2 = cv2
    self.threshold = int(threshold)
    self.scale_factor = scale_factor
    self.min_size = min_size
    self.version = cv2.__version__

  def describe(self) -> str:
    return (f"OpenCV {self.version} Haar frontal-face cascade; min neighbours {self.threshold}, "
            f"scale factor {self.scale_factor}, min face {self.min_size} px")

  def detect(self, image: np.ndarray) -> list[Detection]:
    (image,) = as_rgb_batch([image])
    grey = self._cv2.cvtColor(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8),
                              self._cv2.COLOR_RGB2GRAY)
    boxes, neighbours = self._cascade.detectMultiScale2(
        grey, scaleFactor=self.scale_factor, minNeighbors=self.threshold,
        minSize=(self.min_size, self.min_size))
    detections = [Detection(box=(float(x), float(y), float(x + w), float(y + h)), score=float(n))
                  for (x, y, w, h), n in zip(boxes, neighbours, strict=True)]
    return sorted(detections, key=lambda d: -d.score)

  def detect_batch(self, images: np.ndarray | Sequence[np.ndarray]) -> list[list[Detection]]:
    return [self.detect(image) for image in as_rgb_batch(images)]


DETECTORS = ("mtcnn", "haar")


def make_detector(name: str = "mtcnn", **kwargs) -> FaceDetector:
  """'mtcnn' (default; `threshold=` sets the O-Net score) or 'haar' (needs OpenCV)."""
  if name == "mtcnn":
    from faceblur.evaluate.mtcnn import MTCNN  # imports JAX; only when asked for

    threshold = kwargs.pop("threshold", None)
    if threshold is not None:
      p_net, r_net, _ = kwargs.get("thresholds", (0.6, 0.7, 0.7))
      kwargs["thresholds"] = (p_net, r_net, threshold)
    return MTCNN(**kwargs)
  if name == "haar":
    if importlib.util.find_spec("cv2") is None:
      raise ConfigError("detector 'haar' needs OpenCV: pip install 'opencv-python-headless<5'")
    return HaarCascade(**kwargs)
  raise ConfigError(f"unknown detector '{name}' (known: {', '.join(DETECTORS)})")
