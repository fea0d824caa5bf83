"""tools/kernel_spread.py: how a stage-1 G's kernels and noise spread, beside the camera's."""

import numpy as np
from helpers import load_tool


def test_spread_of_a_point_and_of_a_split_kernel():
  tool = load_tool("kernel_spread")
  point = np.zeros((1, 9, 9))
  point[0, 4, 4] = 1.0
  split = np.zeros((1, 9, 9))
  split[0, 4, 1] = split[0, 4, 7] = 0.5  # two halves 3 px either side of the centre of mass
  np.testing.assert_allclose(tool.spread(point), [[1.0, 1.0, 0.0]])
  np.testing.assert_allclose(tool.spread(split * 4), [[0.0, 0.5, 3.0]])  # normalised first


def test_a_row_gives_percentiles_of_the_kernels_and_of_the_noise_in_percent():
  tool = load_tool("kernel_spread")
  kernels = np.zeros((11, 3, 3))
  kernels[:, 1, 1] = 1.0
  cells = tool.row("g", kernels, np.linspace(0.0, 0.01, 11)).strip("| ").split(" | ")
  assert cells[0] == "g" and cells[1] == "1.00 / 1.00 / 1.00" and cells[3] == "0.00 / 0.00 / 0.00"
  assert cells[4] == "0.10 / 0.50 / 0.90"
