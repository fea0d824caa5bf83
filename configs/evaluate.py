"""Evaluation: Table 1 (PSNR/SSIM) and Table 2 (face-detection success rate) of the paper.

Methods are named in `methods`; each is one of
  identity          the blurred input itself (the floor)
  richardson_lucy   classical deconvolution with a per-image blind linear-motion estimate
  srn               an SRN checkpoint (`workdir` of a stage-2 run): ours, or the kernel baseline
  cyclegan          the blurred -> sharp generator F of a stage-1 run used directly (Zhu et al.)
"""

import ml_collections

from configs import common


def method(kind: str, workdir: str = "", label: str = "",
           stage: str = "") -> ml_collections.ConfigDict:
  """`stage`: in the pipeline, the sub-folder whose checkpoint this method loads."""
  return ml_collections.ConfigDict(dict(kind=kind, workdir=workdir, label=label or kind,
                                        stage=stage))


def get_config(arg: str = "paired_folder") -> ml_collections.ConfigDict:
  del arg
  config = common.run_settings(ml_collections.ConfigDict(), job="evaluate")
  # Paired test sets (Table 1 and 2): name -> source. The pipeline adds a kernel-blurred one.
  config.test_sets = ml_collections.ConfigDict(dict(
      synthesized=common.source("paired_folder", split="test")))
  # Real blurred photos without ground truth: detection rate only. kind '' = none.
  config.real_blurred = common.source("", split="test")
  config.methods = ml_collections.ConfigDict(dict(
      blurred=method("identity", label="Blurred input"),
      richardson_lucy=method("richardson_lucy", label="Richardson-Lucy"),
  ))
  config.image_size = 0        # > 0: centre-crop/resize test images to this size
  config.max_images = 0        # 0 = all
  config.batch_size = 8
  config.y_channel = False     # PSNR/SSIM on luma instead of RGB
  config.detector = "mtcnn"
  config.detector_threshold = 0.7  # O-Net score a detection needs
  config.detector_padding = 0.25   # context added around face crops before detection
  config.num_grid_images = 6
  config.output = ""           # default: the workdir
  config.model = ml_collections.ConfigDict()
  return config
