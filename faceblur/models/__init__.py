"""The networks of the method, one module each (Flax NNX).

Stage 1's sharp -> blurred generator G is chosen by name (`cyclegan.model.generator`) from
`GENERATORS`; every G is called as G(sharp, codes=None, noise_keys=None) and has `code_dim`
(the size of the random code z it takes, 0 for none).
"""

from collections.abc import Callable

import jax.numpy as jnp
from flax import nnx

from faceblur.models.blur_generator import KernelBlurGenerator
from faceblur.models.cyclegan_generator import ResnetGenerator
from faceblur.models.patchgan import PatchDiscriminator
from faceblur.models.srn import SRNDeblurNet
from faceblur.registry import Registry

__all__ = ["GENERATORS", "KernelBlurGenerator", "ResnetGenerator", "PatchDiscriminator",
           "SRNDeblurNet"]

# name -> (model config, compute dtype, rngs) -> G.
GENERATORS: Registry[Callable[..., nnx.Module]] = Registry(
    "cyclegan model.generator={name!r} is not one of {choices}")


@GENERATORS.register("resnet")
def _resnet(model, dtype=jnp.float32, *, rngs: nnx.Rngs) -> ResnetGenerator:
  """The paper's G (Johnson et al.'s ResNet), with the anti-steganography options."""
  return ResnetGenerator(num_blocks=model.num_blocks, features=model.features,
                         residual=model.get("residual", False),
                         upsample=model.get("upsample", "transposed"),
                         code_dim=model.get("code_dim", 0), dtype=dtype, rngs=rngs)


@GENERATORS.register("kernel_blur")
def _kernel_blur(model, dtype=jnp.float32, *, rngs: nnx.Rngs) -> KernelBlurGenerator:
  """A G that can only blur: a kernel and a noise level predicted from z (float32 always)."""
  del dtype
  return KernelBlurGenerator(kernel_size=model.get("kernel_size", 21),
                             code_dim=model.get("code_dim", 8) or 8,
                             jpeg_quality=model.get("jpeg_quality") or None,
                             tone_curve=model.get("tone_curve", False), rngs=rngs)
