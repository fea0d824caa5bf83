"""faceblur's MTCNN against the `mtcnn` 1.0.0 package's own detections (pyramid, P/R/O-Net,
both NMS kinds, box regression, landmarks), made once by tools/make_mtcnn_golden.py where
TensorFlow was installed; the images are rebuilt here from the packages that ship them."""

import json
import pathlib
import sys

import numpy as np
import pytest

from faceblur import detectors

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from golden_mtcnn_images import IMAGES  # noqa: E402

GOLDEN = json.loads((ROOT / "tests" / "fixtures" / "golden_mtcnn.json").read_text())


@pytest.fixture(scope="module")
def detector():
  return detectors.make_detector("mtcnn", threshold=GOLDEN["thresholds"][2])


@pytest.mark.parametrize("name", sorted(GOLDEN["images"]))
def test_detections_match_the_package(detector, name):
  golden = GOLDEN["images"][name]
  image = IMAGES[name]().astype(np.float32) / 255
  assert list(image.shape) == golden["shape"]
  found = detector.detect(image)
  assert len(found) == len(golden["boxes"]), [d.box for d in found]
  order = np.argsort(golden["scores"])[::-1]  # both highest score first
  for detection, index in zip(found, order, strict=True):
    # Measured: boxes within 0.01 px and scores within 1e-4 of the package's on every image.
    np.testing.assert_allclose(detection.box, golden["boxes"][index], atol=0.05)
    assert detection.score == pytest.approx(golden["scores"][index], abs=1e-3)
    np.testing.assert_allclose(detection.landmarks, golden["landmarks"][index], atol=0.05)
