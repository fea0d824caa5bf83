"""MTCNN in JAX against an independent numpy forward pass and on real faces; detector helpers.

Real faces come from scikit-image: the astronaut portrait and the 25x25 LFW crops (upsampled x5,
padded to 192 px like a face crop with context). Motion blur of 31 px on those 125 px faces is
the heavy end of the paper's blur and must cost MTCNN clearly in detection rate.
"""

import importlib.util
import pathlib
import sys

import joblib
import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.transform
from numpy.lib.stride_tricks import sliding_window_view

from faceblur import detectors
from faceblur.detectors import Detection, mtcnn
from faceblur.errors import ConfigError

WEIGHTS = pathlib.Path(importlib.util.find_spec("mtcnn").submodule_search_locations[0]) / \
    "assets" / "weights"
LFW_COUNT = 30
CANVAS = 192
ASTRONAUT_FACE_CENTRE = (222, 117)  # x, y: between the eyes and the mouth (measured)


@pytest.fixture(scope="module")
def detector():
  return mtcnn.MTCNN()


@pytest.fixture(scope="module")
def astronaut():
  return skimage.data.astronaut().astype(np.float32) / 255


@pytest.fixture(scope="module")
def lfw_faces():
  """First LFW faces: 25x25 grey -> 125 px (bilinear) -> edge-padded to 192 px, RGB."""
  faces = []
  for face in skimage.data.lfw_subset()[:LFW_COUNT]:
    face = np.clip(scipy.ndimage.zoom(face, 5, order=1), 0, 1)
    before = (CANVAS - face.shape[0]) // 2
    face = np.pad(face, (before, CANVAS - face.shape[0] - before), mode="edge")
    faces.append(np.repeat(face[..., None], 3, axis=-1).astype(np.float32))
  return np.stack(faces)


def _normalise(images):
  return (np.asarray(images, np.float64) * 255 - 127.5) / 128


# ----------------------------------------------------------------------------- numpy reference


def _conv(x, kernel, bias):
  kh, kw = kernel.shape[:2]
  windows = sliding_window_view(x, (kh, kw), axis=(1, 2))  # (N, H', W', C, kh, kw)
  return np.einsum("nhwcij,ijco->nhwo", windows, kernel.astype(np.float64)) + bias


def _prelu(x, alpha):
  return np.maximum(x, 0) + alpha * np.minimum(x, 0)


def _max_pool(x, size, stride, same):
  """TF/Keras max pooling; 'same' = ceil(n / stride) outputs, -inf padding mostly at the end."""
  _, height, width, _ = x.shape
  if same:
    out_h, out_w = -(-height // stride), -(-width // stride)
    pad_h = max((out_h - 1) * stride + size - height, 0)
    pad_w = max((out_w - 1) * stride + size - width, 0)
    x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                   (0, 0)), constant_values=-np.inf)
  else:
    out_h, out_w = (height - size) // stride + 1, (width - size) // stride + 1
  out = np.empty((x.shape[0], out_h, out_w, x.shape[-1]))
  for i in range(out_h):
    for j in range(out_w):
      out[:, i, j] = x[:, i * stride:i * stride + size, j * stride:j * stride + size].max((1, 2))
  return out


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _flatten(x):  # Keras Permute((2, 1, 3)) then Flatten
  return x.transpose(0, 2, 1, 3).reshape(len(x), -1)


def _numpy_pnet(w, x):
  x = _max_pool(_prelu(_conv(x, w[0], w[1]), w[2]), 2, 2, True)
  x = _prelu(_conv(x, w[3], w[4]), w[5])
  x = _prelu(_conv(x, w[6], w[7]), w[8])
  return _conv(x, w[9], w[10]), _softmax(_conv(x, w[11], w[12]))


def _numpy_rnet(w, x):
  x = _max_pool(_prelu(_conv(x, w[0], w[1]), w[2]), 3, 2, True)
  x = _max_pool(_prelu(_conv(x, w[3], w[4]), w[5]), 3, 2, False)
  x = _flatten(_prelu(_conv(x, w[6], w[7]), w[8]))
  x = _prelu(x @ w[9] + w[10], w[11])
  return x @ w[12] + w[13], _softmax(x @ w[14] + w[15])


def _numpy_onet(w, x):
  x = _max_pool(_prelu(_conv(x, w[0], w[1]), w[2]), 3, 2, True)
  x = _max_pool(_prelu(_conv(x, w[3], w[4]), w[5]), 3, 2, False)
  x = _max_pool(_prelu(_conv(x, w[6], w[7]), w[8]), 2, 2, True)
  x = _flatten(_prelu(_conv(x, w[9], w[10]), w[11]))
  x = _prelu(x @ w[12] + w[13], w[14])
  return x @ w[15] + w[16], x @ w[17] + w[18], _softmax(x @ w[19] + w[20])


def test_networks_match_numpy_forward_pass(astronaut, lfw_faces):
  params = mtcnn.load_params()
  face = astronaut[40:200, 150:290]  # the astronaut's face with some context

  def crops(size):
    return np.stack([skimage.transform.resize(face, (size, size), order=1),
                     skimage.transform.resize(lfw_faces[0][33:158, 33:158], (size, size)),
                     skimage.transform.resize(lfw_faces[1][33:158, 33:158], (size, size))])

  # Odd, non-square P-Net input: exercises the 'same' pooling's extra column/row.
  pnet_input = _normalise(skimage.transform.resize(face, (37, 31))[None])
  cases = [("pnet", _numpy_pnet, mtcnn.jitted(mtcnn.pnet), pnet_input),
           ("rnet", _numpy_rnet, mtcnn.jitted(mtcnn.rnet), _normalise(crops(24))),
           ("onet", _numpy_onet, mtcnn.jitted(mtcnn.onet), _normalise(crops(48)))]
  for name, reference, network, inputs in cases:
    raw = joblib.load(WEIGHTS / f"{name}.lz4")
    expected = reference(raw, inputs)
    actual = network(params[name], inputs.astype(np.float32))
    for want, got in zip(expected, actual, strict=True):
      np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, err_msg=name)
    if name != "pnet":  # these really are faces, and the networks say so
      assert (expected[-1][:, 1] > 0.5).all(), name


# ----------------------------------------------------------------------------- detection


def test_finds_the_astronaut_with_landmarks(detector, astronaut):
  found = detector.detect(astronaut)
  assert len(found) == 1
  (face,) = found
  x0, y0, x1, y1 = face.box
  assert 150 <= x0 < ASTRONAUT_FACE_CENTRE[0] < x1 <= 290
  assert 30 <= y0 < ASTRONAUT_FACE_CENTRE[1] < y1 <= 210
  assert face.score > 0.99
  assert face.landmarks.shape == (5, 2)
  xs, ys = face.landmarks.T
  assert ((x0 < xs) & (xs < x1) & (y0 < ys) & (ys < y1)).all()
  left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
  assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
  assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
  assert detectors.face_found(found, face.box)
  assert not detectors.face_found(found, (0, 0, 100, 100))


def _motion_blur(images, length):
  kernel = np.zeros((length, length))
  kernel[length // 2] = 1 / length  # horizontal line: linear camera motion
  return np.stack([scipy.ndimage.convolve(image, kernel[..., None], mode="nearest")
                   for image in images])


def test_lfw_faces_found_and_motion_blur_hurts(detector, lfw_faces):
  sharp = np.mean([detectors.face_found(d) for d in detector.detect_batch(lfw_faces)])
  blurred = np.mean([detectors.face_found(d)
                     for d in detector.detect_batch(_motion_blur(lfw_faces, 31))])
  assert sharp >= 0.85
  assert blurred <= sharp - 0.2


def test_no_face_in_flat_grey_or_noise(detector):
  rng = np.random.default_rng(0)
  grey = np.full((CANVAS, CANVAS, 3), 0.5, np.float32)
  noise = rng.random((CANVAS, CANVAS, 3), dtype=np.float32)
  assert detector.detect_batch([grey, noise]) == [[], []]


def test_detect_batch_matches_detect(detector, lfw_faces, astronaut):
  images = [lfw_faces[0], astronaut[::2, ::2], lfw_faces[2]]  # two sizes in one call
  batched = detector.detect_batch(images)
  assert [len(b) for b in batched] == [1, 1, 1]
  for image, found in zip(images, batched, strict=True):
    alone = detector.detect(image)
    assert len(alone) == len(found)
    for a, b in zip(alone, found, strict=True):
      np.testing.assert_allclose(a.box, b.box, atol=1e-3)
      np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
      assert a.score == pytest.approx(b.score, abs=1e-5)


def test_describe_names_package_and_thresholds(detector):
  line = detector.describe()
  assert "mtcnn 1.0.0" in line and "0.6/0.7/0.7" in line and "\n" not in line
  assert detector.threshold == 0.7 and detector.version == "1.0.0"


# ----------------------------------------------------------------------------- helpers, errors


def test_box_iou_hand_computed():
  assert detectors.box_iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1
  assert detectors.box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
  assert detectors.box_iou((0, 0, 4, 4), (0, 0, 2, 2)) == 0.25
  assert detectors.box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0
  assert detectors.box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0


def test_face_found_rules():
  half = Detection(box=(0, 0, 4, 2), score=0.9, landmarks=None)  # IoU 0.5 with (0, 0, 4, 4)
  quarter = Detection(box=(0, 0, 4, 1), score=0.9, landmarks=None)
  assert not detectors.face_found([])
  assert detectors.face_found([quarter])
  assert detectors.face_found([quarter, half], (0, 0, 4, 4))
  assert not detectors.face_found([quarter], (0, 0, 4, 4))
  assert detectors.face_found([quarter], (0, 0, 4, 4), iou_threshold=0.25)


def test_make_detector_errors(tmp_path, monkeypatch):
  with pytest.raises(ConfigError, match="'nope'"):
    detectors.make_detector("nope")
  monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
  with pytest.raises(ConfigError, match="opencv-python-headless<5"):
    detectors.make_detector("haar")
  with pytest.raises(ConfigError, match=r"pnet\.lz4.*pip install mtcnn==1\.0\.0"):
    mtcnn.MTCNN(weights_dir=tmp_path)


def test_make_detector_threshold_sets_onet_score():
  detector = detectors.make_detector("mtcnn", threshold=0.9)
  assert detector.thresholds == (0.6, 0.7, 0.9) and detector.threshold == 0.9
