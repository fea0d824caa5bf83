"""Table 2 on WIDER FACE, on a tiny tree of photos the test composes from real faces."""

import json

import matplotlib.cbook
import ml_collections
import numpy as np
import pytest
import skimage
from PIL import Image

from configs import evaluate as evaluate_config
from faceblur import detectors
from faceblur.data.wider_face import FaceBox
from faceblur.errors import ConfigError
from faceblur.evaluate import evaluation, wider_face


def _face(detector, image: np.ndarray, size: int) -> tuple[np.ndarray, tuple]:
  """`image` resized to `size` and the box the detector finds on it."""
  resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
  return resized, detector.detect(resized.astype(np.float32) / 255)[0].box


def _write_tree(root, detector) -> None:
  astronaut = skimage.data.astronaut()[0:240, 110:350]
  with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
    hopper = np.asarray(Image.open(handle).convert("RGB"))[40:400, 60:420]
  rng = np.random.default_rng(0)
  photo = (120 + rng.integers(-8, 8, (300, 420, 3))).astype(np.uint8)
  lines = ["0--Parade/group.jpg", "4"]
  for (face, box), (x, y), blur in ((_face(detector, astronaut, 140), (20, 40), 0),
                                    (_face(detector, hopper, 110), (260, 120), 1)):
    photo[y:y + face.shape[0], x:x + face.shape[1]] = face
    x0, y0, x1, y1 = (round(v) for v in box)
    lines.append(f"{x + x0} {y + y0} {x1 - x0} {y1 - y0} {blur} 0 0 0 0 0")
  lines.append("200 10 40 50 2 0 0 0 0 0")  # annotated where no face is: missed by all
  lines.append("300 10 40 50 2 0 0 1 0 0")  # invalid: never counted
  lines += ["1--Handshaking/empty.jpg", "0", "0 0 0 0 0 0 0 0 0 0"]
  empty = (120 + rng.integers(-8, 8, (200, 200, 3))).astype(np.uint8)
  for name, image in (("0--Parade/group.jpg", photo), ("1--Handshaking/empty.jpg", empty)):
    path = root / "WIDER_val" / "images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)
  (root / "wider_face_split").mkdir()
  (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").write_text("\n".join(lines) + "\n")


def test_match_is_one_to_one_highest_score_first_and_ignores_invalid_faces():
  face = FaceBox(box=(0, 0, 10, 10), blur=0, expression=0, illumination=0, invalid=False,
                 occlusion=0, pose=0)
  ignored = FaceBox(box=(50, 50, 60, 60), blur=0, expression=0, illumination=0, invalid=True,
                    occlusion=0, pose=0)
  on_face = detectors.Detection(box=(0, 0, 10, 8), score=0.9)      # IoU 0.8
  second = detectors.Detection(box=(1, 0, 10, 10), score=0.8)      # a duplicate: false
  on_invalid = detectors.Detection(box=(50, 50, 60, 60), score=0.95)
  elsewhere = detectors.Detection(box=(20, 20, 30, 30), score=0.7)
  assert wider_face.match([second, on_face, on_invalid], [face, ignored]) == ([True, False], 1)
  assert wider_face.match([elsewhere], [face]) == ([False], 1)
  assert wider_face.match([detectors.Detection(box=(0, 0, 10, 4), score=1)], [face]) == (
      [False], 1)  # IoU 0.4


def test_recall_by_blur_level_and_size_with_known_answers(tmp_path, monkeypatch, identity_srn):
  detector = detectors.make_detector("mtcnn")
  _write_tree(tmp_path / "wider", detector)
  monkeypatch.setitem(evaluation.METHODS._entries, "grey_out",
                      lambda spec: lambda image: np.full_like(image, 0.5))
  config = evaluate_config.get_config("wider_face")
  config.wider_face.path = str(tmp_path / "wider")
  config.methods = ml_collections.ConfigDict(dict(
      same=evaluate_config.method("identity", label="Unchanged"),
      grey=evaluate_config.method("grey_out", label="Grey"),
      faces=evaluate_config.method("srn", workdir=str(identity_srn), regions="faces"),
      whole=evaluate_config.method("srn", workdir=str(identity_srn), regions="whole")))
  report = wider_face.evaluate(config, tmp_path / "out")

  original = report["recall"]["original"]
  assert original["all"] == {"faces": 3, "recall": pytest.approx(2 / 3)}
  assert original["blur"]["clear"]["recall"] == 1.0 and original["blur"]["normal"]["recall"] == 1.0
  assert original["blur"]["heavy"] == {"faces": 1, "recall": 0.0}
  for name in ("same", "faces", "whole"):
    assert report["recall"][name] == original, name
  assert report["recall"]["grey"]["all"]["recall"] == 0.0
  assert report["false_detections_per_photo"] == dict.fromkeys(
      ("original", "same", "grey", "faces", "whole"), 0.0)
  assert sum(band["faces"] for band in original["size"].values()) == 3
  assert json.loads((tmp_path / "out" / "wider_face.json").read_text())["num_photos"] == 2
  table = (tmp_path / "out" / "wider_face.md").read_text()
  assert "| Original photo | 0.67 (3) | 1.00 (1) | 1.00 (1) | 0.00 (1) |" in table


def test_a_model_method_without_workdir_or_with_unknown_regions_is_one_line(tmp_path,
                                                                          identity_srn):
  config = evaluate_config.get_config("wider_face")
  config.wider_face.path = str(tmp_path)
  with pytest.raises(ConfigError, match=r"methods\.ours\.workdir is empty"):
    wider_face.evaluate(config, tmp_path / "out")
  config.methods.ours.workdir = config.methods.srn_kernel.workdir = str(identity_srn)
  config.methods.ours.regions = "everything"
  with pytest.raises(ConfigError, match="regions='everything' is not one of whole, faces"):
    wider_face.evaluate(config, tmp_path / "out")
