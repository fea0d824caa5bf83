"""Restoring photos of any size with a trained stage.

  restorer   `Restorer`: a trained SRN or the CycleGAN's F, tiled; `Deblurrer`, the SRN one
  tiling     bounded-memory inference: overlapping fixed-shape tiles blended without seams
  faces      `FaceRestorer`: each face restored at the training scale and pasted back in place
  deblur     the `deblur` job: one image or a folder, bad files skipped
"""

from faceblur.inference.deblur import deblur_job
from faceblur.inference.faces import FaceRestorer, FacesResult
from faceblur.inference.restorer import SIDE_MULTIPLE, Deblurrer, Restorer

__all__ = ["SIDE_MULTIPLE", "Deblurrer", "FaceRestorer", "FacesResult", "Restorer",
           "deblur_job"]
