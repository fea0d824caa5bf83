"""The MTCNN golden images, built from what packages ship (uint8 HxWx3 RGB); shared by
tools/make_mtcnn_golden.py and tests/detectors/test_mtcnn_golden.py."""

import matplotlib.cbook
import numpy as np
import skimage
from PIL import Image, ImageFilter


def _grace_hopper() -> np.ndarray:
  with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
    return np.asarray(Image.open(handle).convert("RGB"))


def _blurred(image: np.ndarray, sigma: float) -> np.ndarray:
  return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))


def _pair() -> np.ndarray:
  """Two faces side by side at different scales on a grey canvas."""
  canvas = np.full((300, 480, 3), 118, np.uint8)
  astronaut = np.asarray(Image.fromarray(skimage.data.astronaut()[0:240, 110:350])
                         .resize((160, 160), Image.BICUBIC))
  hopper = np.asarray(Image.fromarray(_grace_hopper()[40:400, 60:420]).resize((110, 110),
                                                                               Image.BICUBIC))
  canvas[60:220, 30:190] = astronaut
  canvas[120:230, 300:410] = hopper
  return canvas


IMAGES = {
    "astronaut": lambda: skimage.data.astronaut(),
    "grace_hopper": _grace_hopper,
    "grace_hopper_blur3": lambda: _blurred(_grace_hopper(), 3),
    "astronaut_face_64": lambda: np.asarray(Image.fromarray(
        skimage.data.astronaut()[20:240, 120:340]).resize((64, 64), Image.BICUBIC)),
    "two_faces": _pair,
}
