"""Stage 1's checkpoint is selected without labels: by blur realism on held-out real blurred
photos of the training people, never on a test set."""

import numpy as np

from configs import demo
from faceblur.data import factory
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
