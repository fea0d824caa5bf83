"""The whole pipeline on the built-in demo faces, sized for a 2-core CPU (minutes, not days).

No real blurred face photos ship in any package, so the demo builds a world where the
paper's premise can be tested: the "real blurred" domain is faces through a simulated phone
camera (`faceblur/data/camera_blur.py`: non-uniform shake, defocus, sensor noise, tone curve,
JPEG), which the kernel baseline (uniform kernels in sRGB) does not know. The sharp domain,
the blurred domain and the test faces come from disjoint base faces (`demo.BASE_GROUPS`).
Test sets: `camera_blurred` (held-out people through the camera, with ground truth: the
stand-in for the paper's real test photos), `synthesized` (held-out synthesised pairs) and
`kernel_blurred` (the held-out people through the baseline's kernels).

The camera's shake length (`CAMERA_SHAKE`, 0.1 of the side) is what `tools/world_sweep.py`'s
rule chose before any stage 1 was trained on it: the largest oracle gain at the demo's
stage-2 budget among shakes where blur lowers dlib HOG's detection by at least 0.15 (table
in README). The earlier 0.4 stays as the `camera_blurred_strong` test set, not a target. Stage
1 is the `STAGE1_VARIANT` of `configs/cyclegan.py` that `tools/select_stage1.py` chose by blur
realism on validation photos; `:stage1=<variant>` runs another. The networks are the paper's,
slimmed (fewer filters and blocks, 64 px) so the CPU run ends in minutes;
`configs/pipeline.py` holds the reference sizes.

  python main.py --config=configs/demo.py --workdir=runs/demo
  python main.py --config=configs/demo.py:tiny --workdir=/tmp/t   # seconds (tests)
  python main.py --config=configs/demo.py:no_oracle --workdir=runs/demo  # without it
  python main.py --config=configs/demo.py:tiny,oracle,stage1=paper --workdir=/tmp/t  # parts

The oracle (`srn_oracle`, on by default) is a third SRN, trained like the kernel baseline but
on the test blur's own process (the camera, on the training people), with its row in every
table: what the demo's stage-2 budget can reach when stage 1 is perfect.
"""

import ml_collections

from configs import common, evaluate, pipeline
from configs import cyclegan as cyclegan_config

CAMERA_SHAKE = 0.1  # shake path / the face's side: tools/world_sweep.py's rule (README)
STRONG_CAMERA_SHAKE = 0.4  # the `camera_blurred_strong` test set: reported, not a target
STAGE1_VARIANT = "kernel_blur_plain"  # configs/cyclegan.py VARIANTS (tools/select_stage1.py)
# `common.parse_argument`'s groups: the size, the oracle ('': on, but not for `tiny`) and
# stage 1's variant, composable (`tiny,stage1=paper`).
SIZE_ARGUMENTS = ("", "tiny")
ORACLE_ARGUMENTS = ("", "oracle", "no_oracle")
STAGE1_ARGUMENTS = tuple(f"stage1={name}" for name in
                         (STAGE1_VARIANT, *(v for v in cyclegan_config.VARIANTS
                                            if v != STAGE1_VARIANT)))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  size_arg, oracle_arg, stage1_arg = common.parse_argument(
      "demo.py", arg, SIZE_ARGUMENTS, ORACLE_ARGUMENTS, STAGE1_ARGUMENTS)
  tiny = size_arg == "tiny"
  variant = stage1_arg.partition("=")[2]
  config = pipeline.get_config("demo")
  size = 32 if tiny else 64
  blur_length = round(CAMERA_SHAKE * size)  # the kernel baseline's path length (px)

  stage1 = config.cyclegan
  stage1.data.sharp = common.source("demo_sharp", split="train", count=64 if tiny else 400,
                                    seed=0)
  stage1.data.blurred = common.source("demo_blurred", split="blurred",
                                      count=64 if tiny else 400, seed=1,
                                      max_shake=CAMERA_SHAKE)
  cyclegan_config.apply_variant(stage1, variant)
  stage1.model.kernel_size = 2 * round(CAMERA_SHAKE * size) + 1  # the baseline's path, +-
  # Other photos of the blurred domain's people: the label-free checkpoint selection's data.
  stage1.data.blurred_validation = common.source(
      "demo_blurred", split="blurred", count=16 if tiny else 300, seed=5, max_shake=CAMERA_SHAKE)
  stage1.data.validation_count = 16 if tiny else 300
  # The paper's resize_and_crop (a 9/8 upscale, then a random crop) is kept for the CNN
  # generators. A degradation model learns from photos at the scale it will blur at, as
  # KernelGAN and PDM train on crops that are never resampled: an upscale smooths a photo's
  # noise and JPEG grain, and G's kernels, learnt at 9/8 of the synthesis size, would blur the
  # synthesised faces 9/8 too wide.
  native_scale = stage1.model.generator == "kernel_blur"
  stage1.data.load_size = size if native_scale else size + size // 8
  stage1.data.crop_size = size
  stage1.model.num_blocks = 2 if tiny else 4
  stage1.model.features = 8 if tiny else 16
  stage1.model.disc_features = 8 if tiny else 16
  stage1.model.residual = True  # starts as the identity: learns blur within the budget
  stage1.batch_size = 2
  stage1.num_train_steps = 6 if tiny else 800
  stage1.pool_size = 8 if tiny else 50
  stage1.log_every_steps = 3 if tiny else 250
  # Eight candidates for the label-free checkpoint selection (each one kept), scored and used
  # with G's and F's EMA weights: across stage-1 seeds the EMA's selection narrowed the spread
  # of ours's labels, mostly by avoiding the wide kernels of runs whose trained weights drift
  # (validation faces; README, "Stage 1 over six runs"; `tools/stage1_seeds.py`).
  stage1.ema_decay = 0.0 if tiny else 0.99
  # The step whose per-image mid-band attenuations are distributed most like the validation
  # photos': it sees a mix of too-narrow and too-wide kernels that a pooled spectrum averages
  # away. Adopted over MMD² with the pooled falloff's guard on six fresh stage-1 seeds
  # (validation faces; README, "A per-image width score").
  stage1.selection_score = "realism/falloff_w1"
  stage1.checkpoint_every_steps = 100
  stage1.sample_every_steps = 100
  stage1.num_workers = 0

  synth = config.synthesize
  synth.source = common.source("demo_sharp", split="train", count=40 if tiny else 500, seed=2)
  synth.image_size = size
  synth.batch_size = 16

  for name in ("srn", "srn_kernel"):
    stage2 = config[name]
    stage2.data.crop_size = size - size // 4
    stage2.batch_size = 2 if tiny else 4
    # What the pipeline's 10 minutes leave on the 2-core CPU (bench/RESULTS.md); the world
    # sweep's oracle was re-run at this budget before anything else trained at it (README).
    stage2.num_train_steps = 6 if tiny else 500
    stage2.log_every_steps = 3 if tiny else 100
    stage2.checkpoint_every_steps = 250
    stage2.eval_every_steps = 6 if tiny else 250
    stage2.eval_num_images = 4 if tiny else 32
    stage2.optimizer.learning_rate = 3e-4
    stage2.model.features = 8 if tiny else 16
    stage2.model.residual = True
    stage2.num_workers = 0
  config.srn_kernel.data.train.max_blur_length = blur_length

  # Every test set shows the held-out people (the "test" base faces), none seen in training.
  evaluation = config.evaluate
  num_test = 16 if tiny else 100
  test_faces = dict(kind="demo_sharp", split="test", count=num_test, seed=7)
  synthesized = evaluation.test_sets.synthesized
  evaluation.test_sets = ml_collections.ConfigDict()
  evaluation.test_sets.camera_blurred = common.source(
      "camera_blurred", base=test_faces, seed=11, max_shake=CAMERA_SHAKE)
  # The camera before the world sweep sized it: stronger than the demo's stage 2 can learn
  # to undo (README), reported beside, never a target.
  if not tiny:  # (tests: one camera set is enough)
    evaluation.test_sets.camera_blurred_strong = common.source(
        "camera_blurred", base=test_faces, seed=11, max_shake=STRONG_CAMERA_SHAKE)
  evaluation.test_sets.synthesized = synthesized
  evaluation.test_sets.kernel_blurred = common.source(
      "kernel_blurred", base=test_faces, seed=1, max_blur_length=blur_length)
  # Camera-blurred photos of the held-out people without ground truth: the reference of the
  # blur-realism score, and detection on "real" blurred photos.
  evaluation.real_blurred = common.source("demo_blurred", split="test", count=num_test, seed=3,
                                          max_shake=CAMERA_SHAKE)
  evaluation.num_grid_images = 3 if tiny else 6
  # Table 3 on the first faces of `camera_blurred` only (the set that stands in for real
  # photos): every face costs a descriptor per method, and the pipeline's 10-minute budget on
  # a 2-core CPU has no room for more (README).
  evaluation.identity_max_images = 8 if tiny else 25
  evaluation.identity_test_sets = ("camera_blurred",)
  if oracle_arg == "oracle" or (not tiny and oracle_arg != "no_oracle"):
    add_oracle(config, size)
  add_folder_method(config)
  return config


def stage2_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The pipeline's SRN stages (ours, the kernel baseline, the oracle when on): the rows that
  must share one stage-2 budget."""
  return tuple(name for name in config.stages if config[name].get("job") == "srn")


def add_folder_method(config: ml_collections.ConfigDict) -> None:
  """A row read from a folder, as another codebase's outputs would be (`kind: folder`): the
  `unsharp` stage writes an unsharp-masked copy of every blurred image the evaluation restores,
  and the evaluation scores them like any method."""
  # References: the stand-in's test sets follow the evaluation's, whatever flags change.
  config.unsharp = ml_collections.ConfigDict(dict(
      job="unsharp_outputs", test_sets=config.evaluate.get_ref("test_sets"),
      real_blurred=config.evaluate.get_ref("real_blurred"),
      image_size=config.evaluate.get_ref("image_size"), sigma=1.0, amount=1.0))
  config.stages = (*(stage for stage in config.stages if stage != "evaluate"), "unsharp",
                   "evaluate")
  config.evaluate.methods.unsharp = evaluate.method(
      "folder", label="Unsharp mask, read from a folder (a stand-in for another codebase)",
      stage="unsharp")


def add_oracle(config: ml_collections.ConfigDict, size: int) -> None:
  """The `srn_oracle` stage and its method: the kernel baseline's SRN and budget, trained on
  the synthesised pairs' sharp faces (the pipeline wires them, as for the baseline) through
  the camera the test sets use."""
  oracle = ml_collections.ConfigDict(config.srn_kernel.to_dict())
  oracle.data.train = pipeline.reads(common.source("camera_blurred", split="train", seed=21,
                                                   max_shake=CAMERA_SHAKE), "pairs_sharp")
  oracle.data.crop_size = size - size // 4
  config.srn_oracle = oracle
  config.stages = (*(stage for stage in config.stages if stage != "evaluate"), "srn_oracle",
                   "evaluate")
  config.evaluate.methods.oracle = evaluate.method(
      "srn", label="Oracle: SRN on the test's own camera blur", stage="srn_oracle")
  # How far ours is from the oracle, the oracle's own gain, and (from both with "ours-blurred")
  # the share of the oracle's gain that ours recovers.
  config.evaluate.comparisons = (*config.evaluate.comparisons, "ours-oracle", "oracle-blurred")
