"""faceblur: face image deblurring that helps face detection (JAX/Flax NNX).

Images are numpy/JAX arrays HxWx3 (or NxHxWx3) float32 in [0, 1], RGB, throughout the
package; `faceblur.data.image_io` converts files to and from that form.

The notebook-sized API (imports nothing heavy until used; nothing here needs TensorFlow):

  >>> import faceblur
  >>> deblurrer = faceblur.load_deblurrer("runs/demo/srn")
  >>> restored = deblurrer(faceblur.load_image("blurred.jpg"))
  >>> faces = faceblur.restore_faces(faceblur.load_image("photo.jpg"), "runs/demo/srn")
  >>> faces.image, faces.to_json()           # the photo with its faces restored in place
  >>> faceblur.detect_faces(restored)
  >>> faceblur.psnr(restored, sharp), faceblur.ssim(restored, sharp)
  >>> config = faceblur.get_config("demo")   # any configs/<name>.py, as a ConfigDict
"""

import importlib
import pathlib
from typing import Any

import numpy as np

from faceblur.images import as_rgb, to_float

__version__ = "0.1.0"
__all__ = ["load_deblurrer", "deblur", "restore_faces", "detect_faces", "psnr", "ssim",
           "get_config", "load_image", "save_image", "run"]

_DETECTORS: dict[str, Any] = {}


def load_deblurrer(workdir: str | pathlib.Path, *, tile_size: int = 0,
                   tile_megapixels: float = 2.0, tile_overlap: int = 32,
                   use_ema: bool | None = None):
  """A trained SRN from a stage-2 workdir or release: call it on an image to restore it (any
  size; grey, RGBA, uint8 or PIL images too). Tiles and `use_ema`: see `Restorer`;
  `faceblur.inference.Restorer` loads the CycleGAN's F."""
  from faceblur.inference import Deblurrer

  return Deblurrer(workdir, tile_size=tile_size, tile_megapixels=tile_megapixels,
                   tile_overlap=tile_overlap, use_ema=use_ema)


def deblur(image, workdir: str | pathlib.Path) -> np.ndarray:
  """Restores one image (numpy or PIL) with the SRN trained in `workdir`."""
  return load_deblurrer(workdir)(image)


def restore_faces(image, workdir: str | pathlib.Path, boxes=None, **options):
  """Restores each face of a photo in place with the SRN of `workdir` (`FacesResult`: `.image`
  and what was done to each face). `boxes` [[x0, y0, x1, y1], ...] skips detection; `options`
  are `faceblur.inference.FaceRestorer`'s (min_face_size, margin, no_face, ...)."""
  from faceblur.inference.faces import make_face_restorer

  return make_face_restorer(load_deblurrer(workdir), **options)(image, boxes)


def detect_faces(image, *, detector: str = "mtcnn") -> list:
  """Face detections (box, score, landmarks) in one image (numpy or PIL)."""
  from faceblur.detectors import make_detector

  if detector not in _DETECTORS:
    _DETECTORS[detector] = make_detector(detector)
  return _DETECTORS[detector].detect(as_rgb(image))


def psnr(restored, reference) -> float:
  from faceblur import metrics

  return float(metrics.psnr(_batch(restored), _batch(reference)).mean())


def ssim(restored, reference) -> float:
  from faceblur import metrics

  return float(metrics.ssim(_batch(restored), _batch(reference)).mean())


def get_config(name: str, arg: str | None = None):
  """The ConfigDict of `configs/<name>.py` (with its optional argument), to edit in code."""
  module = importlib.import_module(f"configs.{name}")
  return module.get_config(arg) if arg is not None else module.get_config()


def run(config, workdir: str | pathlib.Path | None = None):
  """Runs a config's job (what `main.py` does), e.g. `run(get_config("demo"), "runs/demo")`."""
  from faceblur import jobs

  return jobs.run(config, str(workdir) if workdir else None)


def load_image(path: str | pathlib.Path) -> np.ndarray:
  from faceblur.data import image_io

  return to_float(image_io.load_image(path))


def save_image(path: str | pathlib.Path, image: np.ndarray) -> None:
  from faceblur.data import image_io

  image_io.save_image(path, image)


def _batch(image) -> np.ndarray:
  """One image (any form `as_rgb` takes) or an NxHxWxC batch -> NxHxWx3."""
  if getattr(image, "ndim", 0) == 4:
    return np.stack([as_rgb(one) for one in image])
  return as_rgb(image)[None]
