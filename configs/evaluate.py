"""Evaluation: Table 1 (PSNR/SSIM) and Table 2 (face-detection success rate) of the paper.

Methods are named in `methods`; each is one of
  identity          the blurred input itself (the floor)
  richardson_lucy   classical deconvolution with a per-image blind linear-motion estimate
  srn               an SRN checkpoint (`workdir` of a stage-2 run): ours, or the kernel baseline
  cyclegan          the blurred -> sharp generator F of a stage-1 run used directly (Zhu et al.)
  folder            another codebase's restored images in `path` (GFPGAN, Restormer, NAFNet, ...),
                    matched by name to the test images (faceblur/evaluate/method_outputs.py)
A method whose kind is '' is left out (`--config.methods.srn.kind=` empties a slot);
`output_folders` adds folder methods from the command line.
"""

import ml_collections

from configs import common


def method(kind: str, workdir: str = "", label: str = "", stage: str = "",
           regions: str = "whole", path: str = "") -> ml_collections.ConfigDict:
  """`stage`: in the pipeline, the sub-folder whose checkpoint this method loads. `regions`
  (srn): 'whole' restores the whole image, 'faces' each detected face in place. `path`
  (folder): the folder of the method's restored images."""
  return ml_collections.ConfigDict(dict(kind=kind, workdir=workdir, label=label or kind,
                                        stage=stage, regions=regions, path=path))


# The deblurring benchmarks: argument -> (source kind, protocol). README "Deblurring
# benchmarks" gives the downloads and which published rows each protocol reproduces.
BENCHMARKS = {"gopro": ("gopro", "gopro"), "hide": ("hide", "gopro"),
              "realblur_j": ("realblur_j", "realblur"), "realblur_r": ("realblur_r", "realblur")}


def get_config(arg: str = "paired_folder") -> ml_collections.ConfigDict:
  """`paired_folder`: Tables 1 and 2 on paired test sets; `wider_face`: Table 2 on WIDER FACE;
  `gopro`, `hide`, `realblur_j`, `realblur_r`: Table 1 on a deblurring benchmark's official
  test set under its own protocol."""
  common.check_argument("evaluate.py", arg, ("paired_folder", "wider_face", *BENCHMARKS))
  if arg == "wider_face":
    return wider_face()
  if arg in BENCHMARKS:
    return benchmark(arg)
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
  # How Table 1 scores (faceblur/evaluate/protocols.py), named in every table header:
  # 'faceblur' (float outputs, scikit-image SSIM), 'gopro' (8-bit outputs, MATLAB's 3-D SSIM
  # on RGB: the GoPro/HIDE scripts) or 'realblur' (8-bit, brightness-matched and ECC-aligned
  # to the ground truth, scored over the warped area: RealBlur's script; needs OpenCV).
  config.protocol = "faceblur"
  config.ssim = ""             # '' = the protocol's SSIM; 'skimage' or 'matlab' overrides it
  config.crop_border = 0       # pixels left out at each edge (BasicSR's crop_border)
  config.y_channel = False     # PSNR/SSIM on luma instead of RGB
  # 'name=folder,name=folder': other codebases' outputs as methods of kind folder.
  config.output_folders = ""
  # True: every method's restored images as PNGs in <output>/restored/<method>/<set>/ (the
  # test set's names), for other codebases to score; a folder method reads them back.
  config.save_restored = False
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
  # Table 3's descriptors shared among this many worker processes (dlib's network holds the
  # GIL on one core); 0 or 1, and sets of under 64 descriptors: in this process.
  config.identity_processes = 2
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


def benchmark(name: str) -> ml_collections.ConfigDict:
  """A deblurring benchmark's full-resolution test set (`test_sets.<name>.path`: the folder
  as its authors distribute it) under its protocol, for an SRN (`methods.srn.workdir`: a
  stage-2 workdir or release) and any other codebase's outputs (`output_folders`). Table 2
  and 3 need faces, which these photos rarely show: the second detector and identity are off."""
  kind, protocol = BENCHMARKS[name]
  config = get_config()
  config.test_sets = ml_collections.ConfigDict({name: common.source(kind, split="test")})
  config.methods = ml_collections.ConfigDict(dict(
      blurred=method("identity", label="Blurred input"),
      srn=method("srn", label="SRN-DeblurNet (faceblur)")))
  config.protocol = protocol
  config.second_detector = ""
  config.identity = False
  return config
