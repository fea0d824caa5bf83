"""Export a trained stage: a params-only release and a StableHLO deblurrer.

python main.py --config=configs/export.py --config.checkpoint=runs/demo/srn \
  --config.output=releases/srn

The release (weights and model config, no optimiser state) loads wherever a stage workdir
does (deblur, evaluation, synthesis); `deblurrer.stablehlo` runs with jax alone.
"""

import ml_collections

from configs import common


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  common.check_argument("export.py", arg, ("",))
  config = common.run_settings(ml_collections.ConfigDict(), job="export")
  config.checkpoint = ""   # a stage workdir, its checkpoints/ folder, or a release
  config.output = ""       # the release folder to write (an older release there is replaced)
  config.step = 0          # 0 = the newest checkpoint that restores
  # True: the release's default weights, and the StableHLO's, are the EMA ones (the run must
  # have been trained with ema_decay > 0); both sets are kept either way.
  config.use_ema = False
  config.stablehlo = True  # also write deblurrer.stablehlo (SRN, or the CycleGAN's F)
  config.platforms = ("cpu", "cuda")  # what the StableHLO is lowered for
  return config
