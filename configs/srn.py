"""Stage 2: SRN-DeblurNet on (blurred, sharp) pairs.

Reference defaults: the paper's batch 16 and 150 epochs, the official SRN optimiser (Adam
1e-4, polynomial decay with power 0.3, no gradient clipping), one random 256 crop shared by
the pair and no flips (jiangsutx/SRN-Deblur `models/model.py`). Train on the synthesised pairs
(default), on a paired folder, or on GoPro (`configs/srn.py:gopro`).

`configs/srn.py:paper_code` is what the paper's own repository trains by default
(`--model=color`): the colour SRN without the ConvLSTM, 6,881,251 parameters, otherwise the
same settings. It composes with the data: `:gopro,paper_code`.
"""

import ml_collections

from configs import common

# `--config=configs/srn.py:<data>[,paper_code]` (`common.parse_argument`).
DATA_ARGUMENTS = ("synthesized", "gopro")
MODEL_ARGUMENTS = ("", "paper_code")


def get_config(arg: str = "synthesized") -> ml_collections.ConfigDict:
  data, model = common.parse_argument("srn.py", arg, DATA_ARGUMENTS, MODEL_ARGUMENTS)
  config = common.run_settings(ml_collections.ConfigDict(), job="srn")
  config.data = ml_collections.ConfigDict()
  if data == "gopro":
    config.data.train = common.source("paired_folder", path="GOPRO_Large/train")
    config.data.test = common.source("paired_folder", path="GOPRO_Large/test")
  else:
    # The synthesis job writes <dir>/train and <dir>/test in the paired-folder layout.
    config.data.train = common.source("paired_folder", path="", split="train")
    config.data.test = common.source("paired_folder", path="", split="test")
  config.data.crop_size = 256
  config.data.random_flip = False  # the official code crops only

  config.model = ml_collections.ConfigDict(dict(
      num_scales=3, scale_ratio=0.5, channels=3,
      use_lstm=model != "paper_code",  # the paper's repository trains --model=color: no LSTM
      features=32,  # first-stage width (32-64-128 in the reference)
      residual=False,  # True: predict a correction of the blurred input (not the reference)
  ))
  config.loss = ml_collections.ConfigDict(dict(
      scale_weights=(1.0, 1.0, 1.0),  # kappa_i of eq. 3, coarse -> fine
  ))
  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, decay_power=0.3, end_learning_rate=0.0,
      # > 0 clips the ConvLSTM's gradients to this global norm: an option of the official
      # code (3.0 there) that its training never turns on, so off (0) here.
      lstm_grad_clip_norm=0.0,
      warmup_steps=0,      # > 0: a linear ramp from 0 first (not in the official code)
      grad_clip_norm=0.0,  # > 0: every gradient clipped to this global norm (nor this)
  ))
  common.train_loop_settings(config, num_epochs=150, batch_size=16)
  config.eval_every_steps = 2000
  config.eval_num_images = 64
  config.eval_crop_size = 0  # 0 = whole test images
  return config
