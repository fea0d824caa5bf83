"""The evaluate job end to end on a tiny paired folder whose answers are known.

Faces from the demo's held-out group and random-noise images (no face), blurred with a
Gaussian: the identity method's PSNR must be `psnr(blurred, sharp)`, the detector must find
the faces and not the noise, an unreadable file is skipped, counted and makes the job fail
once the report is written, and an interrupted evaluation resumes from what it restored.
"""

import csv
import json
import os
import signal

import ml_collections
import numpy as np
import pytest
from helpers import assert_one_line_error, run_main, tiny_evaluate_config
from PIL import Image, ImageFilter

from configs import common
from configs import evaluate as evaluate_config
from faceblur import metrics
from faceblur.data import demo
from faceblur.errors import ConfigError, FaceblurError, Interrupted
from faceblur.evaluate import evaluation, intervals

NUM_FACES, NUM_NOISE = 3, 2


def _write_test_set(root):
  """root/{sharp,blurred}/: demo faces 0..2 and noise 3..4 (96 px); returns the arrays."""
  faces = demo.DemoFaces(size=96, count=NUM_FACES, seed=0, group="test")
  rng = np.random.default_rng(0)
  sharp = [faces[i]["image"] for i in range(NUM_FACES)]
  sharp += [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(NUM_NOISE)]
  blurred = [np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.5)))
             for image in sharp]
  for side, images in (("sharp", sharp), ("blurred", blurred)):
    (root / side).mkdir(parents=True)
    for index, image in enumerate(images):
      Image.fromarray(image).save(root / side / f"{index}.png")
  return sharp, blurred


_config = tiny_evaluate_config


def test_known_answers_and_an_unreadable_file_skipped_counted_and_failing(tmp_path):
  sharp, blurred = _write_test_set(tmp_path / "set")
  (tmp_path / "set" / "blurred" / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
  Image.fromarray(sharp[0]).save(tmp_path / "set" / "sharp" / "5.png")

  with pytest.raises(FaceblurError, match=r"^1 test image\(s\) could not be read") as error:
    evaluation.evaluate(_config(tmp_path / "set", tmp_path / "out"), tmp_path)
  assert "\n" not in str(error.value)

  report = json.loads((tmp_path / "out" / "report.json").read_text())
  entry = report["test_sets"]["tiny"]
  assert entry["num_images"] == NUM_FACES + NUM_NOISE and entry["num_skipped"] == 1
  assert len(report["skipped"]) == 1 and "5.png" in report["skipped"][0]
  assert "5.png" in (tmp_path / "out" / "report.md").read_text()
  expected = np.mean([metrics.psnr(b[None] / 255.0, s[None] / 255.0)[0]
                      for b, s in zip(blurred, sharp, strict=True)])
  assert entry["quality"]["blurred"]["psnr"] == pytest.approx(float(expected), abs=1e-4)
  faces_share = NUM_FACES / (NUM_FACES + NUM_NOISE)
  assert entry["detection"]["ground_truth"] == pytest.approx(faces_share)
  assert entry["detection"]["blurred"] == pytest.approx(faces_share)
  assert not (tmp_path / "out" / "resume").exists()


def test_interrupted_evaluation_resumes_without_restoring_an_image_twice(tmp_path, monkeypatch):
  _write_test_set(tmp_path / "set")
  config = _config(tmp_path / "set", tmp_path / "out")
  straight = evaluation.evaluate(_config(tmp_path / "set", tmp_path / "straight"), tmp_path)

  calls, signalled = [], []
  identity = evaluation.METHODS.get("identity")

  def counting(spec):
    restore = identity(spec)

    def restore_and_maybe_stop(image):
      calls.append(image)
      if len(calls) == 2 and not signalled:  # a real SIGTERM, as clusters send, mid-method
        signalled.append(True)
        os.kill(os.getpid(), signal.SIGTERM)
      return restore(image)
    return restore_and_maybe_stop

  monkeypatch.setitem(evaluation.METHODS._entries, "identity", counting)
  with pytest.raises(Interrupted, match="run the same command to resume") as error:
    evaluation.evaluate(config, tmp_path)
  assert error.value.exit_code == 128 + signal.SIGTERM
  assert "(2 of 5 images restored)" in str(error.value)
  assert not (tmp_path / "out" / "report.json").exists()
  assert (tmp_path / "out" / "resume").is_dir()

  calls.clear()
  resumed = evaluation.evaluate(config, tmp_path)
  # 3 images of the first method were left, then all 5 of the second.
  assert len(calls) == 3 + 5
  for key in ("test_sets", "skipped", "methods"):
    assert resumed[key] == straight[key]
  assert not (tmp_path / "out" / "resume").exists()


def test_the_job_warns_once_per_unreadable_file_and_exits_non_zero(tmp_path):
  _write_test_set(tmp_path / "set")
  (tmp_path / "set" / "blurred" / "0.png").write_text("not an image")
  result = run_main("--config=configs/evaluate.py", f"--workdir={tmp_path / 'out'}",
                    f"--config.test_sets.synthesized.path={tmp_path / 'set'}",
                    "--config.test_sets.synthesized.split=")
  assert_one_line_error(result, "1 test image(s) could not be read")
  warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
  assert len(warnings) == 1 and "0.png" in warnings[0], result.stderr[-2000:]
  assert json.loads((tmp_path / "out" / "report.json").read_text())["skipped"]


def _towards_truth(truth_of: dict, share: float):
  """A stub method that moves each blurred test image `share` of the way to its ground truth:
  a known PSNR gain on every face without a network."""
  def restore(image):
    truth = truth_of[np.round(image * 255).astype(np.uint8).tobytes()]
    return (1 - share) * image + share * truth
  return lambda spec: restore


def _csv_values(rows: list[dict], column: str) -> np.ndarray:
  """A per-image CSV column as floats: True/False as 1/0, an empty cell (not scored) as NaN."""
  cells = {"True": 1.0, "False": 0.0, "": np.nan}
  return np.asarray([cells[row[column]] if row[column] in cells else float(row[column])
                     for row in rows])


def test_paired_differences_are_the_bootstrap_of_the_per_image_columns(tmp_path, monkeypatch):
  """`ours` and `oracle` move each face a quarter and half of the way to its ground truth; the
  blurred input is not a configured method, yet a column. Every difference in report.json is
  `paired_difference` of the per-image CSV's columns; the oracle share is their ratio."""
  sharp, blurred = _write_test_set(tmp_path / "set")
  truth_of = {b.tobytes(): s.astype(np.float32) / 255 for b, s in zip(blurred, sharp, strict=True)}
  monkeypatch.setitem(evaluation.METHODS._entries, "quarter", _towards_truth(truth_of, 0.25))
  monkeypatch.setitem(evaluation.METHODS._entries, "half", _towards_truth(truth_of, 0.5))
  config = _config(tmp_path / "set", tmp_path / "out")
  config.methods = ml_collections.ConfigDict(dict(
      ours=evaluate_config.method("quarter"), oracle=evaluate_config.method("half")))
  config.comparisons = ("ours-blurred", "ours-oracle", "oracle-blurred")
  evaluation.evaluate(config, tmp_path)

  report = json.loads((tmp_path / "out" / "report.json").read_text())
  entry = report["test_sets"]["tiny"]
  with open(tmp_path / "out" / "per_image_tiny.csv") as handle:
    rows = list(csv.DictReader(handle))
  quality = [(metrics.psnr(b[None] / 255.0, s[None] / 255.0)[0],
              metrics.ssim(b[None] / 255.0, s[None] / 255.0)[0])
             for b, s in zip(blurred, sharp, strict=True)]
  per_face = {f"blurred_{metric}": np.asarray([q[index] for q in quality], np.float64)
              for index, metric in enumerate(("psnr", "ssim"))}

  def values(column: str, suffix: str) -> np.ndarray:
    key = f"{column}_{suffix}"
    return per_face[key] if key in per_face else _csv_values(rows, key)

  suffixes = {"psnr": "psnr", "ssim": "ssim", "identity_distance": "identity_distance",
              "detection": "detected", "detection_iou": "detected_iou",
              "second_detector_detection": "detected_dlib_hog",
              "second_detector_detection_iou": "detected_iou_dlib_hog"}
  assert list(entry["differences"]) == ["ours-blurred", "ours-oracle", "oracle-blurred"]
  for comparison, compared in entry["differences"].items():
    first, second = comparison.split("-")
    assert list(compared) == list(suffixes)
    for metric, suffix in suffixes.items():
      expected = intervals.paired_difference(values(first, suffix), values(second, suffix))
      got = compared[metric]
      assert got["count"] == expected.count, (comparison, metric)
      assert [got["mean"], got["low"], got["high"]] == pytest.approx(
          [expected.mean, expected.low, expected.high], abs=2e-4), (comparison, metric)
  # Moving towards the truth raises PSNR on every face: a claim; the noise images have no face
  # box, so identity distances cover only the faces.
  assert entry["differences"]["ours-blurred"]["psnr"]["low"] > 0
  assert entry["differences"]["ours-blurred"]["identity_distance"]["count"] == NUM_FACES
  share = intervals.paired_ratio(values("ours", "psnr") - values("blurred", "psnr"),
                                 values("oracle", "psnr") - values("blurred", "psnr"))
  assert [entry["oracle_share"][k] for k in ("mean", "low", "high")] == pytest.approx(
      [share.mean, share.low, share.high], abs=1e-4)
  assert entry["oracle_share"]["count"] == NUM_FACES + NUM_NOISE
  # A quarter of the way leaves 3/4 of the error (+20 log10(4/3) dB), half way 1/2 (+20 log10 2).
  assert entry["oracle_share"]["mean"] == pytest.approx(np.log(4 / 3) / np.log(2), abs=1e-4)
  assert entry["oracle_share"]["defined"]

  markdown = (tmp_path / "out" / "report.md").read_text()
  section = markdown.split("## Paired differences (mean [95 % bootstrap CI over the faces])")[1]
  psnr = entry["differences"]["ours-blurred"]["psnr"]
  assert f"| tiny | ours − blurred | {psnr['mean']:+.2f} [{psnr['low']:+.2f}, " \
         f"{psnr['high']:+.2f}] |" in section
  assert "a claim only when its interval excludes 0" in section
  assert f"Oracle share on tiny: ours recovers {share.mean:.2f} [" in section


def test_a_comparison_of_an_unconfigured_method_is_one_config_error(tmp_path):
  config = _config(tmp_path / "set", tmp_path / "out")
  config.comparisons = ("again-blurred", "ours-blurred")
  with pytest.raises(ConfigError, match=r"^evaluate.comparisons names ours, not among the "
                                        r"methods \(blurred, again\)$"):
    evaluation.evaluate(config, tmp_path)
  config.comparisons = ("again_blurred",)
  with pytest.raises(ConfigError, match="evaluate.comparisons has 'again_blurred'; write each"):
    evaluation.evaluate(config, tmp_path)
  assert not (tmp_path / "out").exists()  # refused before anything is loaded or written


def test_blurred_columns_are_scored_on_the_blurred_images(tmp_path):
  """Guards two wirings that equal-looking inputs would hide: Table 2's blurred column is
  detected on the blurred images (not the ground truth), and the blur-realism score compares
  each set's *blurred* images with the real blurred photos (not its sharp ones)."""
  faces = demo.DemoFaces(size=96, count=4, seed=0, group="test")
  sharp = [faces[i]["image"] for i in range(4)]
  # Blur that hides the faces from MTCNN.
  blurred = [np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(8)))
             for image in sharp]
  for side, images in (("sharp", sharp), ("blurred", blurred)):
    (tmp_path / "set" / side).mkdir(parents=True)
    for index, image in enumerate(images):
      Image.fromarray(image).save(tmp_path / "set" / side / f"{index}.png")
  config = _config(tmp_path / "set", tmp_path / "out")
  del config.methods["blurred"]  # the input's own column, not an identity method's
  # The "real" blurred photos are the set's own blurred images: its realism must be that of
  # two identical sets (an MMD^2 at or below 0), where the sharp images would be far off.
  config.real_blurred = common.source("folder", path=str(tmp_path / "set" / "blurred"))
  report = evaluation.evaluate(config, tmp_path)
  entry = report["test_sets"]["tiny"]
  assert entry["detection"]["ground_truth"] == 1.0
  assert entry["detection"]["blurred"] == entry["detection"]["again"] < 0.5
  with open(tmp_path / "out" / "per_image_tiny.csv") as handle:
    rows = list(csv.DictReader(handle))
  assert [row["blurred_detected"] for row in rows] == [row["again_detected"] for row in rows]
  assert report["blur_realism"]["tiny"]["mmd2"] <= 0.0
