"""Stage 1: CycleGAN, sharp <-> blurred, on unpaired real photos.

Reference defaults (Zhu et al. 2017, official code; the paper's batch 4 and 70 epochs).
Usage: python main.py --config=configs/cyclegan.py --workdir=runs/cyclegan \
  --config.data.sharp.path=/faces/sharp --config.data.blurred.path=/faces/blurred
The `:celeb_a` argument trains on CelebA's own Blurry / non-blurry photos instead.

`configs/cyclegan.py:paper_code` is the stage 1 of the paper's own repository (after
vanhuyz/CycleGAN-TensorFlow) on two folders: real label 0.9, no identity loss, batch 1, each
photo resized to 256x256 with neither crop nor flip; the rest as above (lambda 10, Adam 2e-4
with beta1 0.5, pool 50, constant then linear decay over two halves of training).
"""

import ml_collections

from configs import common

ARGUMENTS = ("folders", "celeb_a", "demo", "paper_code")


def get_config(arg: str = "folders") -> ml_collections.ConfigDict:
  if arg not in ARGUMENTS:
    raise ValueError(f"unknown configs/cyclegan.py argument {arg!r}; choose {', '.join(ARGUMENTS)}")
  config = common.run_settings(ml_collections.ConfigDict(), job="cyclegan")
  config.data = ml_collections.ConfigDict()
  if arg == "celeb_a":
    config.data.sharp = common.source("celeb_a", blurry=False)
    config.data.blurred = common.source("celeb_a", blurry=True)
  elif arg == "demo":
    config.data.sharp = common.source("demo_sharp", split="train", count=400)
    config.data.blurred = common.source("demo_blurred", split="blurred", count=400, seed=1)
  else:
    config.data.sharp = common.source("folder")
    config.data.blurred = common.source("folder")
  # resize_and_crop: a square bicubic resize to load_size, a random crop, a random flip.
  config.data.load_size = 286
  config.data.crop_size = 256
  config.data.random_flip = True

  config.model = ml_collections.ConfigDict(dict(
      num_blocks=9,          # 9 for 256 px crops, 6 for 128 px
      features=64,
      disc_features=64,
      disc_layers=3,         # 70x70 PatchGAN
      residual=False,        # True: generators add a correction to their input (not the reference)
  ))
  config.loss = ml_collections.ConfigDict(dict(
      cycle_weight=10.0,     # lambda of eq. 2
      identity_weight=0.5,   # times cycle_weight
      real_label=1.0,
  ))
  config.pool_size = 50
  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=2e-4, b1=0.5, b2=0.999,
      constant_fraction=0.5,  # constant for this share of training, then linear decay to 0
  ))
  common.train_loop_settings(config, num_epochs=70, batch_size=4)
  config.sample_every_steps = 1000
  config.num_samples = 4
  if arg == "paper_code":
    config.data.load_size = config.data.crop_size = 256
    config.data.random_flip = False
    config.loss.real_label = 0.9
    config.loss.identity_weight = 0.0
    config.batch_size = 1
  return config
