"""Each stage learns what it is for, end to end, on images it never trained on.

The step tests (test_train.py) show a loss going down on one fixed batch; these show that a
tiny run of the real training loop generalises: the SRN restores held-out kernel-blurred
faces of other people better than their blurred input, and stage 1's G, after a few dozen
steps against camera-blurred photos, takes high-frequency energy out of sharp faces it never
saw (it blurs, rather than moving pixels about). Small enough for CI.
"""

import numpy as np
from helpers import cyclegan_config, srn_config

from configs import common
from configs import cyclegan as cyclegan_variants
from faceblur import metrics
from faceblur.data import factory
from faceblur.evaluate import intervals
from faceblur.images import to_float
from faceblur.train import cyclegan, partitioning, srn
from faceblur.train import state as state_lib


def _held_out_pairs(count: int = 24):
  """Kernel-blurred faces of the test people (never in the training sets below)."""
  spec = common.source("kernel_blurred", base=dict(kind="demo_sharp", split="test",
                                                   count=count, seed=9),
                       seed=3, max_blur_length=9.0)
  pairs = factory.make_paired_source(spec, image_size=32)
  blurred = np.stack([to_float(pairs[i]["blurred"]) for i in range(len(pairs))])
  sharp = np.stack([to_float(pairs[i]["sharp"]) for i in range(len(pairs))])
  return blurred, sharp


def test_a_tiny_srn_restores_held_out_kernel_blur(tmp_path):
  """Guards the whole SRN path (data, loss, optimiser, loop, restore): a break anywhere that
  stops it learning to deblur makes the held-out gain vanish."""
  config = srn_config(80)
  config.data.train.base.count = 48
  config.data.train.base.split = "train"
  config.optimizer.learning_rate = 1e-3
  config.checkpoint_every_steps = 80
  config.log_every_steps = 40
  state = srn.train_and_evaluate(config, tmp_path / "srn")
  blurred, sharp = _held_out_pairs()
  restore = srn.make_restore_fn(srn.make_networks(config)[srn.NETWORK])
  restored = np.asarray(restore(state.deblurrer, blurred))
  gain = intervals.paired_difference(np.asarray(metrics.psnr(restored, sharp)),
                                     np.asarray(metrics.psnr(blurred, sharp)))
  assert gain.low > 0, f"held-out PSNR gain {gain.format()} dB"


def _high_frequency_energy(images: np.ndarray) -> np.ndarray:
  """Per image: the share of the luma's spectral energy above a quarter of Nyquist."""
  luma = images @ np.array([0.299, 0.587, 0.114])
  luma = luma - luma.mean(axis=(1, 2), keepdims=True)
  power = np.abs(np.fft.fft2(luma)) ** 2
  rows, cols = np.meshgrid(np.fft.fftfreq(luma.shape[1]), np.fft.fftfreq(luma.shape[2]),
                           indexing="ij")
  high = np.hypot(rows, cols) > 0.125
  return power[:, high].sum(axis=1) / power.sum(axis=(1, 2))


def test_a_tiny_stage_1_learns_to_blur_held_out_faces(tmp_path):
  """The demo's stage 1 (`kernel_blur`) trained for a few dozen steps against strongly
  camera-blurred photos: on sharp faces of people it never saw, its G (its mean blur, z = 0)
  keeps less high-frequency energy than the same G before training, a 1 px Gaussian. Guards
  the adversarial path of stage 1 (critic targets, pools, which network each loss updates).
  (The paper's residual CNN G, which starts as the identity, moves too little in this budget
  for a test to tell.)"""
  variant = "kernel_blur"
  config = cyclegan_config(60)
  cyclegan_variants.apply_variant(config, variant)
  config.model.kernel_size = 13
  config.data.sharp.count = 48
  config.data.blurred.count = 48
  config.data.blurred.max_shake = 0.3  # a blur a few dozen steps can see
  config.optimizer.learning_rate = 1e-3
  config.checkpoint_every_steps = 60
  config.log_every_steps = 30
  networks = cyclegan.make_networks(config)
  _, sharp = _held_out_pairs(16)

  def high_frequency(state):
    return _high_frequency_energy(
        np.clip(np.asarray(networks["g"].apply(state.g, sharp)), 0.0, 1.0))

  tx = cyclegan.STAGE.make_optimizer(config, config.num_train_steps)
  untrained = state_lib.create_train_state(cyclegan.init_fn(config, tx), config.seed,
                                           partitioning.make_mesh(1))
  trained = cyclegan.train_and_evaluate(config, tmp_path / "cyclegan")
  change = intervals.paired_difference(high_frequency(trained), high_frequency(untrained))
  assert change.high < 0, f"G's change of high-frequency share {change.format(4)}"
