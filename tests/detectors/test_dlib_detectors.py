"""dlib's HOG and MMOD detectors behind `FaceDetector`: real faces found, noise not, boxes in
(x0, y0, x1, y1) pixels, highest score first; missing packages are one line."""

import importlib.util

import numpy as np
import pytest
import skimage.data

from faceblur import detectors
from faceblur.detectors import dlib_detectors
from faceblur.errors import ConfigError

ASTRONAUT_FACE = (175, 76, 266, 167)  # dlib HOG's box on the 512 px portrait (measured)


@pytest.fixture(scope="module")
def astronaut():
  return skimage.data.astronaut().astype(np.float32) / 255


def test_hog_finds_the_astronaut_where_her_face_is_and_nothing_in_noise(astronaut):
  detector = detectors.make_detector("dlib_hog", upsample=0)
  found = detector.detect(astronaut)
  assert found, "no face found on the astronaut portrait"
  assert detectors.box_iou(found[0].box, ASTRONAUT_FACE) > 0.8, found[0].box
  assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
  noise = np.random.default_rng(0).random((256, 256, 3), dtype=np.float32)
  assert detector.detect(noise) == []
  assert "HOG" in detector.describe() and detector.name == "dlib_hog"


def test_hog_threshold_trades_detections_for_confidence(astronaut):
  # Upsampled once, HOG also scores a weak second "face" on her suit (score ~0.1).
  loose = detectors.make_detector("dlib_hog", threshold=0.0).detect(astronaut)
  strict = detectors.make_detector("dlib_hog", threshold=0.5).detect(astronaut)
  assert len(strict) < len(loose)
  assert all(d.score > 0.5 for d in strict) and strict


def test_hog_finds_a_small_face_only_when_upsampled(astronaut):
  small = astronaut[::4, ::4]  # her face is ~23 px: under HOG's 80 px window even doubled once
  assert detectors.make_detector("dlib_hog", upsample=0).detect(small) == []
  found = detectors.make_detector("dlib_hog", upsample=2).detect(small)
  assert found and detectors.box_iou(found[0].box, [v / 4 for v in ASTRONAUT_FACE]) > 0.5


def test_mmod_finds_the_astronaut(astronaut):
  # Her head and shoulders (MMOD's window is 80 px like HOG's; a crop keeps the CNN quick).
  detector = detectors.make_detector("dlib_mmod", upsample=0)
  found = detector.detect(astronaut[:300, 100:350])
  face = (ASTRONAUT_FACE[0] - 100, ASTRONAUT_FACE[1], ASTRONAUT_FACE[2] - 100, ASTRONAUT_FACE[3])
  assert found and detectors.box_iou(found[0].box, face) > 0.5, found
  assert "MMOD" in detector.describe()


def test_bad_settings_and_missing_packages_are_one_line(monkeypatch):
  with pytest.raises(ConfigError, match="upsample is a number of doublings"):
    detectors.make_detector("dlib_hog", upsample=0.5)
  with pytest.raises(ConfigError, match=r"dlib model file not found: .*nothing\.dat"):
    dlib_detectors.model_path("nothing.dat")
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name in ("dlib", "face_recognition_models")
                      else real_find_spec(name, *a))
  with pytest.raises(ConfigError, match=r"^dlib is not installed \(pip install dlib-bin=="):
    detectors.make_detector("dlib_hog")
  with pytest.raises(ConfigError, match="pip install face-recognition-models==0.3.0"):
    dlib_detectors.model_path("mmod_human_face_detector.dat")


def test_hog_batch_over_threads_finds_what_one_detector_finds(monkeypatch):
  """Guards the threads' own detectors: one dlib detector shared between threads scans some
  images into other boxes and scores (measured: 73 of 200 demo faces)."""
  monkeypatch.setattr(dlib_detectors, "_num_threads", lambda: 3)
  faces = [np.pad(np.repeat(np.kron(face, np.ones((4, 4)))[..., None], 3, axis=-1),
                  ((20, 20), (20, 20), (0, 0)), mode="edge").astype(np.float32)
           for face in skimage.data.lfw_subset()[:24]]
  detector = detectors.make_detector("dlib_hog")
  alone = [[(d.box, d.score) for d in detector.detect(face)] for face in faces]
  batched = [[(d.box, d.score) for d in found] for found in detector.detect_batch(faces)]
  assert sum(map(bool, alone)) >= 12
  assert batched == alone


def _detect_in_child(detector, images, results):
  results.put([len(found) for found in detector.detect_batch(images)])


def test_hog_batch_works_in_a_forked_child_of_a_process_that_used_the_threads():
  """Guards the pool's reset at fork: a child inherits the pool but none of its threads, and
  its first batch waited for them forever."""
  import multiprocessing  # noqa: PLC0415

  detector = detectors.make_detector("dlib_hog")
  noise = [np.random.default_rng(seed).random((96, 96, 3), dtype=np.float32)
           for seed in range(4)]
  assert [len(found) for found in detector.detect_batch(noise)] == [0, 0, 0, 0]
  context = multiprocessing.get_context("fork")
  results = context.Queue()
  child = context.Process(target=_detect_in_child, args=(detector, noise, results))
  child.start()
  try:
    assert results.get(timeout=60) == [0, 0, 0, 0]
  finally:
    child.join(timeout=5)
    if child.is_alive():
      child.kill()
