"""The networks of the method, one module each (Flax NNX)."""

from faceblur.models.cyclegan_generator import ResnetGenerator
from faceblur.models.patchgan import PatchDiscriminator
from faceblur.models.srn import SRNDeblurNet

__all__ = ["ResnetGenerator", "PatchDiscriminator", "SRNDeblurNet"]
