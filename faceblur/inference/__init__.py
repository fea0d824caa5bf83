"""Restoring photos of any size with a trained stage.

  restorer   `Restorer`: a trained SRN or the CycleGAN's F, tiled; `Deblurrer`, the SRN one
  tiling     bounded-memory inference: overlapping fixed-shape tiles blended without seams
  deblur     the `deblur` job: one image or a folder, bad files skipped
"""

from faceblur.inference.deblur import deblur_job
from faceblur.inference.restorer import SIDE_MULTIPLE, Deblurrer, Restorer

__all__ = ["SIDE_MULTIPLE", "Deblurrer", "Restorer", "deblur_job"]
