"""The whole pipeline on the built-in demo faces, sized for a 2-core CPU (minutes, not days).

The sharp domain is scikit-image's real faces (augmented); the "real blurred" domain is
other such faces blurred by random camera-shake kernels, since no real blurred face photos
ship in any package. The networks are the paper's, slimmed (fewer filters and blocks,
64 px) so the CPU run ends in minutes; `configs/pipeline.py` holds the reference sizes.

  python main.py --config=configs/demo.py --workdir=runs/demo
  python main.py --config=configs/demo.py:tiny --workdir=/tmp/t   # seconds (tests)
"""

import ml_collections

from configs import common, pipeline


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  tiny = arg == "tiny"
  config = pipeline.get_config("demo")
  size = 32 if tiny else 64

  stage1 = config.cyclegan
  stage1.data.sharp = common.source("demo_sharp", count=64 if tiny else 400, seed=0)
  stage1.data.blurred = common.source("demo_blurred", count=64 if tiny else 400, seed=1,
                                      max_blur_length=13.0)
  stage1.data.load_size = size + size // 8
  stage1.data.crop_size = size
  stage1.model.num_blocks = 2 if tiny else 4
  stage1.model.features = 8 if tiny else 16
  stage1.model.disc_features = 8 if tiny else 16
  stage1.batch_size = 2
  stage1.num_train_steps = 6 if tiny else 800
  stage1.pool_size = 8 if tiny else 50
  stage1.log_every_steps = 3 if tiny else 250
  stage1.checkpoint_every_steps = 400
  stage1.sample_every_steps = 400
  stage1.num_workers = 0

  synth = config.synthesize
  synth.source = common.source("demo_sharp", count=40 if tiny else 500, seed=2)
  synth.image_size = size
  synth.batch_size = 16

  for name in ("srn", "srn_kernel"):
    stage2 = config[name]
    stage2.data.crop_size = size - size // 4
    stage2.batch_size = 2 if tiny else 4
    stage2.num_train_steps = 6 if tiny else 400
    stage2.log_every_steps = 3 if tiny else 100
    stage2.checkpoint_every_steps = 200
    stage2.eval_every_steps = 6 if tiny else 200
    stage2.eval_num_images = 4 if tiny else 32
    stage2.optimizer.learning_rate = 3e-4
    stage2.model.features = 8 if tiny else 16
    stage2.model.residual = True
    stage2.num_workers = 0
  config.srn_kernel.data.train.max_blur_length = 13.0
  config.evaluate.test_sets.kernel_blurred.max_blur_length = 13.0

  config.evaluate.real_blurred = common.source("demo_blurred", count=16 if tiny else 100,
                                               seed=3, max_blur_length=13.0)
  config.evaluate.num_grid_images = 3 if tiny else 6
  return config
