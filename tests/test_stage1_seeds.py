"""tools/stage1_seeds.py: each seed's two selections, and where their labels' SRNs are found."""

import json

from helpers import load_tool

from faceblur.train import cyclegan


def test_each_selection_finds_the_srn_that_stage1_validation_gain_trained_for_it(tmp_path):
  seeds = load_tool("stage1_seeds")
  gain = load_tool("stage1_validation_gain")
  for folder, step in (("cyclegan", 300), ("rescored_params", 800)):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / cyclegan.SELECTION_FILE).write_text(json.dumps(
        {"selected_step": step, "steps": [{"step": step, "realism/mmd2": 0.01}]}))
  assert seeds.selection(tmp_path, "ema")["selected_step"] == 300  # the run's own
  assert seeds.selection(tmp_path, "params")["selected_step"] == 800  # the rescore's
  assert seeds.srn_workdir(tmp_path, "ema") == tmp_path / "labels" / "step_300_ema" / "srn"
  assert seeds.srn_workdir(tmp_path, "params") == \
      tmp_path / "labels" / "step_800_params" / "srn"
  assert gain.label_folder(400) == "step_400"
  assert gain.label_folder(400, "ema", 2000) == "step_400_ema_srn2000"
