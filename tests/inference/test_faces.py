"""Faces restored in place: a photo built from demo faces on a smooth background."""

import json
import math

import ml_collections
import numpy as np
import pytest
from helpers import srn_config
from PIL import Image

import faceblur
from configs import deblur as deblur_config
from faceblur import inference
from faceblur.data import image_io
from faceblur.data.demo import DemoFaces
from faceblur.errors import ConfigError
from faceblur.images import as_rgb, to_uint8
from faceblur.inference import faces as faces_module
from faceblur.train import srn

FACE = 96  # side of the demo faces pasted into the photo
# Where the faces go (top, left): apart, so that their crops do not overlap.
APART = ((30, 30), (250, 120), (60, 380))
OFFSET = 0.2  # what the stub restorer adds


def _photo(positions=APART, shape=(400, 520)) -> np.ndarray:
  """uint8 RGB: demo faces (squashed into [13, 191]) on a smooth colour gradient in [50, 180],
  so the stub's +0.2 never clips."""
  rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
  background = np.stack([0.45 + 0.2 * np.sin(cols / 50), 0.45 + 0.2 * np.cos(rows / 40),
                         0.3 + 0.2 * rows / shape[0]], axis=-1)
  photo = to_uint8(background)
  faces = DemoFaces(size=FACE, count=max(1, len(positions)), seed=3, group="test")
  for index, (top, left) in enumerate(positions):
    photo[top:top + FACE, left:left + FACE] = (faces[index]["image"] * 0.7 + 13).astype(np.uint8)
  return photo


class OffsetRestorer:
  """restore = input + 0.2 (+ `step` per earlier crop): the change a feathered paste
  must fade in; `__call__` is the whole-image path."""

  def __init__(self, step: float = 0.0):
    self.config = ml_collections.ConfigDict({"data": {"face_size": 64}})
    self.shapes, self.whole_calls, self.step, self.crops = [], 0, step, 0

  def restore_batch(self, batch):
    self.shapes.append(batch.shape)
    index = self.crops + np.arange(len(batch))  # of each crop, over all calls
    self.crops += len(batch)
    return batch + (OFFSET + self.step * index)[:, None, None, None]

  def __call__(self, image):
    self.whole_calls += 1
    return np.clip(as_rgb(image) + OFFSET, 0, 1)


class NoDetector:
  name, version, threshold = "none", "0", 0.5

  def __init__(self):
    self.calls = 0

  def detect(self, image):
    self.calls += 1
    return []

  def describe(self):
    return "no detector"


def _outside_crops(shape, faces) -> np.ndarray:
  outside = np.ones(shape[:2], bool)
  for face in faces:
    x0, y0, x1, y1 = face.crop
    outside[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = False
  return outside


def _largest_step(change: np.ndarray) -> int:
  """The largest jump of the change (output - input, in 8-bit levels) between neighbours."""
  return int(max(np.abs(np.diff(change, axis=0)).max(), np.abs(np.diff(change, axis=1)).max()))


def _ramp(face) -> int:
  box_side = max(face.box[2] - face.box[0], face.box[3] - face.box[1])
  return int((face.crop[2] - face.crop[0] - box_side) / 2)


def test_faces_change_the_background_bytes_do_not_and_the_seams_are_smooth():
  photo = _photo()
  restorer = OffsetRestorer()
  result = faces_module.FaceRestorer(restorer, min_face_size=40)(photo)
  assert result.mode == "faces" and len(result.faces) == len(APART)
  # Each placed face is found, restored once at the one network side: (1 + 2 x 0.25) x 64.
  for top, left in APART:
    assert any(face.box[0] < left + FACE / 2 < face.box[2]
               and face.box[1] < top + FACE / 2 < face.box[3] for face in result.faces)
  # All three in one call, the batch filled up to a power of two.
  assert restorer.shapes == [(4, 96, 96, 3)] and restorer.whole_calls == 0
  output = to_uint8(result.image)
  outside = _outside_crops(photo.shape, result.faces)
  assert outside.mean() > 0.5
  np.testing.assert_array_equal(output[outside], photo[outside])
  change = output.astype(int) - photo
  for face in result.faces:  # the face box is restored fully: +0.2 = +51 levels
    x0, y0, x1, y1 = (round(v) for v in face.box)
    assert np.abs(change[y0 + 2:y1 - 2, x0 + 2:x1 - 2] - 51).max() <= 2
  # The +51 fades in across the margin: a raised cosine over L px rises at most pi / (2 L)
  # per pixel, plus 8-bit rounding; a hard paste would jump by 51 at the crop's edge.
  bound = 51 * math.pi / (2 * min(_ramp(face) for face in result.faces)) + 2
  assert bound < 8
  assert _largest_step(change) <= bound


def test_identity_network_gives_the_faces_back(identity_srn):
  """Resize down, identity, resize back, plus the detail the round trip removes: the photo
  comes back to within one 8-bit level, and the background exactly."""
  photo = _photo()
  face_restorer = faces_module.FaceRestorer(inference.Deblurrer(identity_srn),
                                            detector=NoDetector())
  assert face_restorer.face_size == round(64 * faces_module.FACE_FILL["demo"])
  boxes = [(left, top, left + FACE, top + FACE) for top, left in APART]
  result = face_restorer(photo, boxes)
  assert np.abs(to_uint8(result.image).astype(int) - photo).max() <= 1
  # The notebook API: the same, from the workdir.
  api = faceblur.restore_faces(photo, identity_srn, boxes=boxes)
  assert api.mode == "faces" and [face.crop for face in api.faces] == \
      [face.crop for face in result.faces]
  np.testing.assert_array_equal(api.image, result.image)


def test_given_boxes_skip_detection_and_boxes_outside_are_skipped():
  photo = _photo()
  detector = NoDetector()
  face_restorer = faces_module.FaceRestorer(OffsetRestorer(), detector=detector)
  top, left = APART[1]
  result = face_restorer(photo, [[left, top, left + FACE, top + FACE], [600, 0, 620, 30]])
  assert detector.calls == 0 and result.boxes_from == "given" and result.mode == "faces"
  assert [face.action for face in result.faces] == ["restored", "skipped: outside the image"]
  crop = result.faces[0].crop
  # The square crop: the box's side and a quarter of it on each side, about its centre.
  assert crop == (left - 24, top - 24, left + FACE + 24, top + FACE + 24)
  output = to_uint8(result.image)
  outside = _outside_crops(photo.shape, result.faces[:1])
  np.testing.assert_array_equal(output[outside], photo[outside])
  assert (output[~outside] != photo[~outside]).mean() > 0.9
  with pytest.raises(ConfigError, match=r"boxes\[0\]: box .* needs x1 > x0"):
    face_restorer(photo, [[10, 10, 5, 20]])
  with pytest.raises(ConfigError, match=r"boxes\[1\]: expected \[x0, y0, x1, y1\]"):
    face_restorer(photo, [[0, 0, 5, 5], [1, 2, 3]])


@pytest.mark.parametrize("no_face", ["whole", "keep"])
def test_no_face_restores_the_whole_image_or_keeps_it(no_face):
  background = _photo(positions=())
  restorer = OffsetRestorer()
  result = faces_module.FaceRestorer(restorer, detector=NoDetector(), no_face=no_face)(
      background)
  assert result.mode == no_face and result.faces == [] and not restorer.shapes
  expected = np.clip(background / 255 + OFFSET, 0, 1) if no_face == "whole" else background
  np.testing.assert_array_equal(to_uint8(result.image), to_uint8(expected))
  assert restorer.whole_calls == (no_face == "whole")
  with pytest.raises(ConfigError, match="no_face must be one of whole, keep"):
    faces_module.FaceRestorer(restorer, no_face="skip")


def test_overlapping_faces_blend_without_a_seam():
  """Two crops that overlap, restored differently (+0.2 and +0.25): neither is pasted over
  the other; their weighted mean fades between them, the union mask into the photo."""
  positions = ((60, 60), (110, 120))
  photo = _photo(positions)
  restorer = OffsetRestorer(step=0.05)
  boxes = [(left, top, left + FACE, top + FACE) for top, left in positions]
  result = faces_module.FaceRestorer(restorer, detector=NoDetector())(photo, boxes)
  output = to_uint8(result.image)
  outside = _outside_crops(photo.shape, result.faces)
  np.testing.assert_array_equal(output[outside], photo[outside])
  change = output.astype(int) - photo
  # Where only one box is, its own offset: 51 and 64 levels.
  assert np.abs(change[70:85, 70:90] - 51).max() <= 2
  assert np.abs(change[180:200, 180:210] - 64).max() <= 2
  # Two raised cosines over 24 px (the union's slope is at most the sum of theirs), each
  # scaled by its face's change (51 and 64 levels), plus rounding; the last face pasted on top
  # would step by 64 at its crop's edge outside the first box and 13 inside it.
  ramp = min(_ramp(face) for face in result.faces)
  bound = (51 + 64) * math.pi / (2 * ramp) + 2
  assert ramp == 24 and bound < 10
  assert _largest_step(change) <= bound


def test_many_faces_are_restored_in_batches_each_pasted_where_it_was_cut():
  """Ten faces: two network calls (8, then 2), and each face gets its own crop's output back
  (the stub adds 0.01 more per crop, in the order the crops were cut)."""
  photo = np.full((240, 560, 3), 100, np.uint8)
  boxes = [(16 + 110 * (i % 5), 16 + 120 * (i // 5), 80 + 110 * (i % 5), 80 + 120 * (i // 5))
           for i in range(10)]
  restorer = OffsetRestorer(step=0.01)
  result = faces_module.FaceRestorer(restorer, detector=NoDetector())(photo, boxes)
  assert restorer.shapes == [(8, 96, 96, 3), (2, 96, 96, 3)]
  change = to_uint8(result.image).astype(int) - photo
  for index, (x0, y0, x1, y1) in enumerate(boxes):
    expected = round((OFFSET + 0.01 * index) * 255)
    assert np.abs(change[y0 + 16:y1 - 16, x0 + 16:x1 - 16] - expected).max() <= 1, index


def test_trained_face_size_is_read_from_the_checkpoints_config(tmp_path):
  config = srn_config()  # demo faces at the default 64 px, blurred by kernels
  assert faces_module.trained_face_size(config)[0] == round(64 * 1.09)
  config.data.train = ml_collections.ConfigDict(dict(kind="paired_folder", path=str(tmp_path)))
  (tmp_path / "synthesis.json").write_text(json.dumps(
      {"image_size": 256, "source": {"kind": "celeb_a"}}))
  assert faces_module.trained_face_size(config) == (
      round(256 * 0.53), f"{tmp_path / 'synthesis.json'}'s image_size (256 px) x face fill 0.53")
  (tmp_path / "synthesis.json").unlink()  # moved away: the training crop, a lower bound
  assert faces_module.trained_face_size(config)[0] == 24
  config.data.face_size = 100
  assert faces_module.trained_face_size(config)[0] == 100
  assert faces_module.is_face_model(srn_config())
  assert not faces_module.is_face_model(__import__("configs.srn").srn.get_config("gopro"))


@pytest.fixture(scope="module")
def trained_srn(tmp_path_factory):
  """Two steps at a high learning rate: a network that visibly changes what it restores."""
  workdir = tmp_path_factory.mktemp("srn")
  config = srn_config(2)
  config.optimizer.learning_rate = 3e-3
  srn.train_and_evaluate(config, workdir)
  return workdir


def test_deblur_job_restores_faces_in_place(trained_srn, tmp_path, capsys):
  """Through the job: an RGB photo (faces detected), a grey and an RGBA one (boxes from the
  file) and a face-less one (one warning, restored whole); sidecars and drawn boxes."""
  inputs, output = tmp_path / "in", tmp_path / "out"
  (inputs / "nested").mkdir(parents=True)
  photo = _photo()
  image_io.save_image(inputs / "photo.png", photo)
  grey = np.asarray(Image.fromarray(photo).convert("L"))
  Image.fromarray(grey, "L").save(inputs / "nested" / "grey.png")
  alpha = np.concatenate([photo, np.full((*photo.shape[:2], 1), 255, np.uint8)], axis=-1)
  alpha[:10, :10, 3] = 0  # transparent corner: composited onto white, as the whole path does
  Image.fromarray(alpha, "RGBA").save(inputs / "alpha.png")
  image_io.save_image(inputs / "plain.png", _photo(positions=()))
  top, left = APART[0]
  given = [[left, top, left + FACE, top + FACE]]
  (tmp_path / "boxes.json").write_text(json.dumps({"nested/grey.png": given,
                                                   "alpha.png": [{"box": given[0]}]}))
  config = deblur_config.get_config()
  config.checkpoint, config.input, config.output = str(trained_srn), str(inputs), str(output)
  config.boxes, config.draw_boxes = str(tmp_path / "boxes.json"), True
  assert inference.deblur_job(config) == 0
  captured = capsys.readouterr()
  assert captured.err.count("warning:") == 1
  assert (f"warning: {inputs / 'plain.png'}: no face found; restored the whole image "
          "(--config.no_face=whole)") in captured.err.splitlines()
  assert "(5 faces restored in place)" in captured.out
  for name, count, boxes_from in [("photo.png", 3, "detector"), ("nested/grey.png", 1, "given"),
                                  ("alpha.png", 1, "given")]:
    sidecar = json.loads((output / f"{name}.json").read_text())
    assert sidecar["mode"] == "faces" and sidecar["boxes_from"].startswith(boxes_from)
    assert sidecar["face_size"] == 70 and "demo_sharp faces' size (64 px)" in \
        sidecar["face_size_from"]
    assert sidecar["input"] == str(inputs / name) and sidecar["output"] == str(output / name)
    restored_faces = [face for face in sidecar["faces"] if face["action"] == "restored"]
    assert len(restored_faces) == count, sidecar
    source, restored = image_io.load_image(inputs / name), image_io.load_image(output / name)
    outside = np.ones(source.shape[:2], bool)
    for face in restored_faces:
      x0, y0, x1, y1 = face["crop"]
      outside[max(0, y0):y1, max(0, x0):x1] = False
    np.testing.assert_array_equal(restored[outside], source[outside], err_msg=name)
    for face in restored_faces:  # the faces changed (measured: 90 % of their pixels)
      x0, y0, x1, y1 = (round(v) for v in face["box"])
      assert (restored[y0:y1, x0:x1] != source[y0:y1, x0:x1]).any(axis=-1).mean() > 0.6, name
    drawn = output / name.replace(".png", ".boxes.png")
    assert image_io.load_image(drawn).shape == source.shape
  assert json.loads((output / "plain.png.json").read_text())["mode"] == "whole"
  assert image_io.load_image(output / "plain.png").shape == (400, 520, 3)


def test_bad_boxes_file_and_regions_are_one_line(identity_srn, tmp_path):
  (tmp_path / "in.png").write_bytes(b"")
  config = deblur_config.get_config()
  config.checkpoint, config.input, config.output = (str(identity_srn), str(tmp_path / "in.png"),
                                                    str(tmp_path / "out.png"))
  (tmp_path / "boxes.json").write_text('{"in.png": [[1, 2, 3]]}')
  config.boxes = str(tmp_path / "boxes.json")
  with pytest.raises(ConfigError) as raised:
    inference.deblur_job(config)
  assert str(raised.value) == (f"{tmp_path / 'boxes.json'}: 'in.png'[0]: expected "
                               "[x0, y0, x1, y1], got [1, 2, 3]")
  config.boxes, config.regions = "", "face"
  with pytest.raises(ConfigError, match="--config.regions must be faces, whole or auto"):
    inference.deblur_job(config)
