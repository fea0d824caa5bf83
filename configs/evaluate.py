"""Evaluation: Table 1 (PSNR/SSIM) and Table 2 (face-detection success rate) of the paper.

Methods are named in `methods`; each is one of
  identity          the blurred input itself (the floor)
  richardson_lucy   classical deconvolution with a per-image blind linear-motion estimate
  srn               an SRN checkpoint (`workdir` of a stage-2 run): ours, or the kernel baseline
  cyclegan          the blurred -> sharp generator F of a stage-1 run used directly (Zhu et al.)
"""

import ml_collections

from configs import common


def method(kind: str, workdir: str = "", label: str = "", stage: str = "",
           regions: str = "whole") -> ml_collections.ConfigDict:
  """`stage`: in the pipeline, the sub-folder whose checkpoint this method loads. `regions`
  (srn): 'whole' restores the whole image, 'faces' each detected face in place."""
  return ml_collections.ConfigDict(dict(kind=kind, workdir=workdir, label=label or kind,
                                        stage=stage, regions=regions))


def get_config(arg: str = "paired_folder") -> ml_collections.ConfigDict:
  """`paired_folder`: Tables 1 and 2 on paired test sets; `wider_face`: Table 2 on WIDER FACE."""
  common.check_argument("evaluate.py", arg, ("paired_folder", "wider_face"))
  if arg == "wider_face":
    return wider_face()
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
  config.y_channel = False     # PSNR/SSIM on luma instead of RGB
  config.detector = "mtcnn"
  config.detector_threshold = 0.7  # O-Net score a detection needs
  config.detector_padding = 0.25   # context added around face crops before detection
  # Table 2's second detector ('' = none): dlib's HOG ('dlib_hog'), 'dlib_mmod' or 'haar'.
  config.second_detector = "dlib_hog"
  config.second_detector_threshold = 0.0  # dlib's score threshold (haar: min neighbours)
  # Table 3: dlib's face descriptor distance to the ground truth, on the first
  # `identity_max_images` images of each paired set (0 = all; ~0.1-0.3 s a face and method),
  # of the sets named in `identity_test_sets` (empty = every paired set).
  config.identity = True
  config.identity_max_images = 0
  config.identity_test_sets = ()
  # Paired differences "a-b" (two method names, or `blurred`): per paired set and metric, the
  # mean per-face difference a - b with its 95 % paired bootstrap interval, in both reports.
  config.comparisons = ()
  config.num_grid_images = 6
  config.output = ""           # default: the workdir
  return config


def wider_face() -> ml_collections.ConfigDict:
  """Detection recall on WIDER FACE's photos by blur level and face size, before and after
  restoration. Set `wider_face.path` to the folder holding WIDER_val/ and wider_face_split/,
  and each model method's `workdir` to a trained stage; `methods.<name>.regions=whole`
  restores whole photos instead of each face in place."""
  config = common.run_settings(ml_collections.ConfigDict(), job="evaluate_wider_face")
  config.wider_face = common.source("wider_face", split="val")
  config.methods = ml_collections.ConfigDict(dict(
      ours=method("srn", label="Ours (SRN on learned blur), faces in place", regions="faces"),
      srn_kernel=method("srn", label="SRN on kernel blur, faces in place", regions="faces"),
  ))
  config.max_images = 0        # 0 = all
  config.detector = "mtcnn"
  config.detector_threshold = 0.7
  config.output = ""           # default: the workdir
  return config
