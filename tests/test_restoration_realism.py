"""tools/restoration_realism.py: a label-free score of trained deblurrers."""

import numpy as np
import pytest
from helpers import load_tool

from configs import demo


@pytest.fixture(scope="module")
def tool():
  return load_tool("restoration_realism")


def test_rank_agreement_is_one_when_the_lowest_score_gains_most(tool):
  assert tool.rank_agreement([0.1, 0.2, 0.3], [3.0, 2.0, 1.0]) == pytest.approx(1.0)
  assert tool.rank_agreement([0.1, 0.2, 0.3], [1.0, 2.0, 3.0]) == pytest.approx(-1.0)


def test_it_restores_the_stage1_validation_photos_and_compares_with_the_sharp_domain(tool):
  """The score reads only what a user has: the blurred domain's validation photos (never a
  test face) and the sharp domain's photos."""
  blurred, sharp = tool.reference_specs()
  stage1 = demo.get_config().cyclegan.data
  assert blurred == stage1.blurred_validation and sharp == stage1.sharp
  test = demo.get_config().evaluate.test_sets.camera_blurred
  assert blurred.split == "blurred" and sharp.split == "train" and test.base.split == "test"
  spec = demo.get_config("tiny").cyclegan.data.blurred_validation
  photos = tool.photos(spec, 3, spec.seed)
  assert photos.shape == (3, 64, 64, 3) and photos.dtype == np.float32  # the demo faces' size
  assert 0.0 <= photos.min() and photos.max() <= 1.0


