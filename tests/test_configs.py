"""The named config variants are what their docstrings say they reproduce."""

import importlib
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx
from helpers import load_tool

import configs
from configs import cyclegan as cyclegan_config
from configs import pipeline as pipeline_config
from configs import srn as srn_config
from faceblur.train import srn


def _parameter_count(config) -> int:
  make = srn.module_factory(config)
  state = jax.eval_shape(lambda: nnx.state(make(rngs=nnx.Rngs(0)), nnx.Param))
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state))


def test_srn_defaults_follow_the_official_training():
  config = srn_config.get_config()
  assert config.optimizer.lstm_grad_clip_norm == 0.0  # defined but never enabled there
  assert not config.data.random_flip                  # one shared random crop only
  assert _parameter_count(config) == 8_061_411


def test_srn_paper_code_is_the_colour_model_without_lstm():
  config = srn_config.get_config("paper_code")
  assert not config.model.use_lstm and config.model.channels == 3
  assert _parameter_count(config) == 6_881_251
  both = pipeline_config.get_config("paper_code")
  assert not both.srn.model.use_lstm and not both.srn_kernel.model.use_lstm


def test_cyclegan_paper_code_is_the_papers_stage_one():
  reference, paper = cyclegan_config.get_config(), cyclegan_config.get_config("paper_code")
  assert (reference.loss.real_label, reference.loss.identity_weight) == (1.0, 0.5)
  assert (paper.loss.real_label, paper.loss.identity_weight, paper.batch_size) == (0.9, 0.0, 1)
  assert paper.data.load_size == paper.data.crop_size == 256 and not paper.data.random_flip
  assert paper.loss.cycle_weight == reference.loss.cycle_weight == 10.0


CONFIG_FILES = sorted(path.stem for path in pathlib.Path(configs.__file__).parent.glob("*.py")
                      if path.stem not in ("__init__", "common"))


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_config_file_refuses_a_mistyped_argument_naming_itself(name):
  """A typo (`celeba` for `celeb_a`) must not run the defaults in silence."""
  module = importlib.import_module(f"configs.{name}")
  with pytest.raises(ValueError, match=f"^unknown configs/{name}.py argument 'papercode'; "
                                       "choose [^\n]+$"):
    module.get_config("papercode")
  module.get_config()  # the default argument is accepted


def test_demo_oracle_trains_a_third_srn_on_the_test_blur_and_evaluates_it(tmp_path):
  from configs import demo
  from faceblur import pipeline

  config = pipeline.wire(demo.get_config("oracle"), tmp_path)
  assert config.stages[-3:] == ("srn_oracle", "unsharp", "evaluate")
  oracle, baseline = config.srn_oracle, config.srn_kernel
  # The baseline's network, budget and faces; the blur of the camera_blurred test set.
  assert oracle.model.to_dict() == baseline.model.to_dict()
  assert oracle.num_train_steps == baseline.num_train_steps
  assert oracle.data.train.base.to_dict() == baseline.data.train.base.to_dict()
  assert oracle.data.train.kind == "camera_blurred"
  assert oracle.data.train.max_shake == config.evaluate.test_sets.camera_blurred.max_shake
  assert oracle.data.train.seed != config.evaluate.test_sets.camera_blurred.seed
  assert config.evaluate.methods.oracle.workdir == str(tmp_path / "srn_oracle")
  assert "srn_oracle" in demo.get_config()  # the oracle runs by default
  assert "srn_oracle" not in demo.get_config("no_oracle")
  with pytest.raises(ValueError, match="unknown configs/demo.py argument 'oracl'"):
    demo.get_config("oracl")


@pytest.mark.parametrize("name,arg", [("demo", ""), ("study", ""), ("study", "stage1=paper"),
                                      ("study", "demo_stage1")])
def test_every_srn_row_gets_the_same_stage2_budget(name, arg):
  """The oracle bounds ours only at ours's budget: the study once left its oracle at the demo's
  400 steps while ours and the kernel baseline trained 1000."""
  from configs import demo
  config = importlib.import_module(f"configs.{name}").get_config(arg)
  stages = demo.stage2_names(config)
  assert stages == ("srn", "srn_kernel", "srn_oracle")
  budget = lambda stage: (stage.num_train_steps, stage.batch_size, stage.data.crop_size,  # noqa: E731
                          stage.optimizer.to_dict(), stage.model.to_dict())
  assert len({repr(budget(config[stage])) for stage in stages}) == 1


def test_the_study_with_the_demos_stage1_differs_from_the_study_in_stage1_only():
  """`study.py:demo_stage1` is the stage-1 budget ablation: the demo's stage 1, so a demo
  workdir's stage 1 resumes as trained, and the study's everything else."""
  from configs import demo, study

  ablation, full = study.get_config("demo_stage1"), study.get_config()
  assert ablation.cyclegan.to_dict() == demo.get_config().cyclegan.to_dict()
  assert ablation.cyclegan.to_dict() != full.cyclegan.to_dict()
  for name in ablation.stages:
    if name != "cyclegan":
      assert ablation[name].to_dict() == full[name].to_dict(), name


def test_the_study_selects_stage1_by_the_rule_chosen_at_its_own_scale():
  """The demo's per-image falloff distance was adopted on demo-scale seeds only; at the
  study's scale the validation faces favoured MMD² with the falloff's guard."""
  from configs import demo, study

  assert demo.get_config().cyclegan.selection_score == "realism/falloff_w1"
  assert study.get_config().cyclegan.selection_score == "realism/mmd2_no_wider"
  assert study.get_config("stage1=paper").cyclegan.selection_score == "realism/mmd2_no_wider"


def test_oracle_budget_tool_trains_the_demos_oracle_alone():
  from configs import demo

  tool = load_tool("oracle_budget")
  config, test_spec = tool.oracle_config(1e-3, 1600)
  demo_config = demo.get_config("oracle")
  oracle = demo_config.srn_oracle
  # The demo's oracle SRN, at the learning rate and steps asked for ...
  assert config.model.to_dict() == oracle.model.to_dict()
  assert (config.optimizer.learning_rate, config.num_train_steps) == (1e-3, 1600)
  assert config.data.crop_size == oracle.data.crop_size and config.batch_size == oracle.batch_size
  # ... on the synthesis source's sharp faces through the test camera, scored on camera_blurred.
  train = config.data.train
  assert train.kind == "camera_blurred" and train.seed == oracle.data.train.seed
  assert train.max_shake == demo.CAMERA_SHAKE
  assert train.base.to_dict() == demo_config.synthesize.source.to_dict()
  assert test_spec.to_dict() == demo_config.evaluate.test_sets.camera_blurred.to_dict()


@pytest.mark.parametrize("arg", ["", "oracle", "no_oracle"])
def test_the_demos_comparisons_name_its_methods(arg):
  """Every comparison the pipeline configs ask for parses against their methods (a renamed
  method would otherwise fail only at the end of a whole pipeline run)."""
  from configs import demo
  from faceblur.evaluate import comparisons

  evaluation = demo.get_config(arg).evaluate
  pairs = comparisons.parse(evaluation.comparisons, ["blurred", *evaluation.methods])
  expected = [("ours", "blurred"), ("ours", "srn_kernel")]
  if arg != "no_oracle":  # the oracle runs by default
    expected += [("ours", "oracle"), ("oracle", "blurred")]
  assert pairs == expected
  assert pipeline_config.get_config().evaluate.comparisons == ("ours-blurred", "ours-srn_kernel")


def test_the_wired_demo_keeps_every_method_on_its_own_checkpoint_and_out_of_the_test_faces(
    tmp_path):
  """Guards the pipeline's wiring (issue 26, break 4): ours and each baseline restore with
  their own stage's checkpoint, ours trains on the synthesised pairs' train split, and no
  stage trains on a test face (the held-out pairs or the test people)."""
  from configs import demo
  from faceblur import pipeline

  config = pipeline.wire(demo.get_config(), tmp_path)
  methods = config.evaluate.methods
  assert {name: methods[name].workdir for name in ("ours", "srn_kernel", "oracle", "cyclegan")} \
      == {"ours": str(tmp_path / "srn"), "srn_kernel": str(tmp_path / "srn_kernel"),
          "oracle": str(tmp_path / "srn_oracle"), "cyclegan": str(tmp_path / "cyclegan")}
  pairs = tmp_path / "pairs"
  assert (config.srn.data.train.path, config.srn.data.train.split) == (str(pairs), "train")
  for name in ("srn", "srn_kernel", "srn_oracle"):
    assert (config[name].data.test.path, config[name].data.test.split) == (str(pairs), "test")
  for name in ("srn_kernel", "srn_oracle"):  # ours' training faces, blurred otherwise
    assert config[name].data.train.base.path == str(pairs / "train" / "sharp")
  assert config.synthesize.output == str(pairs)
  assert config.evaluate.test_sets.synthesized.split == "test"

  def faces(spec) -> list[dict]:
    spec = spec.to_dict() if hasattr(spec, "to_dict") else spec
    return [spec] + (faces(spec["base"]) if spec.get("base") else [])

  training = [config.cyclegan.data.sharp, config.cyclegan.data.blurred,
              config.cyclegan.data.blurred_validation, config.synthesize.source,
              *(config[name].data.train for name in ("srn", "srn_kernel", "srn_oracle"))]
  for spec in (face for source in training for face in faces(source)):
    inside = pathlib.Path(spec.get("path") or tmp_path).relative_to(tmp_path)
    assert spec.get("split") != "test" and "test" not in inside.parts, spec


def test_config_arguments_compose_in_any_order_and_refuse_unknown_parts_in_one_line():
  """`celeb_a,paper_code` is CelebA's data with the paper's recipe, in either order; a typo in
  one part, or two parts of one kind, stops in one line naming the file (big_vision's
  `parse_arg`)."""
  from configs import cyclegan, demo, pipeline, srn

  both = cyclegan.get_config("celeb_a,paper_code")
  assert both.to_dict() == cyclegan.get_config("paper_code,celeb_a").to_dict()
  assert both.data.sharp.kind == "celeb_a" and both.data.sharp.to_dict() == (
      cyclegan.get_config("celeb_a").data.sharp.to_dict())
  assert (both.loss.real_label, both.batch_size) == (0.9, 1)
  gopro = srn.get_config("gopro,paper_code")
  assert gopro.data.train.path == "GOPRO_Large/train" and not gopro.model.use_lstm
  row = pipeline.get_config("celeb_a,paper_code")
  assert row.cyclegan.to_dict() == both.to_dict()
  assert row.synthesize.source.kind == "celeb_a" and not row.srn_kernel.model.use_lstm
  assert "srn_oracle" in demo.get_config("tiny,oracle")  # tiny alone leaves it out
  assert demo.get_config("tiny,stage1=paper").cyclegan.variant == "paper"
  for file, module, arg, message in [
      ("cyclegan.py", cyclegan, "celeb_a,papercode",
       "unknown configs/cyclegan.py argument 'papercode' (in 'celeb_a,papercode'); choose "),
      ("pipeline.py", pipeline, "celeb_a,demo",
       "configs/pipeline.py argument 'celeb_a,demo' names both 'celeb_a' and 'demo'"),
      ("demo.py", demo, "tiny,", "unknown configs/demo.py argument '' (in 'tiny,')")]:
    with pytest.raises(ValueError) as raised:
      module.get_config(arg)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value), file


def test_wire_is_one_rule_the_config_drives_for_any_srn_row(tmp_path):
  """Guards `pipeline.wire`'s one rule (issue 26): an SRN row it has never heard of, declared
  only in the config (`reads` on its data, `stage` on its method), is wired as the named ones
  are; a trained method naming no checkpoint is refused in one line (it used to restore from
  the pipeline's root); nothing set by hand is overwritten; the wired stages keep no `reads`."""
  import json

  import ml_collections

  from configs import common, demo, evaluate
  from faceblur import pipeline
  from faceblur.errors import ConfigError

  config = demo.get_config("tiny")
  learned = ml_collections.ConfigDict(config.srn_kernel.to_dict())
  learned.data.train = pipeline_config.reads(
      common.source("camera_blurred", split="train", seed=3), "pairs_sharp")
  config.srn_learned = learned
  config.stages = (*config.stages[:-1], "srn_learned", "evaluate")
  config.evaluate.methods.learned = evaluate.method("srn", stage="srn_learned")
  config.evaluate.methods.by_hand = evaluate.method("srn", workdir="/elsewhere", stage="srn")

  wired = pipeline.wire(config, tmp_path)

  pairs = tmp_path / "pairs"
  assert wired.srn_learned.data.train.base.path == str(pairs / "train" / "sharp")
  assert wired.srn_learned.data.train.kind == "camera_blurred"  # its own blur, kept
  assert (wired.srn_learned.data.test.path, wired.srn_learned.data.test.split) == (
      str(pairs), "test")
  assert wired.evaluate.methods.learned.workdir == str(tmp_path / "srn_learned")
  assert wired.evaluate.methods.by_hand.workdir == "/elsewhere"
  assert wired.srn_learned.seed == config.seed
  assert '"reads"' not in json.dumps(wired.to_dict())

  config.evaluate.methods.nameless = evaluate.method("srn")
  with pytest.raises(ConfigError) as raised:
    pipeline.wire(config, tmp_path)
  assert str(raised.value).startswith("evaluate.methods.nameless.stage is empty: name the "
                                      "pipeline stage whose checkpoint this srn method")
  del config.evaluate.methods["nameless"]
  config.srn_learned.data.train.reads = "pair"
  with pytest.raises(ConfigError, match=r"^srn_learned\.data\.train\.reads='pair' is not one "
                                        "of pairs, pairs_sharp$"):
    pipeline.wire(config, tmp_path)


def test_each_stage1_variant_is_its_switches_over_the_papers_cyclegan():
  """Variants are config switches, not forks: applying one to any stage-1 config sets exactly
  its switches (the others back at the paper's values), and `kernel_blur_plain` is
  `kernel_blur` with the mode-seeking term off and nothing else changed."""
  from configs import cyclegan

  configs = {name: cyclegan.apply_variant(cyclegan.get_config("demo"), name).to_dict()
             for name in cyclegan.VARIANTS}
  paper = cyclegan.get_config("demo").to_dict()
  assert configs["paper"] == paper
  for name, switches in cyclegan.VARIANTS.items():
    for key, value in switches.items():
      group, field = key.split(".")
      assert configs[name][group][field] == value, (name, key)
  # A variant applied over another leaves nothing of the first behind.
  over = cyclegan.apply_variant(cyclegan.apply_variant(cyclegan.get_config("demo"), "kernel_blur"),
                                "paper").to_dict()
  assert over == paper
  plain, kernel = configs["kernel_blur_plain"], configs["kernel_blur"]
  assert plain["loss"] == {**kernel["loss"], "diversity_weight": 0.0}
  assert {**plain, "loss": None, "variant": None} == {**kernel, "loss": None, "variant": None}
