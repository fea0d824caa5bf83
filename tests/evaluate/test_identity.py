"""Table 3's identity score on real faces (Grace Hopper from matplotlib, the astronaut from
scikit-image): the distance to the ground truth grows with blur, two people are farther apart
than one person in two photos, it still holds at the demo's 64 px, and the evaluation writes
the table, the JSON entry and the CSV cells, alongside Table 2's IoU rows."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import matplotlib.cbook
import ml_collections
import numpy as np
import pytest
import scipy.ndimage
import skimage.data
from PIL import Image

from configs import common
from configs import evaluate as evaluate_config
from faceblur import errors
from faceblur.data import augment, demo
from faceblur.evaluate import evaluation, identity

SIGMAS = (1, 2, 4, 8)


@pytest.fixture(scope="module")
def descriptor():
  return identity.FaceDescriptor()


@pytest.fixture(scope="module")
def portraits():
  with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
    grace = np.asarray(Image.open(handle).convert("RGB"), np.float32) / 255
  return {"grace_hopper": grace, "astronaut": skimage.data.astronaut().astype(np.float32) / 255}


def _blur(image, sigma):
  return scipy.ndimage.gaussian_filter(image, (sigma, sigma, 0))


@pytest.mark.parametrize("name", ["grace_hopper", "astronaut"])
def test_the_distance_to_the_ground_truth_grows_with_blur(descriptor, portraits, name):
  sharp = portraits[name]
  box = descriptor.face_box(sharp)
  assert box is not None
  truth = descriptor(sharp, box)
  assert truth.shape == (128,)
  distances = [identity.distance(descriptor(_blur(sharp, sigma), box), truth)
               for sigma in SIGMAS]
  assert np.all(np.diff(distances) > 0), distances
  assert distances[0] < identity.SAME_PERSON_DISTANCE, distances  # a slight blur: same person


def test_two_people_are_farther_apart_than_one_person_in_two_photos(descriptor, portraits):
  described = {}
  for name, image in portraits.items():
    flipped = image[:, ::-1]  # another photo of the same person: mirrored, so realigned
    described[name] = [descriptor(image, descriptor.face_box(image)),
                       descriptor(flipped, descriptor.face_box(flipped))]
  same = [identity.distance(*pair) for pair in described.values()]
  different = [identity.distance(a, b) for a in described["grace_hopper"]
               for b in described["astronaut"]]
  assert max(same) < identity.SAME_PERSON_DISTANCE < min(different), (same, different)


def test_a_64_px_face_is_still_the_same_person_and_blur_still_moves_it(descriptor, portraits):
  """The demo's faces are 64 px: the descriptor of the portrait shrunk to a 64 px face stays
  close to the full-size one's, and its distance grows with blur as at full size."""
  sharp = portraits["grace_hopper"]
  box = descriptor.face_box(sharp)
  scale = 64 / (box[2] - box[0])
  small = augment.resize(sharp, (round(sharp.shape[0] * scale), round(sharp.shape[1] * scale)))
  small_box = tuple(v * scale for v in box)
  small_truth = descriptor(small, small_box)
  assert identity.distance(small_truth, descriptor(sharp, box)) < 0.3
  distances = [identity.distance(descriptor(_blur(small, sigma), small_box), small_truth)
               for sigma in (0.5, 1, 2, 3)]
  assert np.all(np.diff(distances) > 0), distances


def test_score_set_uses_the_ground_truths_box_and_the_fallback_where_hog_finds_none(descriptor,
                                                                                  portraits):
  face = portraits["astronaut"][40:210, 140:300]
  noise = np.random.default_rng(0).random(face.shape, dtype=np.float32)
  sharp = [face, noise, noise]
  columns = {"blurred": [_blur(face, 2), noise, noise], "worse": [_blur(face, 6), noise, noise]}
  checked = []
  scored = identity.score_set(descriptor, sharp, columns, padding=0.25,
                              fallback_boxes=[None, (0, 0, 60, 60), None],
                              check=checked.append)
  assert checked == ["blurred", "worse"]
  blurred, worse = scored.distances["blurred"], scored.distances["worse"]
  assert blurred[0] < worse[0]
  assert blurred[1] == pytest.approx(0.0, abs=1e-6)  # fallback box on the very same noise
  assert blurred[2] is None and worse[2] is None     # no box at all: not scored
  summary = scored.summary()
  assert (summary["num_images"], summary["num_scored"]) == (3, 2)
  assert summary["columns"]["blurred"]["same_person_rate"] == 1.0
  assert summary["columns"]["worse"]["distance"] == pytest.approx((worse[0] + worse[1]) / 2)
  assert scored.rows()[2] == {"blurred_identity_distance": "", "worse_identity_distance": ""}
  first_only = identity.score_set(descriptor, sharp, columns, padding=0.25, max_images=1)
  assert first_only.distances["blurred"] == pytest.approx([blurred[0]])


def test_worker_processes_score_as_score_set_does(descriptor, portraits):
  """`DescriptorProcesses` (Table 3's faces shared among worker processes) returns
  `score_set`'s distances in the faces' order, `max_images` and fallback boxes included,
  raises a worker's error in the caller, stops waiting when `check` raises, and `close` ends
  the workers even mid-task."""
  face = portraits["astronaut"][40:210, 140:300]
  noise = np.random.default_rng(0).random(face.shape, dtype=np.float32)
  sharp = [face, noise, _blur(face, 1), noise]
  columns = {"blurred": [_blur(face, 2), noise, _blur(face, 3), noise],
             "worse": [_blur(face, 6), noise, _blur(face, 8), noise]}
  options = dict(padding=0.25, fallback_boxes=[None, (0, 0, 60, 60), None, None], max_images=3)
  expected = identity.score_set(descriptor, sharp, columns, **options)
  assert len(expected.distances["blurred"]) == 3 and expected.distances["blurred"][1] == 0.0
  with identity.DescriptorProcesses(descriptor, 2) as processes:
    assert processes.score_set(sharp, columns, **options).distances == expected.distances
    with pytest.raises(ValueError):  # the first worker's share is whole, the second's empty
      processes.score_set(sharp, {"blurred": [face, face]})  # two images for four faces
    assert processes.score_set(sharp, columns, **options).distances == expected.distances
    # The first worker fails and the second answers: that answer must not be taken for the
    # second worker's share of the next call.
    with pytest.raises(ValueError):
      processes.score_set(sharp, {"blurred": ["not an image", *columns["blurred"][1:]]},
                          padding=0.25)
    assert processes.score_set(sharp, columns, **options).distances == expected.distances
    checked = []

    def interrupted(where):
      checked.append(where)
      raise errors.Interrupted("stop", exit_code=130)

    with pytest.raises(errors.Interrupted):
      processes.score_set(sharp * 10, {name: images * 10 for name, images in columns.items()},
                          check=interrupted)
    assert checked == ["descriptors"]
    workers = [worker._process for worker in processes.processes]
  assert len(workers) == 2 and all(worker.poll() is not None for worker in workers)


def test_worker_processes_run_from_a_script_without_a_main_guard(tmp_path):
  """The workers import faceblur, never the caller's script: a script that scores at import
  time (no `if __name__ == "__main__"`) is not run again in them."""
  script = tmp_path / "score.py"
  script.write_text(
      "import numpy as np, skimage.data\n"
      "from faceblur.evaluate import identity\n"
      "face = skimage.data.astronaut()[40:210, 140:300].astype(np.float32) / 255\n"
      "with identity.DescriptorProcesses(identity.FaceDescriptor(), 2) as processes:\n"
      "  scored = processes.score_set([face], {'same': [face]}, padding=0.25)\n"
      "  print('distance', scored.distances['same'][0])\n")
  run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
  assert run.returncode == 0, run.stderr
  assert run.stdout.split() == ["distance", "0.0"]


def _shrink(image):
  """The face at half size in a corner of a grey frame: still a face, in another place."""
  out = np.full_like(image, 0.5)
  half = image.shape[0] // 2
  out[:half, :half] = augment.resize(image, half)
  return out


def test_the_evaluation_writes_table_3_and_the_iou_rows(tmp_path, monkeypatch):
  """Three demo faces and a noise image, blurred: the `shrunk` method moves each face to a
  corner at half size, so both detectors still find a face (any-face rate 3/4) but never the
  ground truth's (IoU rate 0), and its identity distance is larger than the blurred input's.
  A second set of the same photos, left out of `identity_test_sets`, gets no Table 3 row."""
  faces = demo.DemoFaces(size=96, count=3, seed=0, group="test")
  sharp = [faces[i]["image"] for i in range(3)]
  sharp.append(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))
  for side in ("sharp", "blurred"):
    (tmp_path / "set" / side).mkdir(parents=True)
  for index, image in enumerate(sharp):
    Image.fromarray(image).save(tmp_path / "set" / "sharp" / f"{index}.png")
    blurred = (_blur(image.astype(np.float32) / 255, 1.0) * 255).round().astype(np.uint8)
    Image.fromarray(blurred).save(tmp_path / "set" / "blurred" / f"{index}.png")
  monkeypatch.setitem(evaluation.METHODS._entries, "shrunk", lambda spec: _shrink)
  config = evaluate_config.get_config()
  config.test_sets = ml_collections.ConfigDict(dict(
      tiny=common.source("paired_folder", path=str(tmp_path / "set"), split=""),
      unscored=common.source("paired_folder", path=str(tmp_path / "set"), split="")))
  config.identity_test_sets = ("tiny",)
  config.methods = ml_collections.ConfigDict(dict(
      blurred=evaluate_config.method("identity", label="Blurred input"),
      shrunk=evaluate_config.method("shrunk", label="Shrunk")))
  config.output = str(tmp_path / "out")
  evaluation.evaluate(config, tmp_path)

  report = json.loads((tmp_path / "out" / "report.json").read_text())
  entry = report["test_sets"]["tiny"]
  second = entry["second_detector"]
  for rates in (entry["detection"], second["detection"]):
    assert rates == pytest.approx({"ground_truth": 0.75, "blurred": 0.75, "shrunk": 0.75})
  for rates in (entry["detection_iou"], second["detection_iou"]):
    assert rates == pytest.approx({"ground_truth": 0.75, "blurred": 0.75, "shrunk": 0.0})
  assert report["second_detector"]["name"] == "dlib_hog"
  assert set(report["test_sets"]) == {"tiny", "unscored"}
  assert list(report["identity"]["test_sets"]) == ["tiny"]
  scored = report["identity"]["test_sets"]["tiny"]
  assert (scored["num_images"], scored["num_scored"]) == (4, 3)
  blurred, shrunk = scored["columns"]["blurred"], scored["columns"]["shrunk"]
  assert blurred["distance"] < shrunk["distance"] and blurred["same_person_rate"] == 1.0

  markdown = (tmp_path / "out" / "report.md").read_text()
  assert "## Table 3: identity preservation" in markdown
  assert f"| tiny (3 of 4) | {blurred['distance']:.3f} / 1.00 |" in markdown
  assert "| unscored (" not in markdown.split("## Table 3")[1].split("##")[0]
  iou_row = "| tiny (4) | dlib_hog | ground truth's face (IoU ≥ 0.5) | 0.75 | 0.75 | 0.00 |"
  assert iou_row in markdown
  with open(tmp_path / "out" / "per_image_tiny.csv") as handle:
    rows = list(csv.DictReader(handle))
  assert [row["shrunk_detected"] for row in rows] == ["True", "True", "True", "False"]
  assert [row["shrunk_detected_iou"] for row in rows] == ["False"] * 4
  assert rows[3]["shrunk_identity_distance"] == "" and float(rows[0]["shrunk_identity_distance"])


def test_table_3_from_worker_processes_equals_the_in_process_one(tmp_path, monkeypatch):
  """The evaluation's Table 3, CSV cells and identity differences are the same whether the
  descriptors run in worker processes (forced here for a small set) or in-process."""
  faces = demo.DemoFaces(size=64, count=6, seed=0, group="test")
  for side in ("sharp", "blurred"):
    (tmp_path / "set" / side).mkdir(parents=True)
  for index in range(6):
    image = faces[index]["image"]
    Image.fromarray(image).save(tmp_path / "set" / "sharp" / f"{index}.png")
    blurred = (_blur(image.astype(np.float32) / 255, 1.5) * 255).round().astype(np.uint8)
    Image.fromarray(blurred).save(tmp_path / "set" / "blurred" / f"{index}.png")
  monkeypatch.setitem(evaluation.METHODS._entries, "shrunk", lambda spec: _shrink)
  monkeypatch.setattr(evaluation, "PROCESSES_MIN_DESCRIPTORS", 0)
  started = []

  class Recorded(identity.DescriptorProcesses):
    def __init__(self, descriptor, processes):
      started.append(processes)
      super().__init__(descriptor, processes)

  monkeypatch.setattr(identity, "DescriptorProcesses", Recorded)
  config = evaluate_config.get_config()
  config.test_sets = ml_collections.ConfigDict(dict(
      faces=common.source("paired_folder", path=str(tmp_path / "set"), split="")))
  config.second_detector = ""
  config.methods = ml_collections.ConfigDict(dict(
      blurred=evaluate_config.method("identity", label="Blurred input"),
      shrunk=evaluate_config.method("shrunk", label="Shrunk")))
  config.comparisons = ("shrunk-blurred",)
  reports = {}
  for processes in (0, 2):
    config.identity_processes = processes
    config.output = str(tmp_path / f"out_{processes}")
    evaluation.evaluate(config, tmp_path)
    out = pathlib.Path(config.output)
    with open(out / "per_image_faces.csv") as handle:
      reports[processes] = (json.loads((out / "report.json").read_text()),
                            list(csv.DictReader(handle)))
  (plain, plain_rows), (shared, shared_rows) = reports[0], reports[2]
  assert started == [2]  # the second evaluation's Table 3 ran in two worker processes
  assert shared["identity"] == plain["identity"]
  assert shared["identity"]["test_sets"]["faces"]["num_scored"] >= 4
  assert shared_rows == plain_rows and "shrunk_identity_distance" in plain_rows[0]
  differences = [report["test_sets"]["faces"]["differences"]["shrunk-blurred"]
                 for report in (plain, shared)]
  assert differences[0]["identity_distance"] == differences[1]["identity_distance"]


def test_an_unknown_identity_test_set_is_one_config_error(tmp_path):
  """A typo in `identity_test_sets` would silently score nothing: it is refused, named."""
  config = evaluate_config.get_config()
  config.identity_test_sets = ("camera_blured",)
  with pytest.raises(errors.ConfigError, match="camera_blured"):
    evaluation.evaluate(config, tmp_path)
