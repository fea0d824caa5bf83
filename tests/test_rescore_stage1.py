"""tools/rescore_stage1.py: stage 1's label-free selection, rerun with either weights."""

import json

import pytest
from helpers import load_tool

from configs import demo
from faceblur.train import cyclegan


def test_rescoring_the_ema_reproduces_the_runs_own_selection_and_the_trained_weights_differ(
    tmp_path):
  tool = load_tool("rescore_stage1")
  config = demo.get_config("tiny").cyclegan
  config.ema_decay = 0.5
  config.num_train_steps = 4
  config.checkpoint_every_steps = config.sample_every_steps = 2
  config.data.sharp.count = config.data.blurred.count = 16
  cyclegan.train_and_evaluate(config, tmp_path / "cyclegan")
  own = json.loads((tmp_path / "cyclegan" / cyclegan.SELECTION_FILE).read_text())
  assert own["weights"] == "ema" and [entry["step"] for entry in own["steps"]] == [2, 4]

  rescored = tool.rescore(tmp_path / "cyclegan", "ema", tmp_path / "ema")
  assert rescored["weights"] == "ema" and rescored["selected_step"] == own["selected_step"]
  for mine, theirs in zip(rescored["steps"], own["steps"], strict=True):
    assert mine["step"] == theirs["step"]
    assert mine["realism/mmd2"] == pytest.approx(theirs["realism/mmd2"], abs=1e-6)
    assert mine["hidden/blurred_psnr"] == pytest.approx(theirs["hidden/blurred_psnr"], abs=1e-4)

  by_falloff = tool.rescore(tmp_path / "cyclegan", "ema", tmp_path / "falloff",
                            score="realism/falloff")
  assert by_falloff["score"] == "realism/falloff"
  assert by_falloff["selected_step"] == min(
      own["steps"], key=lambda entry: entry["realism/falloff"])["step"]

  trained = tool.rescore(tmp_path / "cyclegan", "params", tmp_path / "params")
  assert trained["weights"] == "params"
  assert json.loads((tmp_path / "params" / cyclegan.SELECTION_FILE).read_text()) == trained
  assert trained["steps"][-1]["hidden/blurred_psnr"] != pytest.approx(
      own["steps"][-1]["hidden/blurred_psnr"], abs=1e-3)
