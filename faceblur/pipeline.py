"""The whole method in a row (the `pipeline` job): each stage in its own sub-folder.

  <workdir>/cyclegan     stage 1 checkpoints, samples, logs
  <workdir>/pairs        the synthesised (blurred, sharp) pairs, train/ and test/
  <workdir>/srn          stage 2 on the synthesised pairs ("ours")
  <workdir>/srn_kernel   the baseline: stage 2 on the same sharp faces, kernel-blurred
  <workdir>/srn_oracle   optional (`configs/demo.py:oracle`): stage 2 on the test blur's own
                         process, the ceiling of the stage-2 budget
  <workdir>/evaluation   Tables 1 and 2, figures, per-image CSV

The stages are wired here, not in the config, so each sub-config stays a valid stand-alone
job config. Re-running resumes: finished stages are skipped, interrupted ones resume.
"""

import pathlib
import time

import ml_collections

from faceblur.errors import ConfigError

STAGES = ("cyclegan", "synthesize", "srn", "srn_kernel", "srn_oracle", "evaluate")
SRN_STAGES = ("srn", "srn_kernel", "srn_oracle")


def wire(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """A copy of `config` whose stages read each other's outputs under `workdir`."""
  config = ml_collections.ConfigDict(config.to_dict())
  pairs = workdir / "pairs"
  for name in (name for name in STAGES if name in config):
    stage = config[name]
    stage.seed = config.seed
    stage.num_devices = config.num_devices
    stage.mixed_precision = config.mixed_precision
    stage.distributed = config.distributed
  config.synthesize.cyclegan_workdir = str(workdir / "cyclegan")
  config.synthesize.output = str(pairs)
  for name in (name for name in SRN_STAGES if name in config):
    config[name].data.test.kind = "paired_folder"
    config[name].data.test.path = str(pairs)
    config[name].data.test.split = "test"
  config.srn.data.train.kind = "paired_folder"
  config.srn.data.train.path = str(pairs)
  config.srn.data.train.split = "train"
  # The baseline sees exactly ours' training faces, blurred by random camera-shake kernels.
  config.srn_kernel.data.train.kind = "kernel_blurred"
  config.srn_kernel.data.train.base = dict(kind="folder", path=str(pairs / "train" / "sharp"))
  if "srn_oracle" in config:  # the same faces again, through the test sets' blur process
    config.srn_oracle.data.train.base = dict(kind="folder", path=str(pairs / "train" / "sharp"))
  evaluation = config.evaluate
  evaluation.test_sets.synthesized.path = str(pairs)
  evaluation.test_sets.synthesized.split = "test"
  # Without a base of its own, the kernel-blurred test set blurs the held-out sharp faces.
  if "kernel_blurred" in evaluation.test_sets and not evaluation.test_sets.kernel_blurred.base:
    evaluation.test_sets.kernel_blurred.base = dict(kind="folder",
                                                   path=str(pairs / "test" / "sharp"))
  for method in evaluation.methods.values():
    if method.kind == "cyclegan":
      method.workdir = str(workdir / "cyclegan")
    elif method.kind == "srn" and not method.workdir:
      method.workdir = str(workdir / method.get("stage", "srn"))
  return config


def run_pipeline(config: ml_collections.ConfigDict, workdir: pathlib.Path):
  from faceblur.train import cyclegan, srn, synthesize  # noqa: PLC0415

  unknown = [stage for stage in config.stages if stage not in STAGES]
  if unknown:
    raise ConfigError(f"config.stages has unknown stage {unknown[0]!r}; use {', '.join(STAGES)}")
  config = wire(config, workdir)
  started = time.perf_counter()
  report = None
  for stage in config.stages:
    print(f"\n=== {stage} ===", flush=True)
    if stage == "cyclegan":
      cyclegan.train_and_evaluate(config.cyclegan, workdir / "cyclegan")
    elif stage == "synthesize":
      if synthesize.is_complete(workdir / "pairs"):
        print(f"Pairs already complete in {workdir / 'pairs'}", flush=True)
      else:
        synthesize.synthesize(config.synthesize, workdir)
    elif stage in SRN_STAGES:
      if stage not in config:
        raise ConfigError(f"config.stages lists {stage!r}, which this config does not define")
      srn.train_and_evaluate(config[stage], workdir / stage)
    elif stage == "evaluate":
      from faceblur.evaluate import evaluation  # noqa: PLC0415

      report = evaluation.evaluate(config.evaluate, workdir / "evaluation")
  if report:
    for set_name, quality in ((name, entry["quality"])
                              for name, entry in report["test_sets"].items()):
      if "blurred" in quality and "ours" in quality:
        gain = quality["ours"]["psnr"] - quality["blurred"]["psnr"]
        print(f"Ours on {set_name}: PSNR {quality['blurred']['psnr']:.2f} dB (blurred) -> "
              f"{quality['ours']['psnr']:.2f} dB (restored), {gain:+.2f} dB; SSIM "
              f"{quality['blurred']['ssim']:.4f} -> {quality['ours']['ssim']:.4f}", flush=True)
  minutes = (time.perf_counter() - started) / 60
  print(f"\nPipeline finished in {minutes:.1f} min. Everything is under {workdir}:", flush=True)
  for name in ("cyclegan/samples", "pairs", *SRN_STAGES, "evaluation/report.md"):
    if (workdir / name).exists():
      print(f"  {workdir / name}", flush=True)
  return report
