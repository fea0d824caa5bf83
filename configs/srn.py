"""Stage 2: SRN-DeblurNet on (blurred, sharp) pairs.

Reference defaults: the paper's batch 16 and 150 epochs, the official SRN optimiser (Adam
1e-4, polynomial decay with power 0.3), random 256 crops. Train on the synthesised pairs
(default), on a paired folder, or on GoPro (`configs/srn.py:gopro`).
"""

import ml_collections

from configs import common


def get_config(arg: str = "synthesized") -> ml_collections.ConfigDict:
  config = common.run_settings(ml_collections.ConfigDict(), job="srn")
  config.data = ml_collections.ConfigDict()
  if arg == "gopro":
    config.data.train = common.source("paired_folder", path="GOPRO_Large/train")
    config.data.test = common.source("paired_folder", path="GOPRO_Large/test")
  else:
    # The synthesis job writes <dir>/train and <dir>/test in the paired-folder layout.
    config.data.train = common.source("paired_folder", path="", split="train")
    config.data.test = common.source("paired_folder", path="", split="test")
  config.data.crop_size = 256
  config.data.random_flip = True

  config.model = ml_collections.ConfigDict(dict(
      num_scales=3, scale_ratio=0.5, use_lstm=True, channels=3,
      features=32,  # first-stage width (32-64-128 in the reference)
      residual=False,  # True: predict a correction of the blurred input (not the reference)
  ))
  config.loss = ml_collections.ConfigDict(dict(
      scale_weights=(1.0, 1.0, 1.0),  # kappa_i of eq. 3, coarse -> fine
  ))
  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, decay_power=0.3, end_learning_rate=0.0,
      lstm_grad_clip_norm=3.0,  # the official code clips the ConvLSTM's gradients; 0 = off
  ))
  common.train_loop_settings(config, num_epochs=150, batch_size=16)
  config.eval_every_steps = 2000
  config.eval_num_images = 64
  config.eval_crop_size = 0  # 0 = whole test images
  return config
