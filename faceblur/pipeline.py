"""The whole method in a row (the `pipeline` job): each stage in its own sub-folder.

  <workdir>/cyclegan     stage 1 checkpoints, samples, logs
  <workdir>/pairs        the synthesised (blurred, sharp) pairs, train/ and test/
  <workdir>/srn          stage 2 on the synthesised pairs ("ours")
  <workdir>/srn_kernel   the baseline: stage 2 on the same sharp faces, kernel-blurred
  <workdir>/srn_oracle   optional (`configs/demo.py:oracle`): stage 2 on the test blur's own
                         process, the ceiling of the stage-2 budget
  <workdir>/unsharp      optional (the demo): a stand-in for another codebase's outputs,
                         read back by a `folder` method
  <workdir>/evaluation   Tables 1 and 2, figures, per-image CSV

A stage is a sub-config named in `config.stages`, run by its own `job` in `<workdir>/<name>`.
The config declares how the stages connect and `wire` applies that one rule, so the wired
sub-configs are plain stand-alone job configs. Re-running resumes: finished stages are
skipped, interrupted ones resume.
"""

import pathlib
import time
from typing import Any

import ml_collections

from faceblur.errors import ConfigError
from faceblur.evaluate import TRAINED_METHOD_KINDS

# The jobs a pipeline stage may run; a stage is a sub-config named in `config.stages`.
STAGE_JOBS = ("cyclegan", "synthesize", "srn", "unsharp_outputs", "evaluate")
PAIRS = "pairs"  # the synthesis stage's output folder, under the workdir
# What a data source spec's `reads` may name (see `wire`): the synthesised pairs (a paired
# folder whose `split` picks train/ or test/), or their sharp faces of the spec's `split`
# (the `base` of a source that blurs them another way).
READS = ("pairs", "pairs_sharp")
_RUN_KEYS = ("seed", "num_devices", "mixed_precision", "distributed")


def _wire_source(spec: dict[str, Any], where: str, pairs: pathlib.Path) -> None:
  reads = spec.pop("reads")
  if reads == "pairs":
    spec["path"] = str(pairs)
  elif reads == "pairs_sharp":
    spec["base"] = dict(kind="folder", path=str(pairs / spec.get("split", "train") / "sharp"))
  elif reads:
    raise ConfigError(f"{where}.reads={reads!r} is not one of {', '.join(READS)}")


def _wire_sources(tree: dict[str, Any], where: str, pairs: pathlib.Path) -> None:
  """Every source spec under `tree` that declares `reads` gets the folder it names."""
  if "reads" in tree:
    _wire_source(tree, where, pairs)
  for key, value in tree.items():
    if isinstance(value, dict):
      _wire_sources(value, f"{where}.{key}", pairs)


def _wire_method(method: dict[str, Any], where: str, workdir: pathlib.Path) -> None:
  """A method's `stage` names the sub-folder whose checkpoint it restores with (a `folder`
  method's: whose files it reads); a `workdir` or `path` set by hand wins. A trained kind that
  names neither is refused before anything trains."""
  if method.get("kind") == "folder":
    if method.get("stage") and not method.get("path"):
      method["path"] = str(workdir / method["stage"])
    return
  if method.get("workdir"):
    return
  if method.get("stage"):
    method["workdir"] = str(workdir / method["stage"])
  elif method.get("kind") in TRAINED_METHOD_KINDS:
    raise ConfigError(f"{where}.stage is empty: name the pipeline stage whose checkpoint this "
                      f"{method['kind']} method restores with (or set its workdir)")


def wire(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """A copy of `config` whose stages read each other's outputs under `workdir`, by one rule
  that the config drives and that names no stage:

  - each stage gets the pipeline's run settings (seed, devices, precision, distribution);
  - the synthesis stage reads stage 1's checkpoint from the stage its `cyclegan_stage` names
    and writes the pairs to `<workdir>/pairs`;
  - a data source spec with `reads` ('pairs' or 'pairs_sharp', `READS`) reads that product
    of the synthesis (its `reads` key is removed: the wired stage is a plain job config);
  - an evaluation method with a `stage` restores with `<workdir>/<stage>`'s checkpoint (a
    `folder` method reads that stage's files).
  """
  tree = config.to_dict()
  pairs = workdir / PAIRS
  for name, stage in tree.items():
    if not isinstance(stage, dict) or "job" not in stage:
      continue
    stage.update({key: tree[key] for key in _RUN_KEYS if key in tree})
    if "cyclegan_stage" in stage:  # the synthesis: its stage 1, and where its pairs go
      stage["cyclegan_workdir"] = str(workdir / stage.pop("cyclegan_stage"))
      stage["output"] = str(pairs)
    _wire_sources(stage, name, pairs)
    for method_name, method in stage.get("methods", {}).items():
      _wire_method(method, f"{name}.methods.{method_name}", workdir)
  return ml_collections.ConfigDict(tree)


def run_pipeline(config: ml_collections.ConfigDict, workdir: pathlib.Path):
  from faceblur.train import cyclegan, srn, synthesize  # noqa: PLC0415

  for stage in config.stages:
    sub_config = config.get(stage)
    if not isinstance(sub_config, ml_collections.ConfigDict) or sub_config.get("job") not in \
        STAGE_JOBS:
      raise ConfigError(f"config.stages lists {stage!r}, which this config does not define as a "
                        f"stage (a sub-config whose job is one of {', '.join(STAGE_JOBS)})")
  config = wire(config, workdir)
  trained_srns = [stage for stage in config.stages if config[stage].job == "srn"]
  started = time.perf_counter()
  report = None
  stage_minutes = {}
  for stage in config.stages:
    print(f"\n=== {stage} ===", flush=True)
    stage_started = time.perf_counter()
    job = config[stage].job
    if job == "cyclegan":
      cyclegan.train_and_evaluate(config[stage], workdir / stage)
    elif job == "synthesize":
      if synthesize.is_complete(workdir / PAIRS):
        print(f"Pairs already complete in {workdir / PAIRS}", flush=True)
      else:
        synthesize.synthesize(config[stage], workdir)
    elif job == "srn":
      srn.train_and_evaluate(config[stage], workdir / stage)
    elif job == "unsharp_outputs":
      from faceblur.evaluate import stand_in  # noqa: PLC0415

      stand_in.write_unsharp_outputs(config[stage], workdir / stage)
    else:
      from faceblur.evaluate import evaluation  # noqa: PLC0415

      report = evaluation.evaluate(config[stage], workdir / "evaluation")
    stage_minutes[stage] = (time.perf_counter() - stage_started) / 60
  if report:
    for set_name, quality in ((name, entry["quality"])
                              for name, entry in report["test_sets"].items()):
      if "blurred" in quality and "ours" in quality:
        gain = quality["ours"]["psnr"] - quality["blurred"]["psnr"]
        print(f"Ours on {set_name}: PSNR {quality['blurred']['psnr']:.2f} dB (blurred) -> "
              f"{quality['ours']['psnr']:.2f} dB (restored), {gain:+.2f} dB; SSIM "
              f"{quality['blurred']['ssim']:.4f} -> {quality['ours']['ssim']:.4f}", flush=True)
  minutes = (time.perf_counter() - started) / 60
  print(f"\nPipeline finished in {minutes:.1f} min ("
        + ", ".join(f"{stage} {spent:.1f}" for stage, spent in stage_minutes.items())
        + f"). Everything is under {workdir}:", flush=True)
  for name in ("cyclegan/samples", PAIRS, *trained_srns, "evaluation/report.md"):
    if (workdir / name).exists():
      print(f"  {workdir / name}", flush=True)
  return report
