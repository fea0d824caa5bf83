"""OpenCV's frontal-face Haar cascade: a contrast to MTCNN, since it barely reacts to blur.

Only available when OpenCV is installed (`make_detector('haar')` says how to install it).
"""

from collections.abc import Sequence

import numpy as np

from faceblur.detectors.base import Detection
from faceblur.errors import ConfigError
from faceblur.images import as_rgb


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
    image = as_rgb(image)
    grey = self._cv2.cvtColor(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8),
                              self._cv2.COLOR_RGB2GRAY)
    boxes, neighbours = self._cascade.detectMultiScale2(
        grey, scaleFactor=self.scale_factor, minNeighbors=self.threshold,
        minSize=(self.min_size, self.min_size))
    detections = [Detection(box=(float(x), float(y), float(x + w), float(y + h)), score=float(n))
                  for (x, y, w, h), n in zip(boxes, neighbours, strict=True)]
    return sorted(detections, key=lambda d: -d.score)

  def detect_batch(self, images: np.ndarray | Sequence[np.ndarray]) -> list[list[Detection]]:
    return [self.detect(image) for image in images]
