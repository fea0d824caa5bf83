"""Stage 1: CycleGAN, sharp <-> blurred, on unpaired real photos.

Reference defaults (Zhu et al. 2017, official code; the paper's batch 4 and 70 epochs).
Usage: python main.py --config=configs/cyclegan.py --workdir=runs/cyclegan \
  --config.data.sharp.path=/faces/sharp --config.data.blurred.path=/faces/blurred
The `:celeb_a` argument trains on CelebA's own Blurry / non-blurry photos instead.

`configs/cyclegan.py:paper_code` is the stage 1 of the paper's own repository (after
vanhuyz/CycleGAN-TensorFlow) on two folders: real label 0.9, no identity loss, batch 1, each
photo resized to 256x256 with neither crop nor flip; the rest as above (lambda 10, Adam 2e-4
with beta1 0.5, pool 50, constant then linear decay over two halves of training). It composes
with the data: `:celeb_a,paper_code` is that recipe on CelebA.
"""

import ml_collections

from configs import common

# `--config=configs/cyclegan.py:<data>[,paper_code]` (`common.parse_argument`).
DATA_ARGUMENTS = ("folders", "celeb_a", "demo")
RECIPE_ARGUMENTS = ("", "paper_code")

# Stage-1 variants (`apply_variant`): each is a set of config switches over the paper's
# CycleGAN, which is `paper` (all switches off).
VARIANTS = {
    "paper": {},
    # The CNN G with the steganography channel narrowed: resize-convolution upsampling, a
    # random code with a mode-seeking term, noise on G(sharp) before F in the cycle.
    "cnn_code": {"model.upsample": "resize", "model.code_dim": 8,
                 "loss.cycle_noise_std": 3 / 255, "loss.diversity_weight": 1.0},
    # A G that can only blur (faceblur.models.blur_generator), trained adversarially alone
    # as PDM is: no sharp -> blurred -> sharp cycle and no identity term (both reward a mild
    # blur), and the blurred -> sharp -> blurred cycle trains F only.
    # Photos are JPEGs: a broad range of phone qualities (the codec is PIL's). Its critics
    # see 16 px patches (one strided layer): blur, noise and JPEG are local statistics, and
    # a face-sized field lets the critic judge the two domains' people instead (KernelGAN's
    # critic sees 7 px). Chosen by validation realism among 16, 34 and 70 px (README).
    "kernel_blur": {"model.generator": "kernel_blur", "model.code_dim": 8,
                    "model.jpeg_quality": (50, 95), "model.disc_layers": 1,
                    "loss.forward_cycle_weight": 0.0, "loss.identity_weight": 0.0,
                    "loss.cycle_updates_g": False, "loss.diversity_weight": 1.0},
}
# The same, with one learned global contrast curve after the blur (a camera's tone step).
VARIANTS["kernel_blur_tone"] = {**VARIANTS["kernel_blur"], "model.tone_curve": True}
# The same without the mode-seeking term, as PDM trains its kernel module: the random code is
# G's only source of variety. The term pays for any difference between two codes' outputs,
# and the cheapest difference is between extremes (a near-identity kernel and a wide or
# split one), which the critic tolerates in a minority of images.
VARIANTS["kernel_blur_plain"] = {**VARIANTS["kernel_blur"], "loss.diversity_weight": 0.0}


def apply_variant(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """Sets the switches of stage-1 variant `name` (a `VARIANTS` key) on a stage-1 config."""
  if name not in VARIANTS:
    raise ValueError(f"unknown stage-1 variant {name!r}; choose {', '.join(VARIANTS)}")
  config.variant = name
  paper = get_config()
  switches = {key for variant in VARIANTS.values() for key in variant}
  for key, value in {**{key: paper[key.split(".")[0]][key.split(".")[1]] for key in switches},
                     **VARIANTS[name]}.items():
    group, field = key.split(".")
    config[group][field] = value
  return config


def get_config(arg: str = "folders") -> ml_collections.ConfigDict:
  data, recipe = common.parse_argument("cyclegan.py", arg, DATA_ARGUMENTS, RECIPE_ARGUMENTS)
  config = common.run_settings(ml_collections.ConfigDict(), job="cyclegan")
  config.data = ml_collections.ConfigDict()
  if data == "celeb_a":
    config.data.sharp = common.source("celeb_a", blurry=False)
    config.data.blurred = common.source("celeb_a", blurry=True)
  elif data == "demo":
    config.data.sharp = common.source("demo_sharp", split="train", count=400)
    config.data.blurred = common.source("demo_blurred", split="blurred", count=400, seed=1)
  else:
    config.data.sharp = common.source("folder")
    config.data.blurred = common.source("folder")
  # resize_and_crop: a square bicubic resize to load_size, a random crop, a random flip.
  config.data.load_size = 286
  config.data.crop_size = 256
  config.data.random_flip = True
  # Held-out real blurred photos of the training people (a source spec; kind '' = none): the
  # blur-realism score of G on them, logged at every sample step, selects the checkpoint
  # synthesis uses. Never a test set.
  config.data.blurred_validation = common.source("")
  config.data.validation_count = 300  # MMD^2's null sd: 0.0016 at 100, 0.0004 at 300 (README)
  # Which label-free rule selects (faceblur.train.cyclegan.SELECTION_SCORES; every score is
  # logged): 'realism/mmd2' (per-image blur features), 'realism/falloff' (the pooled
  # spectrum's mid-band attenuation, in cycles/px bands set for 64 px faces) or
  # 'realism/mmd2_no_wider' (MMD^2 among the steps that blur no wider than the photos by it)
  # or 'realism/falloff_w1' (the distance between the per-image attenuations' distributions).
  config.selection_score = "realism/mmd2"

  config.model = ml_collections.ConfigDict(dict(
      num_blocks=9,          # 9 for 256 px crops, 6 for 128 px
      features=64,
      disc_features=64,
      disc_layers=3,         # 70x70 PatchGAN
      residual=False,        # True: generators add a correction to their input (not the reference)
      generator="resnet",    # G by name (faceblur.models.GENERATORS): resnet, kernel_blur
      upsample="transposed",  # or 'resize': nearest x2 + 3x3 conv (no checkerboard)
      code_dim=0,            # size of G's random code z (0: none; kernel_blur: 8 if 0)
      kernel_size=21,        # kernel_blur: the kernel's side (px, odd)
      jpeg_quality=(),       # kernel_blur: (low, high) JPEG quality of its output; () = none
      tone_curve=False,      # kernel_blur: one learned global contrast curve after the blur
  ))
  config.loss = ml_collections.ConfigDict(dict(
      cycle_weight=10.0,     # lambda of eq. 2
      identity_weight=0.5,   # times cycle_weight
      real_label=1.0,
      forward_cycle_weight=1.0,  # of the sharp -> blurred -> sharp cycle, relative to lambda
      cycle_noise_std=0.0,   # Gaussian noise on G(sharp) before F in that cycle
      cycle_updates_g=True,  # False: the cycles train F only
      diversity_weight=0.0,  # mode-seeking term on G's code (Mao et al. 2019)
  ))
  config.variant = "paper"  # informational: the VARIANTS entry applied (apply_variant)
  config.pool_size = 50
  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=2e-4, b1=0.5, b2=0.999,
      constant_fraction=0.5,  # constant for this share of training, then linear decay to 0
  ))
  common.train_loop_settings(config, num_epochs=70, batch_size=4)
  config.sample_every_steps = 1000
  # Every sample step's checkpoint stays: the blur-realism selection may choose any of them.
  config.keep_checkpoint_every_steps = config.get_ref("sample_every_steps")
  config.num_samples = 4
  # Faces the hidden-channel diagnostic sends through F (three times each sample step); the
  # realism scores G on all `validation_count` of them.
  config.hidden_count = 100
  if recipe == "paper_code":
    config.data.load_size = config.data.crop_size = 256
    config.data.random_flip = False
    config.loss.real_label = 0.9
    config.loss.identity_weight = 0.0
    config.batch_size = 1
  return config
