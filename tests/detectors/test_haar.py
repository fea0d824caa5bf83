"""OpenCV's Haar cascade (a test dependency): finds real faces, not noise, and reports boxes."""

import numpy as np
import skimage

from faceblur import detectors


def test_haar_finds_the_astronaut_and_not_noise():
  detector = detectors.make_detector("haar")
  astronaut = skimage.data.astronaut().astype(np.float32) / 255
  found = detector.detect(astronaut)
  assert found, "no face found on the astronaut portrait"
  x0, y0, x1, y1 = found[0].box
  # Her face lies around x 170-270, y 50-190 in the 512 px portrait.
  assert 150 < (x0 + x1) / 2 < 290 and 40 < (y0 + y1) / 2 < 200, found[0].box
  assert found[0].score >= detector.threshold
  noise = np.random.default_rng(0).random((256, 256, 3), dtype=np.float32)
  assert detector.detect(noise) == []
  assert "Haar" in detector.describe()
