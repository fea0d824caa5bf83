"""Stage 1's checkpoint is selected without labels: by blur realism on held-out real blurred
photos of the training people, never on a test set."""

import json

import numpy as np
import pytest

from configs import demo
from faceblur import blur_realism
from faceblur.data import factory
from faceblur.errors import ConfigError
from faceblur.train import cyclegan


def test_the_step_with_the_lowest_realism_mmd_is_selected(tmp_path):
  cyclegan.record_selection(tmp_path, 400, {"realism/mmd2": 0.09, "hidden/cycle_psnr": 30.0})
  cyclegan.record_selection(tmp_path, 800, {"realism/mmd2": 0.05, "hidden/cycle_psnr": 25.0})
  cyclegan.record_selection(tmp_path, 1200, {"realism/mmd2": 0.07})
  assert cyclegan.read_selected_step(tmp_path) == 800
  cyclegan.record_selection(tmp_path, 1200, {"realism/mmd2": 0.01})  # a resumed run rescores
  assert cyclegan.read_selected_step(tmp_path) == 1200
  assert cyclegan.selected_step([{"step": 5, "hidden/cycle_psnr": 1.0}]) is None
  assert cyclegan.read_selected_step(tmp_path / "absent") is None


def test_the_configured_score_selects_and_selection_json_names_it(tmp_path):
  scores = {400: {"realism/mmd2": 0.02, "realism/falloff": 0.009},
            800: {"realism/mmd2": 0.03, "realism/falloff": 0.002}}
  for name, expected in (("realism/mmd2", 400), ("realism/falloff", 800)):
    workdir = tmp_path / name.replace("/", "_")
    workdir.mkdir()
    for step, step_scores in scores.items():
      cyclegan.record_selection(workdir, step, step_scores, score=name)
    selection = json.loads((workdir / cyclegan.SELECTION_FILE).read_text())
    assert selection["selected_step"] == expected and selection["score"] == name
    assert selection["rule"] == cyclegan.SELECTION_SCORES[name].description


def test_mmd2_no_wider_passes_over_steps_that_blur_wider_than_the_photos():
  entries = [{"step": 100, "realism/mmd2": 0.01, "realism/falloff_shift": -0.05},
             {"step": 200, "realism/mmd2": 0.04, "realism/falloff_shift": 0.10},
             {"step": 300, "realism/mmd2": 0.03, "realism/falloff_shift": 0.00}]
  assert cyclegan.selected_step(entries, "realism/mmd2") == 100
  assert cyclegan.selected_step(entries, "realism/mmd2_no_wider") == 300
  all_wider = [dict(entry, **{"realism/falloff_shift": shift})
               for entry, shift in zip(entries, (-0.3, -0.01, -0.2), strict=True)]
  assert cyclegan.selected_step(all_wider, "realism/mmd2_no_wider") == 200  # the least wide
  assert cyclegan.selected_step([{"step": 5, "realism/mmd2": 0.0}],
                                "realism/mmd2_no_wider") is None  # before the shift was logged


def test_falloff_w1_selects_the_step_whose_per_image_attenuation_is_closest():
  entries = [{"step": 100, "realism/mmd2": 0.01, "realism/falloff_w1": 0.15},
             {"step": 200, "realism/mmd2": 0.04, "realism/falloff_w1": 0.06},
             {"step": 300, "realism/mmd2": 0.03}]  # scored before the distance was logged
  assert cyclegan.selected_step(entries, "realism/falloff_w1") == 200
  assert cyclegan.selected_step(entries[2:], "realism/falloff_w1") is None


def test_an_unknown_selection_score_is_a_config_error_before_training():
  stage1 = demo.get_config("tiny").cyclegan
  stage1.selection_score = "realism/psnr"
  with pytest.raises(ConfigError, match="selection_score='realism/psnr'"):
    cyclegan.check_selection_checkpoints(stage1)


def test_selection_reads_no_test_set(monkeypatch):
  config = demo.get_config("tiny")
  stage1 = config.cyclegan
  read = []
  make_source = factory.make_source

  def recording(spec, **kwargs):
    read.append(spec.to_dict())
    return make_source(spec, **kwargs)

  monkeypatch.setattr(factory, "make_source", recording)
  sharp_source = make_source(stage1.data.sharp, image_size=stage1.data.load_size)
  networks = cyclegan.make_networks(stage1)
  cyclegan._sampler(stage1, networks, sharp_source, None, None)
  assert read == [stage1.data.blurred_validation.to_dict()]
  validation = read[0]
  # Photos of the stage-1 blurred domain's people, other photos than its training ones ...
  assert validation["kind"] == "demo_blurred" and validation["split"] == "blurred"
  assert validation["seed"] != stage1.data.blurred.seed
  # ... and none of the evaluation's sets, whose faces are the held-out people's.
  evaluated = [spec.to_dict() for spec in config.evaluate.test_sets.values()]
  evaluated.append(config.evaluate.real_blurred.to_dict())
  for spec in evaluated:
    assert spec != validation
    assert spec.get("split") != "blurred" and (spec.get("base") or {}).get("split") != "blurred"
  assert np.all([spec["split"] == "test" or (spec["base"] or {}).get("split") == "test"
                 for spec in evaluated if spec["kind"] != "tfds_pairs"
                 and spec["kind"] != "folder"])


def test_every_sample_steps_checkpoint_is_kept(tmp_path):
  """max_to_keep would delete the early steps the selection may have chosen."""
  from faceblur.train.checkpointing import Checkpointer

  config = demo.get_config("tiny").cyclegan
  config.sample_every_steps = config.checkpoint_every_steps = 2
  cyclegan.check_selection_checkpoints(config)  # keep_checkpoint_every_steps follows sampling
  checkpointer = Checkpointer(tmp_path, max_to_keep=1,
                              keep_period=config.keep_checkpoint_every_steps)
  for step in (1, 2, 3, 4, 5):
    checkpointer.save(step, {"w": np.full(2, step, np.float32)}, config, force=True)
  checkpointer.wait_until_finished()
  checkpointer.close()
  assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [2, 4, 5]


def test_selection_needs_its_sample_steps_checkpointed():
  config = demo.get_config("tiny").cyclegan
  config.sample_every_steps, config.checkpoint_every_steps = 300, 200
  with pytest.raises(ConfigError, match="sample_every_steps=300 must be a multiple of "
                                        "checkpoint_every_steps=200"):
    cyclegan.check_selection_checkpoints(config)
  config.checkpoint_every_steps = 300
  config.keep_checkpoint_every_steps = 0
  with pytest.raises(ConfigError, match="keep_checkpoint_every_steps=0"):
    cyclegan.check_selection_checkpoints(config)


def test_the_hidden_channel_diagnostic_scores_hidden_count_faces_and_the_realism_all(tmp_path):
  """F(G(sharp)) is scored on the first `hidden_count` faces (three passes of F each sample
  step); G's blur is scored on every validation face."""
  from unittest import mock  # noqa: PLC0415

  import jax  # noqa: PLC0415

  from faceblur import metrics  # noqa: PLC0415
  from faceblur.data import input_pipeline  # noqa: PLC0415
  from faceblur.train import state as state_lib  # noqa: PLC0415

  stage1 = demo.get_config("tiny").cyclegan
  stage1.hidden_count = 6
  sharp_source = factory.make_source(stage1.data.sharp, image_size=stage1.data.load_size)
  networks = cyclegan.make_networks(stage1)
  params = {name: state_lib.init_params(make, jax.random.key(index)) for index, (name, make)
            in enumerate(cyclegan.module_factories(stage1).items()) if name in ("g", "f")}
  logged = {}
  writer = mock.Mock(write_scalars=lambda step, scalars: logged.update(scalars))
  hook = cyclegan._sampler(stage1, networks, sharp_source, tmp_path, writer)
  hook(2, mock.Mock(params=params, ema=None))

  transform = input_pipeline.cyclegan_transform(stage1.data.load_size, stage1.data.crop_size,
                                                train=False)
  sharp = cyclegan._transformed(sharp_source, transform, stage1.data.validation_count)
  codes, noise_keys = cyclegan.generator_randomness(stage1, jax.random.key(stage1.seed),
                                                    len(sharp))
  blurred = np.asarray(networks["g"].apply(params["g"], sharp, codes, noise_keys), np.float32)
  cycled = np.asarray(networks["f"].apply(params["f"], blurred[:6]), np.float32)

  def mean_psnr(images, truth):
    return float(np.mean(np.asarray(metrics.psnr(np.clip(images, 0, 1), truth))))

  assert len(sharp) == 16
  assert logged["hidden/cycle_psnr"] == pytest.approx(mean_psnr(cycled, sharp[:6]), abs=1e-3)
  assert logged["hidden/blurred_psnr"] == pytest.approx(mean_psnr(blurred, sharp), abs=1e-3)
  assert "realism/mmd2" in logged
  validation = factory.make_source(stage1.data.blurred_validation, image_size=stage1.data.load_size)
  real = cyclegan._transformed(validation, transform, stage1.data.validation_count)
  assert logged["realism/falloff"] == pytest.approx(blur_realism.falloff_distance(
      blur_realism.falloff_profile(real), blur_realism.falloff_profile(blurred)), rel=1e-3)
  assert logged["realism/falloff_shift"] == pytest.approx(blur_realism.falloff_shift(
      blur_realism.falloff_profile(real), blur_realism.falloff_profile(blurred)), rel=1e-3)
  assert logged["realism/falloff_w1"] == pytest.approx(blur_realism.falloff_wasserstein(
      blur_realism.per_image_falloff(real), blur_realism.per_image_falloff(blurred)), rel=1e-3)


def test_with_an_ema_the_sampler_scores_the_ema_weights_and_synthesis_uses_them(
    tmp_path, monkeypatch):
  """Selection scores the weights that will make the labels: G's and F's EMA when the run
  keeps one. selection.json says so, and synthesis then loads the EMA weights."""
  from unittest import mock  # noqa: PLC0415

  import jax  # noqa: PLC0415

  from faceblur import metrics  # noqa: PLC0415
  from faceblur.data import input_pipeline  # noqa: PLC0415
  from faceblur.train import state as state_lib  # noqa: PLC0415
  from faceblur.train import synthesize  # noqa: PLC0415

  stage1 = demo.get_config("tiny").cyclegan
  sharp_source = factory.make_source(stage1.data.sharp, image_size=stage1.data.load_size)
  networks = cyclegan.make_networks(stage1)
  factories = cyclegan.module_factories(stage1)

  def weights(seed):
    return {name: state_lib.init_params(factories[name], jax.random.key(seed + index))
            for index, name in enumerate(("g", "f"))}

  trained, ema = weights(0), weights(10)
  logged = {}
  writer = mock.Mock(write_scalars=lambda step, scalars: logged.update(scalars))
  hook = cyclegan._sampler(stage1, networks, sharp_source, tmp_path, writer)
  hook(2, mock.Mock(params=trained, ema=object(), ema_params=ema))

  transform = input_pipeline.cyclegan_transform(stage1.data.load_size, stage1.data.crop_size,
                                                train=False)
  sharp = cyclegan._transformed(sharp_source, transform, stage1.data.validation_count)
  codes, noise_keys = cyclegan.generator_randomness(stage1, jax.random.key(stage1.seed),
                                                    len(sharp))

  def blurred_psnr(g):
    blurred = np.asarray(networks["g"].apply(g, sharp, codes, noise_keys), np.float32)
    return float(np.mean(np.asarray(metrics.psnr(np.clip(blurred, 0, 1), sharp))))

  assert blurred_psnr(ema["g"]) != pytest.approx(blurred_psnr(trained["g"]), abs=1e-2)
  assert logged["hidden/blurred_psnr"] == pytest.approx(blurred_psnr(ema["g"]), abs=1e-3)
  assert cyclegan.read_selected_weights(tmp_path) == "ema"
  assert cyclegan.read_selected_weights(tmp_path / "absent") == "params"

  loaded = {}

  def load(workdir, job, **kwargs):
    loaded.update(kwargs)
    raise KeyboardInterrupt  # enough: the weights asked for are known

  monkeypatch.setattr(synthesize, "load_trained", load)
  config = demo.get_config("tiny").synthesize
  config.cyclegan_workdir = str(tmp_path)
  with pytest.raises(KeyboardInterrupt):
    synthesize.synthesize(config, tmp_path)
  assert loaded == {"step": 2, "use_ema": True}
