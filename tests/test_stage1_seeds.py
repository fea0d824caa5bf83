"""tools/stage1_seeds.py: each seed's selections, and where their labels' SRNs are found."""

import json

from helpers import load_tool

from faceblur.train import cyclegan


def _write(folder, weights, scores):
  folder.mkdir()
  (folder / cyclegan.SELECTION_FILE).write_text(json.dumps(
      {"selected_step": None, "weights": weights,
       "steps": [{"step": step, "realism/mmd2": mmd2, "realism/falloff": falloff,
                  "realism/falloff_shift": shift, "realism/falloff_w1": w1}
                 for step, (mmd2, falloff, shift, w1) in scores.items()]}))


def test_each_selection_picks_by_its_score_and_finds_the_srn_trained_for_it(tmp_path):
  seeds = load_tool("stage1_seeds")
  gain = load_tool("stage1_validation_gain")
  _write(tmp_path / "cyclegan", "ema",
         {300: (0.01, 0.009, -0.1, 0.05), 600: (0.02, 0.002, 0.05, 0.08)})
  _write(tmp_path / "rescored_params", "params",
         {300: (0.05, 0.001, 0.0, 0.1), 800: (0.03, 0.004, 0.0, 0.1)})
  picks = {name: seeds.selection(tmp_path, name)["selected_step"] for name in seeds.SELECTIONS}
  assert picks == {"ema": 300, "ema_falloff": 600, "params": 800, "params_falloff": 300,
                   "ema_no_wider": 600, "ema_falloff_w1": 300}
  assert seeds.srn_workdir(tmp_path, "ema") == tmp_path / "labels" / "step_300_ema" / "srn"
  assert seeds.srn_workdir(tmp_path, "params", 400) == \
      tmp_path / "labels" / "step_800_params_srn400" / "srn"
  assert gain.label_folder(400) == "step_400"
  assert gain.label_folder(400, "ema", 2000) == "step_400_ema_srn2000"


def test_a_run_without_the_falloff_score_is_read_from_its_rescore(tmp_path):
  """Runs that predate a score are rescored into rescored_<weights>; the run's own file is
  read only when it holds every score."""
  seeds = load_tool("stage1_seeds")
  (tmp_path / "cyclegan").mkdir()
  (tmp_path / "cyclegan" / cyclegan.SELECTION_FILE).write_text(json.dumps(
      {"selected_step": 300, "weights": "ema", "steps": [{"step": 300, "realism/mmd2": 0.01}]}))
  assert seeds.scores_folder(tmp_path, "ema") == tmp_path / "rescored_ema"
  assert not seeds.has_every_score(tmp_path / "cyclegan", "ema")
  _write(tmp_path / "rescored_ema", "ema",
         {300: (0.01, 0.009, 0.0, 0.1), 600: (0.02, 0.002, 0.0, 0.1)})
  assert seeds.has_every_score(tmp_path / "rescored_ema", "ema")
  assert not seeds.has_every_score(tmp_path / "rescored_ema", "params")
  assert seeds.selection(tmp_path, "ema_falloff")["selected_step"] == 600
