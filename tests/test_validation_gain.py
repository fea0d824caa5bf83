"""tools/validation_gain.py: trained deblurrers scored on the validation faces."""

import pathlib

import numpy as np
import pytest
from helpers import load_tool

from faceblur.errors import CheckpointError, ConfigError
from faceblur.inference.restorer import Restorer


@pytest.fixture(scope="module")
def tool():
  return load_tool("validation_gain")


def test_arguments_name_a_run_and_optionally_its_step(tool):
  assert tool.parse("runs/study/srn@1000") == (pathlib.Path("runs/study/srn"), 1000)
  assert tool.parse("runs/study/srn") == (pathlib.Path("runs/study/srn"), None)
  with pytest.raises(ConfigError, match="step number"):
    tool.parse("runs/study/srn@last")


def test_an_identity_deblurrer_gains_nothing_and_rows_pair_with_the_first(tool, identity_srn):
  rng = np.random.default_rng(0)
  sharp = rng.uniform(0.2, 0.8, (3, 32, 32, 3)).astype(np.float32)
  blurred = np.clip(sharp + rng.normal(0, 0.05, sharp.shape), 0, 1).astype(np.float32)
  gains = tool.gains(Restorer(identity_srn, step=1), blurred, sharp)
  np.testing.assert_allclose(gains, 0.0, atol=1e-3)
  better = gains + np.array([1.0, 2.0, 3.0])
  lines = tool.table([("identity", 1, gains), ("better", 1, better)]).splitlines()
  assert lines[2].endswith("|  |")  # the first row has no difference from itself
  assert "+2.00 [+1.00, +3.00]" in lines[3]  # its gain, then its paired difference
  assert lines[3].count("+2.00 [+1.00, +3.00]") == 2


def test_a_step_the_run_never_saved_is_named(identity_srn):
  with pytest.raises(CheckpointError):
    Restorer(identity_srn, step=7)


def test_restore_all_batches_and_clips(tool, identity_srn):
  images = np.random.default_rng(0).uniform(0, 1, (tool.BATCH + 3, 24, 24, 3)).astype(np.float32)
  restored = tool.restore_all(Restorer(identity_srn), images)
  assert restored.shape == images.shape
  np.testing.assert_allclose(restored, images, atol=1e-5)  # the identity SRN


def test_the_validation_faces_are_the_blurred_domains_people_not_the_test_people(tool):
  """The tools that check rules against ground truth score these faces, so they must be the
  stage-1 blurred domain's people, never the test people."""
  from configs import demo

  scored = tool.validation_spec()
  test = demo.get_config().evaluate.test_sets.camera_blurred
  assert scored.base.split == "blurred" and test.base.split == "test"
  assert scored.seed != test.seed and scored.max_shake == test.max_shake


def test_the_other_validation_tools_load_and_score_through_this_one():
  """stage1_validation_gain and restoration_realism import the validation faces and the gains
  from here, so every ground-truth check scores the same faces the same way."""
  here = pathlib.Path(load_tool("validation_gain").__file__).resolve()
  for name in ("stage1_validation_gain", "restoration_realism"):
    assert pathlib.Path(load_tool(name).validation_gain.__file__).resolve() == here
