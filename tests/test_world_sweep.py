"""The world sweep's rule (tools/world_sweep.py `choose`): the largest oracle gain among the
camera strengths at which blur costs dlib HOG at least `min_drop` of its detection rate."""

import pytest
from helpers import load_tool


@pytest.fixture(scope="module")
def world_sweep():
  return load_tool("world_sweep")


def _row(shake, gain, hog_sharp, hog_blurred):
  return {"max_shake": shake, "blurred_psnr": 30.0 - 20 * shake, "gain_db": gain,
          "gain_low": gain - 0.1, "gain_high": gain + 0.1,
          "detection": {"mtcnn": {"sharp": 1.0, "blurred": 1.0},
                        "dlib_hog": {"sharp": hog_sharp, "blurred": hog_blurred}}}


def test_the_largest_gain_among_shakes_that_hurt_detection_enough(world_sweep):
  rows = [_row(0.05, 1.5, 0.92, 0.85),   # the largest gain, but HOG drops only 0.07
          _row(0.1, 1.17, 0.92, 0.75),   # drop 0.17: eligible, the largest eligible gain
          _row(0.15, 0.90, 0.92, 0.74),
          _row(0.4, 0.45, 0.92, 0.37)]
  assert world_sweep.choose(rows, min_drop=0.15)["max_shake"] == 0.1
  # A drop of exactly min_drop counts (0.92 - 0.77 in floating point is 0.1499...).
  assert world_sweep.choose([_row(0.2, 0.6, 0.92, 0.77)], min_drop=0.15)["max_shake"] == 0.2
  # A row whose oracle was not trained is never chosen; no eligible row chooses nothing.
  untrained = _row(0.3, 0.0, 0.92, 0.2)
  del untrained["gain_db"]
  assert world_sweep.choose([untrained, _row(0.05, 1.5, 0.92, 0.85)], min_drop=0.15) is None
  assert "| 0.1 | 28.00 | +1.17 [+1.07, +1.27] |" in world_sweep.table(rows)
