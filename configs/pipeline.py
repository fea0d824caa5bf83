"""The whole method in a row: stage 1, synthesis, stage 2 (ours and the kernel baseline),
evaluation. Each step runs in its own sub-folder of the workdir and is skipped when its
output is already complete, so a re-run resumes where the last one stopped.

The config says how the stages connect, and `faceblur.pipeline.wire` applies it: a data
source's `reads` names the synthesis output it reads ('pairs', or 'pairs_sharp' for the pairs'
sharp faces of its split), an evaluation method's `stage` the sub-folder of its checkpoint.
"""

import ml_collections

from configs import common, cyclegan, evaluate, srn, synthesize


def reads(spec: ml_collections.ConfigDict, product: str) -> ml_collections.ConfigDict:
  """`spec`, declared to read `product` of the pipeline (`faceblur.pipeline.READS`)."""
  spec.reads = product
  return spec


def get_config(arg: str = "folders") -> ml_collections.ConfigDict:
  """`arg`: stage 1's data, and `paper_code` for the paper's repository's recipes, as in
  configs/cyclegan.py (`:celeb_a,paper_code`)."""
  data, recipe = common.parse_argument("pipeline.py", arg, cyclegan.DATA_ARGUMENTS,
                                       cyclegan.RECIPE_ARGUMENTS)
  config = common.run_settings(ml_collections.ConfigDict(), job="pipeline")
  config.stages = ("cyclegan", "synthesize", "srn", "srn_kernel", "evaluate")
  config.cyclegan = cyclegan.get_config(arg)
  config.synthesize = synthesize.get_config("celeb_a" if data == "celeb_a" else "folder")
  config.synthesize.cyclegan_stage = "cyclegan"
  # `paper_code` trains both SRNs as the paper's repository does (colour, no ConvLSTM).
  srn_arg = "synthesized,paper_code" if recipe == "paper_code" else "synthesized"
  config.srn = srn.get_config(srn_arg)  # ours: the synthesised pairs' train split
  reads(config.srn.data.train, "pairs")
  reads(config.srn.data.test, "pairs")
  # Baseline "SRN trained on kernel-synthesised blur": ours' training faces, blurred with
  # random camera-shake kernels instead of the CycleGAN.
  config.srn_kernel = srn.get_config(srn_arg)
  config.srn_kernel.data.train = reads(
      common.source("kernel_blurred", split="train", max_blur_length=31.0), "pairs_sharp")
  reads(config.srn_kernel.data.test, "pairs")
  config.evaluate = evaluate.get_config()
  reads(config.evaluate.test_sets.synthesized, "pairs")
  config.evaluate.methods.cyclegan = evaluate.method("cyclegan", label="CycleGAN (Zhu et al.)",
                                                     stage="cyclegan")
  config.evaluate.methods.srn_kernel = evaluate.method(
      "srn", label="SRN, kernel blur (Tao et al.)", stage="srn_kernel")
  config.evaluate.methods.ours = evaluate.method(
      "srn", label="Ours (SRN on CycleGAN blur)", stage="srn")
  # Table 2's second row: the same test faces blurred by random camera-shake kernels.
  config.evaluate.test_sets.kernel_blurred = reads(common.source(
      "kernel_blurred", split="test", seed=1, max_blur_length=31.0), "pairs_sharp")
  config.evaluate.real_blurred = config.cyclegan.data.blurred
  # The paper's claims as paired differences: ours restores, and beats the kernel baseline.
  config.evaluate.comparisons = ("ours-blurred", "ours-srn_kernel")
  return config
