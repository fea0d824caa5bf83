"""Synthesis: run the stage-1 sharp -> blurred generator over sharp faces, write pairs.

Output: `<output>/{train,test}/{blurred,sharp}/<name>.png`, split 80/20 as in the paper,
readable by stage 2 as a paired folder (or packed into a TFDS dataset with `pack_tfds`).
"""

import ml_collections

from configs import common


def get_config(arg: str = "folder") -> ml_collections.ConfigDict:
  common.check_argument("synthesize.py", arg, ("folder", "celeb_a"))
  config = common.run_settings(ml_collections.ConfigDict(), job="synthesize")
  config.cyclegan_workdir = ""  # the stage-1 workdir (its checkpoints/ are read) or a release
  # Stage 1's checkpoint chosen by blur realism on its validation photos (selection.json),
  # when that run scored it; False: its latest.
  config.select_checkpoint = True
  config.use_ema = False        # True: G's EMA weights (a release's default otherwise)
  if arg == "celeb_a":
    config.source = common.source("celeb_a", blurry=False)
  else:
    config.source = common.source("folder")
  config.output = ""            # default: <workdir>/pairs
  config.image_size = 256       # centre crop + resize of each sharp face
  config.max_images = 0         # 0 = the whole source
  config.test_fraction = 0.2
  config.batch_size = 16
  config.write_workers = 4      # threads encoding the PNGs while the generator runs
  config.pack_tfds = False      # also write an array_record TFDS dataset of the pairs
  return config
