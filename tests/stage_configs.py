"""Tiny stage configs shared by the training tests (32 px, a few steps, demo faces)."""

import ml_collections

from configs import common, demo


def cyclegan_config(num_train_steps: int = 4) -> ml_collections.ConfigDict:
  config = demo.get_config("tiny").cyclegan
  config.data.sharp.count = 16
  config.data.blurred.count = 16
  config.num_train_steps = num_train_steps
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.sample_every_steps = 1000
  return config


def srn_config(num_train_steps: int = 4) -> ml_collections.ConfigDict:
  config = demo.get_config("tiny").srn
  config.data.train = common.source(
      "kernel_blurred", base=dict(kind="demo_sharp", count=16, seed=0), max_blur_length=9.0)
  config.data.test = common.source(
      "kernel_blurred", base=dict(kind="demo_sharp", count=4, seed=5), max_blur_length=9.0)
  config.data.crop_size = 24
  config.num_train_steps = num_train_steps
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 1000
  config.eval_num_images = 2
  return config
