"""The FLOP counter counts each convolution's multiply-adds from its own shapes."""

import jax
import jax.numpy as jnp
from flax import nnx

from faceblur.models import ResnetGenerator
from faceblur.models.flops import conv_flops
from faceblur.models.layers import Conv, ConvTranspose


class Tiny(nnx.Module):
  """One layer of each kind the counter must tell apart, one of them called twice."""

  def __init__(self, rngs: nnx.Rngs):
    self.first = Conv(3, 4, (3, 3), padding="SAME", rngs=rngs)
    self.mix = Conv(4, 4, (1, 1), rngs=rngs)
    self.grouped = Conv(4, 4, (3, 3), padding="SAME", feature_group_count=2, rngs=rngs)
    self.down = Conv(4, 6, (3, 3), strides=2, padding=((1, 1), (1, 1)), rngs=rngs)
    self.up = ConvTranspose(6, 5, 4, stride=2, padding=((1, 1), (1, 1)), rngs=rngs)

  def __call__(self, images):
    hidden = self.mix(self.mix(self.first(images)))
    return self.up(self.down(self.grouped(hidden)))


# By hand, batch 2 of 8x8 images: 2 FLOPs per multiply-add.
HAND_COUNT = (
    2 * (3 * 3 * 3 * 4) * (2 * 8 * 8)      # first: 3x3, 3 -> 4, 8x8 out
    + 2 * 2 * (1 * 1 * 4 * 4) * (2 * 8 * 8)  # mix, called twice
    + 2 * (3 * 3 * 2 * 4) * (2 * 8 * 8)    # grouped: 2 groups, each output sees 2 inputs
    + 2 * (3 * 3 * 4 * 6) * (2 * 4 * 4)    # down: stride 2, 4x4 out
    + 2 * (4 * 4 * 6 * 5) * (2 * 4 * 4)    # up: each of the 4x4 input pixels meets the kernel
)


def test_hand_counted_network():
  model = Tiny(nnx.Rngs(0))
  images = jnp.zeros((2, 8, 8, 3))
  assert model(images).shape == (2, 8, 8, 5)
  assert conv_flops(model, images) == HAND_COUNT == 98816


def test_abstract_module_and_shapes_and_batch():
  model = nnx.eval_shape(lambda: Tiny(nnx.Rngs(0)))
  spec = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
  assert conv_flops(model, spec) == HAND_COUNT
  # Linear in the batch, and the layers' own functions are back in place afterwards.
  assert conv_flops(model, jax.ShapeDtypeStruct((6, 8, 8, 3), jnp.float32)) == 3 * HAND_COUNT
  concrete = Tiny(nnx.Rngs(0))
  before = (concrete.first.conv_general_dilated, concrete.up.transposed_conv)
  conv_flops(concrete, spec)
  assert (concrete.first.conv_general_dilated, concrete.up.transposed_conv) == before


def test_resnet_generator_matches_its_architecture():
  """CycleGAN's generator, counted from its formula: 7x7 stem, two stride-2 convolutions,
  2 per block 3x3 at a quarter side, two transposed 3x3 convolutions, 7x7 head."""
  width, blocks, side, batch = 8, 2, 16, 3
  model = nnx.eval_shape(lambda: ResnetGenerator(num_blocks=blocks, features=width,
                                                 rngs=nnx.Rngs(0)))
  quarter = (side // 4) ** 2
  expected = 2 * batch * (
      49 * 3 * width * side**2                     # stem
      + 9 * width * 2 * width * (side // 2) ** 2   # down 1 (output at half side)
      + 9 * 2 * width * 4 * width * quarter        # down 2
      + 2 * blocks * 9 * (4 * width) ** 2 * quarter  # residual blocks
      + 9 * 4 * width * 2 * width * quarter        # up 1 (input at a quarter side)
      + 9 * 2 * width * width * (side // 2) ** 2   # up 2 (input at half side)
      + 49 * width * 3 * side**2)                  # head
  assert conv_flops(model, jax.ShapeDtypeStruct((batch, side, side, 3), jnp.float32)) == expected
