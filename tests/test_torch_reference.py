"""`bench/torch_reference.py` builds the networks a config builds (bench/train_step.py compares
faceblur with it at the demo's and the study's shapes, so a width or a block count that one
side misses would time different networks). Skipped without torch, an optional extra."""

import math
import pathlib
import sys

import jax
import numpy as np
import pytest

from configs import cyclegan as cyclegan_variants
from configs import demo, study
from faceblur.train import cyclegan, srn
from faceblur.train import state as state_lib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
torch_reference = pytest.importorskip("bench.torch_reference", exc_type=ImportError)


@pytest.mark.parametrize("configs", [demo, study], ids=["demo", "study"])
@pytest.mark.parametrize("stage", ["cyclegan", "paper_cyclegan", "srn"])
def test_parameter_counts_equal(configs, stage):
  config = configs.get_config()[stage.removeprefix("paper_")]
  if stage == "paper_cyclegan":  # `bench/train_step.py --stage1_variant=paper`
    cyclegan_variants.apply_variant(config, "paper")
  module = srn if stage == "srn" else cyclegan
  ours = sum(math.prod(leaf.shape) for network in module.make_networks(config).values()
             for leaf in jax.tree.leaves(network.abstract_params))
  reference = torch_reference.step_from_config(stage.removeprefix("paper_"), config)
  assert ours == torch_reference.parameter_count(reference)


def test_the_blur_generator_blurs_as_faceblurs_does():
  """The PyTorch `kernel_blur` G, given faceblur's G's weights, makes the same kernels and the
  same noiseless blur: the benchmark times the same work."""
  torch = pytest.importorskip("torch")
  config = demo.get_config()["cyclegan"]
  network = cyclegan.make_networks(config)["g"]
  params = state_lib.init_params(cyclegan.module_factories(config)["g"], jax.random.key(3))
  reference = torch_reference.step_from_config("cyclegan", config).sharp_to_blurred
  with torch.no_grad():
    for name in ("hidden", "kernel_head", "noise_head"):
      layer = getattr(reference, name)
      layer.weight.copy_(torch.from_numpy(np.asarray(params[name]["kernel"][...]).T.copy()))
      layer.bias.copy_(torch.from_numpy(np.asarray(params[name]["bias"][...]).copy()))
  rng = np.random.default_rng(0)
  codes = rng.normal(size=(3, cyclegan.code_dim(config))).astype(np.float32)
  codes[:, 0] *= 40.0  # far from z = 0, so that the kernels are not the symmetric start
  images = rng.random((3, 32, 40, 3), dtype=np.float32)
  ours = np.asarray(network.apply(params, jax.numpy.asarray(images), jax.numpy.asarray(codes)))
  theirs = reference(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(codes),
                     noisy=False).detach().permute(0, 2, 3, 1).numpy()
  assert np.abs(ours - images).mean() > 1e-3  # it blurred
  np.testing.assert_allclose(theirs, ours, atol=2e-5)


def test_the_blur_step_trains_g_f_and_the_critics():
  """One `KernelBlurStep` (noise and JPEG included) moves every network and the EMA, with
  finite losses: the benchmark times a working step."""
  torch = pytest.importorskip("torch")
  torch.manual_seed(0)
  step = torch_reference.step_from_config("cyclegan", demo.get_config()["cyclegan"])
  before = {name: [p.detach().clone() for p in network.parameters()]
            for name, network in step.networks().items()}
  ema_before = [p.clone() for p in step.ema]
  sharp, blurred = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
  step(sharp, blurred)
  assert all(np.isfinite(value) for value in step.losses.values())
  for name, network in step.networks().items():
    assert any(not torch.equal(old, new) for old, new in zip(
        before[name], network.parameters(), strict=True)), name
  assert any(not torch.equal(old, new) for old, new in zip(ema_before, step.ema, strict=True))
