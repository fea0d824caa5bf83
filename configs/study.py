"""The demo's experiment at a scale where stage 1 can converge: the claim, settled on CPU.

The same world as `configs/demo.py` (simulated-camera blur as the "real" domain, disjoint
people for training and testing, the same test sets and methods) with a deeper stage-1
generator (6 blocks), 7.5 times the demo's stage-1 steps on 2.5 times the faces, 3 times the
synthesised pairs and 2.5 times the SRN steps: about an hour on the 2-core CPU (stage 1 took
36 min there with other jobs sharing the cores). On a GPU it takes minutes, and
`--config.cyclegan.num_train_steps=...` scales it further.

  python main.py --config=configs/study.py --workdir=runs/study
"""

import ml_collections

from configs import common, demo


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  common.check_argument("study.py", arg, ("",))
  config = demo.get_config()
  stage1 = config.cyclegan
  stage1.model.num_blocks = 6
  stage1.num_train_steps = 6000
  stage1.log_every_steps = 500
  stage1.checkpoint_every_steps = 1000
  stage1.sample_every_steps = 1000
  stage1.data.sharp.count = stage1.data.blurred.count = 1000

  config.synthesize.source.count = 1500
  for name in ("srn", "srn_kernel"):
    stage2 = config[name]
    stage2.num_train_steps = 1000
    stage2.checkpoint_every_steps = 500
    stage2.eval_every_steps = 500
  return config
