"""Deblur one image or a folder with a trained SRN (any size; big images go in tiles).

python main.py --config=configs/deblur.py --config.checkpoint=runs/demo/srn \
  --config.input=photo.jpg --config.output=restored.png

A face model restores each face in place (`regions=faces`, `faceblur/inference/faces.py`):
detected, or given in a boxes file {"<path relative to the input folder, or the file name of
a single input>": [[x0, y0, x1, y1], ...]} (images it does not list are detected); each output
gets a sidecar `<output>.json` with the boxes, scores and what was done to each face.
"""

import ml_collections

from configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  common.check_argument("deblur.py", arg, ("",))
  config = common.run_settings(ml_collections.ConfigDict(), job="deblur")
  config.checkpoint = ""   # a stage-2 workdir (or its checkpoints/ folder)
  config.input = ""        # an image file or a folder (searched recursively)
  config.output = ""       # a file for one image, a folder for a folder
  # Images of more than tile_megapixels go through overlapping tiles, as large as that allows
  # (~0.5 GiB of activations per megapixel, reference SRN); each image size compiles once.
  config.tile_megapixels = 2.0
  config.tile_size = 0     # > 0: square tiles of this side instead (one compile for all sizes)
  config.tile_overlap = 32
  config.use_ema = False   # True: the EMA weights (a release's default otherwise)
  # Faces in place: 'auto' = 'faces' for a face model, 'whole' for one trained on GoPro.
  config.regions = "auto"  # faces | whole | auto
  config.boxes = ""        # a JSON boxes file (format above); empty: detect with MTCNN
  config.no_face = "whole"  # no face found: 'whole' restores the image, 'keep' copies it
  config.draw_boxes = False  # also write <output stem>.boxes<suffix> with the boxes drawn
  config.min_face_size = 40  # px in the input; smaller detections are skipped
  config.detect_max_side = 1600  # MTCNN runs on a copy at most this long
  config.face_margin = 0.25  # of the box side, on each side: the feathered paste's width
  config.face_size = 0       # px across a face at the network's scale; 0: from the checkpoint
  return config
