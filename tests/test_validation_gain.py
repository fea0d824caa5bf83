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
