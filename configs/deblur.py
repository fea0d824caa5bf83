"""Deblur one image or a folder with a trained SRN (any size; big images go in tiles).

python main.py --config=configs/deblur.py --config.checkpoint=runs/demo/srn \
  --config.input=photo.jpg --config.output=restored.jpg
"""

import ml_collections

from configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  del arg
  config = common.run_settings(ml_collections.ConfigDict(), job="deblur")
  config.checkpoint = ""   # a stage-2 workdir (or its checkpoints/ folder)
  config.input = ""        # an image file or a folder (searched recursively)
  config.output = ""       # a file for one image, a folder for a folder
  config.tile_size = 512   # images larger than this go through overlapping tiles
  config.tile_overlap = 32
  config.model = ml_collections.ConfigDict()  # filled from the checkpoint
  return config
