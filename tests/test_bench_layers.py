"""`bench/convolutions.py --shapes=demo|study` times the layers the configs' train steps run, as
often as they run them: its layer lists and call counts, weighted by each layer's FLOPs, give
the networks' own FLOP counts (`faceblur.models.flops`)."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from configs import demo, study
from faceblur.models.flops import conv_flops
from faceblur.train import cyclegan, srn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench import convolutions  # noqa: E402


def _layer_flops(layer: convolutions.Layer) -> int:
  if layer.transposed:  # over the input's pixels, as faceblur.models.flops counts them
    side = layer.size
  elif layer.padding == "SAME":
    side = -(-layer.size // layer.stride)
  else:
    side = (layer.size + 2 * layer.padding - layer.kernel) // layer.stride + 1
  return (2 * layer.batch * side * side * layer.kernel ** 2 * layer.in_features
          * layer.out_features)


def _network_flops(factory, batch: int, size: int) -> int:
  images = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
  return conv_flops(nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(0))), images)


@pytest.mark.parametrize("configs", [demo, study], ids=["demo", "study"])
def test_the_layers_and_their_counts_add_up_to_the_networks(configs):
  config = configs.get_config()
  layers = convolutions.configured_layers(configs.__name__.split(".")[-1], ["cyclegan", "srn"])

  def counted(network, keep=lambda layer: True):
    return sum(convolutions.calls_per_step(name, layer)["forward"] * _layer_flops(layer)
               for name, layer in layers if name == network and keep(layer))

  stage2 = config.srn
  assert counted("srn") == _network_flops(srn.module_factory(stage2), stage2.batch_size,
                                          stage2.data.crop_size)
  stage1 = config.cyclegan
  factories = cyclegan.module_factories(stage1)
  batch, size = stage1.batch_size, stage1.data.crop_size
  deblurrer = _network_flops(factories["f"], batch, size)
  critic = _network_flops(factories["d_blurred"], batch, size)
  # F twice (trained, and the watched cycle); the critics six times.
  assert counted("cyclegan", lambda layer: not layer.name.startswith("critic")) == 2 * deblurrer
  assert counted("cyclegan", lambda layer: layer.name.startswith("critic")) == 6 * critic
