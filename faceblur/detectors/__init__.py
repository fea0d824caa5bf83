"""Face detectors behind one small interface (`base`), chosen by name with `make_detector`.

`make_detector('mtcnn')` is the project's detector (a JAX port of the `mtcnn` 1.0.0 weights,
`faceblur.detectors.mtcnn`); `make_detector('haar')` is OpenCV's frontal-face Haar cascade
(`faceblur.detectors.haar`), which barely reacts to blur and is there as a contrast, only when
OpenCV is installed; `make_detector('dlib_hog')` and `make_detector('dlib_mmod')` are dlib's HOG
and MMOD CNN detectors (`faceblur.detectors.dlib_detectors`), the evaluation's second detector.
Every detector returns its detections highest score first. Another detector is a module here
whose class has `FaceDetector`'s methods, plus one constructor registered in `DETECTORS`.
"""

import importlib.util

from faceblur.detectors.base import Box, Detection, FaceDetector, box_iou, face_found
from faceblur.detectors.dlib_detectors import DlibHOG, DlibMMOD
from faceblur.detectors.haar import HaarCascade
from faceblur.errors import ConfigError
from faceblur.registry import Registry

__all__ = ["Box", "Detection", "FaceDetector", "box_iou", "face_found", "make_detector",
           "DETECTORS"]

DETECTORS: Registry = Registry("unknown detector {name!r} (known: {choices})")


@DETECTORS.register("mtcnn")
def _mtcnn(*, threshold: float | None = None, **kwargs) -> FaceDetector:
  """`threshold` sets the O-Net score, the one that decides what counts as a face."""
  from faceblur.detectors.mtcnn import MTCNN  # noqa: PLC0415 — imports JAX; only when asked for

  if threshold is not None:
    p_net, r_net, _ = kwargs.get("thresholds", (0.6, 0.7, 0.7))
    kwargs["thresholds"] = (p_net, r_net, threshold)
  return MTCNN(**kwargs)


@DETECTORS.register("haar")
def _haar(**kwargs) -> FaceDetector:
  if importlib.util.find_spec("cv2") is None:
    raise ConfigError("detector 'haar' needs OpenCV: pip install 'opencv-python-headless<5'")
  return HaarCascade(**kwargs)


@DETECTORS.register("dlib_hog")
def _dlib_hog(**kwargs) -> FaceDetector:
  return DlibHOG(**kwargs)


@DETECTORS.register("dlib_mmod")
def _dlib_mmod(**kwargs) -> FaceDetector:
  return DlibMMOD(**kwargs)


def make_detector(name: str = "mtcnn", **kwargs) -> FaceDetector:
  """'mtcnn' (default; `threshold=` sets the O-Net score), 'haar' (needs OpenCV), 'dlib_hog' or
  'dlib_mmod' (`threshold=` sets dlib's score threshold)."""
  return DETECTORS.get(name)(**kwargs)
