"""The evaluation's batched paths give what one image at a time gives: restoration through a
trained network (same-size images together, large ones still tiled), MTCNN detection, PSNR and
SSIM; and a batched method still resumes after an interruption between two batches."""

import jax
import ml_collections
import numpy as np
import pytest
import scipy.ndimage

from configs import common
from configs import evaluate as evaluate_config
from faceblur import detectors, metrics
from faceblur.data import demo
from faceblur.errors import Interrupted
from faceblur.evaluate import evaluation, protocols
from faceblur.inference import Restorer
from faceblur.train.loop import Interruption


def _perturbed(restorer: Restorer) -> Restorer:
  """The identity SRN with every parameter nudged: a network whose output is not its input."""
  rng = np.random.default_rng(0)
  restorer._params = jax.tree.map(
      lambda p: p + 0.01 * rng.standard_normal(np.shape(p)).astype(np.float32),
      restorer._params)
  return restorer


def _images(shapes_and_counts, seed: int = 0) -> list[np.ndarray]:
  rng = np.random.default_rng(seed)
  return [rng.random(shape, dtype=np.float32) for shape, count in shapes_and_counts
          for _ in range(count)]


def test_batched_restore_equals_one_by_one(identity_srn):
  """Two sizes that one tile spans (one not a multiple of 4, padded), and with fixed 32 px
  tiles a larger image that goes through tiles, as `restorer(image)` does."""
  restorer = _perturbed(Restorer(identity_srn, tile_size=32, tile_overlap=8))
  images = _images([((32, 32, 3), 5), ((22, 30, 3), 3), ((48, 40, 3), 1)])
  images.insert(2, images.pop())  # sizes interleaved: the results keep the input order
  batched = restorer.restore_images(images, batch_size=4)
  assert len(batched) == len(images)
  for image, restored in zip(images, batched, strict=True):
    single = restorer(image)
    assert restored.shape == single.shape == image.shape and restored.dtype == np.float32
    np.testing.assert_allclose(restored, single, atol=1e-5)
  assert max(np.abs(r - i).max() for r, i in zip(batched, images, strict=True)) > 0.01


def test_batched_mtcnn_detection_equals_per_image_detection():
  """Faces, blurred faces and noise of one size through `evaluation.detect_faces` (MTCNN's batch
  path) and one by one: the same faces found, the same boxes to float rounding."""
  faces = demo.DemoFaces(size=64, count=6, seed=0, group="test")
  sharp = [faces[i]["image"].astype(np.float32) / 255 for i in range(6)]
  blurred = [scipy.ndimage.gaussian_filter(image, (2.5, 2.5, 0)) for image in sharp]
  noise = _images([((64, 64, 3), 2)], seed=1)
  images = sharp + blurred + noise
  detector = detectors.make_detector("mtcnn")
  found, boxes = evaluation.detect_faces(detector, images, padding=0.25)
  assert 0 < sum(found) < len(images)
  for image, image_found, image_boxes in zip(images, found, boxes, strict=True):
    one, one_boxes = evaluation.detect_faces(detector, [image], padding=0.25)
    assert image_found == one[0] and len(image_boxes) == len(one_boxes[0])
    if image_boxes:
      np.testing.assert_allclose(image_boxes, one_boxes[0], atol=1e-3)


def test_quality_over_chunks_equals_per_image_metrics():
  restored = _images([((24, 24, 3), 5), ((16, 20, 3), 2)], seed=2)
  sharp = _images([((24, 24, 3), 5), ((16, 20, 3), 2)], seed=3)
  psnr, ssim, _ = protocols.make_scorer(y_channel=True).score(restored, sharp)
  for index, (image, reference) in enumerate(zip(restored, sharp, strict=True)):
    expected_psnr = metrics.psnr(image[None], reference[None], y_channel=True)[0]
    expected_ssim = metrics.ssim(image[None], reference[None], y_channel=True)[0]
    assert psnr[index] == pytest.approx(float(expected_psnr), abs=1e-5)
    assert ssim[index] == pytest.approx(float(expected_ssim), abs=1e-6)


def test_same_size_chunks_are_balanced_and_keep_each_size_in_order():
  images = _images([((8, 8, 3), 35), ((4, 8, 3), 2)])
  chunks = evaluation._same_size_chunks(images, list(range(37)), 16)
  assert [len(chunk) for chunk in chunks] == [11, 12, 12, 2]
  assert sum(chunks, []) == list(range(37))


class _Cache(evaluation._ResumeCache):
  """A resume cache in `folder` whose fingerprint does not depend on a config."""

  def __init__(self, folder):
    super().__init__(folder, "set", "method", {})


def test_a_batched_method_stops_between_batches_and_resumes(tmp_path):
  images = _images([((8, 8, 3), 20)])  # two batches of 10
  names = [f"image{i}" for i in range(20)]
  batches, interruption = [], Interruption()

  def restore_batch(group):
    batches.append(len(group))
    if len(batches) == 1:
      interruption.signum = 15  # a SIGTERM during the first batch
    return [image * 0.5 for image in group]

  method = evaluation.Method("half", "half", restore=lambda image: image * 0.5,
                             restore_batch=restore_batch)
  with pytest.raises(Interrupted, match=r"\(10 of 20 images restored\)"):
    evaluation._restore_all(method, images, names, _Cache(tmp_path), interruption, "set/half")
  restored = evaluation._restore_all(method, images, names, _Cache(tmp_path), Interruption(),
                                     "set/half")
  assert batches == [10, 10]
  for image, output in zip(images, restored, strict=True):
    np.testing.assert_array_equal(output, image * 0.5)


def test_the_resume_cache_keys_on_the_weights(identity_srn, tmp_path, monkeypatch):
  """Guards the resume fingerprint (issue 26, break 8): images restored by a method must not
  be reused once its checkpoint is retrained in the same folder, so the evaluation keys each
  method's resume file on its weights."""
  assert Restorer(identity_srn).fingerprint == Restorer(identity_srn).fingerprint
  assert _perturbed(Restorer(identity_srn)).fingerprint != Restorer(identity_srn).fingerprint

  keyed = []
  resume_cache = evaluation._ResumeCache

  def recording(folder, set_name, method, fingerprint):
    keyed.append((method, fingerprint))
    return resume_cache(folder, set_name, method, fingerprint)

  monkeypatch.setattr(evaluation, "_ResumeCache", recording)
  config = evaluate_config.get_config()
  config.test_sets = ml_collections.ConfigDict(dict(tiny=common.source(
      "kernel_blurred", base=dict(kind="demo_sharp", count=2, seed=0), max_blur_length=5.0)))
  config.methods = ml_collections.ConfigDict(dict(
      ours=evaluate_config.method("srn", label="Ours", workdir=str(identity_srn))))
  config.identity = False
  config.output = str(tmp_path / "out")
  evaluation.evaluate(config, tmp_path)
  assert ("ours", Restorer(identity_srn).fingerprint) in [
      (method, fingerprint["weights"]) for method, fingerprint in keyed]
