"""`bench/torch_reference.py` builds the networks a config builds (bench/train_step.py compares
faceblur with it at the demo's and the study's shapes, so a width or a block count that one
side misses would time different networks). Skipped without torch, an optional extra."""

import math
import pathlib
import sys

import jax
import pytest

from configs import demo, study
from faceblur.train import cyclegan, srn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
torch_reference = pytest.importorskip("bench.torch_reference", exc_type=ImportError)


@pytest.mark.parametrize("configs", [demo, study], ids=["demo", "study"])
@pytest.mark.parametrize("stage", ["cyclegan", "srn"])
def test_parameter_counts_equal(configs, stage):
  config = configs.get_config()[stage]
  if stage == "cyclegan":  # the reference builds the paper's G (bench/train_step.py times it)
    config.model.update(generator="resnet", code_dim=0, upsample="transposed")
  module = {"cyclegan": cyclegan, "srn": srn}[stage]
  ours = sum(math.prod(leaf.shape) for network in module.make_networks(config).values()
             for leaf in jax.tree.leaves(network.abstract_params))
  theirs = torch_reference.parameter_count(torch_reference.step_from_config(stage, config))
  assert ours == theirs
