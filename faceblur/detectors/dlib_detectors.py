"""dlib's face detectors: a second detector for Table 2, so its claim does not rest on MTCNN.

`DlibHOG` is `dlib.get_frontal_face_detector()` (HOG features and a linear SVM, fast on a CPU);
`DlibMMOD` is the MMOD CNN detector, whose weights ship in `face-recognition-models`
(`mmod_human_face_detector.dat`; ~7 s per 512 px image on the 2-core CPU). Nothing is
downloaded at run time.

`face_recognition_models` imports `pkg_resources` to name its files, and setuptools >= 81 no
longer ships it; `model_path` finds the files through the package's location instead, without
importing it (as `faceblur.detectors.mtcnn` does for MTCNN's weights).
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib.metadata
import importlib.util
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from faceblur.detectors.base import Detection
from faceblur.errors import ConfigError
from faceblur.images import as_rgb

DLIB_HINT = "pip install dlib-bin==20.0.1.post1"
MODELS_PACKAGE = "face_recognition_models"
MODELS_HINT = "pip install face-recognition-models==0.3.0"


def import_dlib():
  """The `dlib` module, or a one-line `ConfigError` saying how to install it."""
  if importlib.util.find_spec("dlib") is None:
    raise ConfigError(f"dlib is not installed ({DLIB_HINT})")
  import dlib  # noqa: PLC0415 — a compiled extension; loaded only when a dlib model is asked for

  return dlib


def model_path(file_name: str) -> pathlib.Path:
  """A file in `face_recognition_models/models/`, e.g. 'mmod_human_face_detector.dat'."""
  spec = importlib.util.find_spec(MODELS_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise ConfigError(f"dlib model {file_name} not found: package '{MODELS_PACKAGE}' is not "
                      f"installed ({MODELS_HINT})")
  path = pathlib.Path(spec.submodule_search_locations[0]) / "models" / file_name
  if not path.is_file():
    raise ConfigError(f"dlib model file not found: {path} ({MODELS_HINT})")
  return path


def to_dlib_image(image: np.ndarray) -> np.ndarray:
  """HxWx3 float in [0, 1] (or grey/RGBA) -> the C-contiguous uint8 RGB array dlib takes."""
  return np.ascontiguousarray(np.round(np.clip(as_rgb(image), 0, 1) * 255).astype(np.uint8))


def package_version(name: str) -> str:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


class DlibHOG:
  """dlib's frontal-face HOG detector.

  The score is the SVM's margin; `threshold` is dlib's `adjust_threshold` (0 = dlib's own
  operating point; detections scoring above it are kept). `upsample` doubles the image that
  many times first: the detector's window is 80 px, so a 64 px face needs one doubling, as in
  dlib's examples (`detector(image, 1)`).
  """

  name = "dlib_hog"

  def __init__(self, *, threshold: float = 0.0, upsample: int = 1):
    dlib = import_dlib()
    if upsample < 0 or upsample != int(upsample):
      raise ConfigError(f"dlib_hog upsample is a number of doublings (integer >= 0), "
                        f"got {upsample}")
    self._detector = dlib.get_frontal_face_detector()
    self.threshold = float(threshold)
    self.upsample = int(upsample)
    self.version = package_version("dlib-bin")

  def describe(self) -> str:
    return (f"dlib {self.version} HOG frontal-face detector; score threshold {self.threshold:g}, "
            f"upsampled {self.upsample}x")

  def detect(self, image: np.ndarray) -> list[Detection]:
    return self._detect_with(self._detector, image)

  def _detect_with(self, detector, image: np.ndarray) -> list[Detection]:
    rectangles, scores, _ = detector.run(to_dlib_image(image), self.upsample, self.threshold)
    detections = [Detection(box=(float(r.left()), float(r.top()), float(r.right() + 1),
                                 float(r.bottom() + 1)), score=float(score))
                  for r, score in zip(rectangles, scores, strict=True)]
    return sorted(detections, key=lambda d: -d.score)

  def detect_batch(self, images: np.ndarray | Sequence[np.ndarray]) -> list[list[Detection]]:
    """Each image as `detect` finds it, the images shared out over the CPU's cores: dlib
    releases the GIL while it scans, but one detector object is not safe to share between
    threads (shared, the same image gives other boxes), so each thread scans with its own."""
    images = list(images)
    workers = min(len(images), len(self._thread_detectors))
    if workers <= 1:
      return [self.detect(image) for image in images]
    parts = [images[part::workers] for part in range(workers)]
    found = list(_thread_pool().map(
        lambda detector, part: [self._detect_with(detector, image) for image in part],
        self._thread_detectors[:workers], parts))
    return [found[index % workers][index // workers] for index in range(len(images))]

  @functools.cached_property
  def _thread_detectors(self) -> list:
    """One detector per thread of `_thread_pool` (each takes ~0.5 s to build)."""
    dlib = import_dlib()
    return [self._detector] + [dlib.get_frontal_face_detector()
                               for _ in range(_num_threads() - 1)]


@functools.cache
def _num_threads() -> int:
  from faceblur import ops  # noqa: PLC0415 (imports JAX, which Table 3's workers do without)

  return ops.host_threads()


@functools.cache
def _thread_pool() -> concurrent.futures.ThreadPoolExecutor:
  return concurrent.futures.ThreadPoolExecutor(max_workers=_num_threads(),
                                               thread_name_prefix="dlib")


# A forked child has none of the pool's threads: it makes its own on first use.
if hasattr(os, "register_at_fork"):
  os.register_at_fork(after_in_child=_thread_pool.cache_clear)


class DlibMMOD:
  """dlib's MMOD CNN face detector (`mmod_human_face_detector.dat`): slower, but finds faces
  HOG misses (turned away, small). The score is the CNN's confidence; `threshold` its minimum.
  """

  name = "dlib_mmod"

  def __init__(self, *, threshold: float = 0.0, upsample: int = 1):
    dlib = import_dlib()
    if upsample < 0 or upsample != int(upsample):
      raise ConfigError(f"dlib_mmod upsample is a number of doublings (integer >= 0), "
                        f"got {upsample}")
    self._detector = dlib.cnn_face_detection_model_v1(str(model_path(
        "mmod_human_face_detector.dat")))
    self.threshold = float(threshold)
    self.upsample = int(upsample)
    self.version = package_version("dlib-bin")

  def describe(self) -> str:
    models = package_version("face-recognition-models")
    return (f"dlib {self.version} MMOD CNN face detector (face-recognition-models {models}); "
            f"confidence threshold {self.threshold:g}, upsampled {self.upsample}x")

  def detect(self, image: np.ndarray) -> list[Detection]:
    found = self._detector(to_dlib_image(image), self.upsample)
    detections = [Detection(box=(float(d.rect.left()), float(d.rect.top()),
                                 float(d.rect.right() + 1), float(d.rect.bottom() + 1)),
                            score=float(d.confidence))
                  for d in found if d.confidence >= self.threshold]
    return sorted(detections, key=lambda d: -d.score)

  def detect_batch(self, images: np.ndarray | Sequence[np.ndarray]) -> list[list[Detection]]:
    return [self.detect(image) for image in images]
