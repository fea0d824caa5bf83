"""tools/realism_noise.py: the realism score's own noise, from photos of one process."""

import numpy as np
import pytest
from helpers import load_tool


@pytest.fixture(scope="module")
def realism_noise():
  return load_tool("realism_noise")


def test_the_null_sets_are_other_photos_of_the_validation_process(realism_noise, capsys):
  """Other draws are other photos (not the validation photos again) of the same camera and
  people, so their MMD^2 to the validation photos is about 0, and the table says so; the
  floor row (the camera on other people) follows it."""
  from configs import demo

  spec = demo.get_config().cyclegan.data.blurred_validation
  first, other = realism_noise.photos(spec, 6, spec.seed), realism_noise.photos(spec, 6, 1000)
  assert first.shape == other.shape == (6, 64, 64, 3) and first.dtype == np.float32
  assert 0 <= first.min() and first.max() <= 1 and not np.allclose(first, other)
  realism_noise.report([24], draws=2)
  null, floor = capsys.readouterr().out.strip().splitlines()[-2:]
  assert null.startswith("| 24 | the same process") and floor.startswith("| 24 | the camera on")
  mean = float(null.split("|")[3].split("±")[0])
  precision, recall = (float(cell) for cell in null.split("|")[4:6])
  assert abs(mean) < 0.05 and 0 <= precision <= 1 and 0 <= recall <= 1
