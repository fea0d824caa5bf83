"""Does the label-free realism score pick the stage-1 checkpoint that makes the best labels?

For each stage-1 checkpoint asked for (a demo stage-1 workdir and its sample steps), this
synthesises the demo's pairs with that checkpoint, trains the demo's SRN on them (ours, at the
demo's budget) and scores it on the **validation** faces of `tools/oracle_budget.py` (camera
photos of the stage-1 blurred domain's people, with their ground truth; never a test face),
with paired 95 % intervals against the first checkpoint. The ground truth makes this a check
of the selection rule in the demo's world, not a way to select: a user with real photos has
no such faces. Each checkpoint resumes in its own sub-folder of --workdir.

  python tools/stage1_validation_gain.py --stage1=runs/demo/cyclegan --steps=400,600,800
  python tools/stage1_validation_gain.py --stage1=runs/study/cyclegan --stage1_config=study
  python tools/stage1_validation_gain.py --stage1=runs/study/cyclegan --stage1_config=study \
    --steps=6000 --stage2_steps=2000    # ours at the study's stage-2 budget
"""

import json
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import numpy as np  # noqa: E402
import validation_gain  # noqa: E402
from absl import app, flags  # noqa: E402

from configs import demo as demo_config  # noqa: E402
from configs import study as study_config  # noqa: E402
from faceblur import pipeline  # noqa: E402
from faceblur.evaluate import intervals  # noqa: E402
from faceblur.inference.restorer import Restorer  # noqa: E402
from faceblur.train import cyclegan  # noqa: E402
from faceblur.train.checkpointing import Checkpointer  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Flags of the command line only, so that tests can import the module beside other tools."""
  flags.DEFINE_string("stage1", None, "A demo stage-1 workdir (checkpoints, selection.json).")
  flags.DEFINE_list("steps", [], "Its sample steps to try (default: every scored step).")
  flags.DEFINE_string("workdir", "runs/stage1_validation_gain", "One sub-folder per step.")
  flags.DEFINE_string("demo", "no_oracle", "configs/demo.py's argument for SRN and synthesis.")
  flags.DEFINE_enum("stage1_config", "demo", ["demo", "study"], "The config --stage1 was "
                    "trained with (its networks must match); synthesis and SRN stay the demo's.")
  flags.DEFINE_enum("weights", None, ["params", "ema"], "G's weights for the labels "
                    "(default: those the run's selection scored).")
  flags.DEFINE_integer("stage2_steps", 0, "Ours's training steps (0: the demo's); its folder "
                       "is then step_<step>_srn<steps>, so budgets sit side by side.")


def label_folder(step: int, weights: str | None = None, stage2_steps: int = 0) -> str:
  """The sub-folder of --workdir for one checkpoint's labels (`tools/stage1_seeds.py` reads it)."""
  return (f"step_{step}" + (f"_{weights}" if weights else "")
          + (f"_srn{stage2_steps}" if stage2_steps else ""))


def labels_from(stage1: pathlib.Path, step: int, workdir: pathlib.Path) -> pathlib.Path:
  """Ours trained on the pairs of stage-1 checkpoint `step`; returns its SRN workdir."""
  if not (workdir / "cyclegan").exists():
    shutil.copytree(stage1, workdir / "cyclegan")
    selection_path = workdir / "cyclegan" / cyclegan.SELECTION_FILE
    selection = json.loads(selection_path.read_text())
    selection["selected_step"] = step  # synthesis reads the step and the weights from here
    if FLAGS.weights:
      selection["weights"] = FLAGS.weights
    selection["rule"] = "set by tools/stage1_validation_gain.py"
    selection_path.write_text(json.dumps(selection))
  config = demo_config.get_config(FLAGS.demo)
  if FLAGS.stage1_config == "study":
    config.cyclegan = study_config.get_config().cyclegan
  # The run's own EMA setting (a checkpoint with an EMA resumes only with one).
  config.cyclegan.ema_decay = Checkpointer(stage1 / "checkpoints").saved_config(step).get(
      "ema_decay", 0.0)
  if FLAGS.stage2_steps:
    config.srn.num_train_steps = FLAGS.stage2_steps
    config.srn.checkpoint_every_steps = FLAGS.stage2_steps // 2  # a midpoint to score too
  config.stages = ("cyclegan", "synthesize", "srn")
  pipeline.run_pipeline(config, workdir)
  return workdir / "srn"


def main(argv):
  del argv
  if not FLAGS.stage1:
    raise app.UsageError("--stage1=<a demo stage-1 workdir> is required")
  stage1 = pathlib.Path(FLAGS.stage1)
  entries = {entry["step"]: entry for entry in
             json.loads((stage1 / cyclegan.SELECTION_FILE).read_text())["steps"]}
  steps = [int(step) for step in FLAGS.steps] or sorted(
      step for step, entry in entries.items() if "realism/mmd2" in entry)
  blurred, sharp = validation_gain.validation_pairs()
  rows = []
  for step in steps:
    folder = label_folder(step, FLAGS.weights, FLAGS.stage2_steps)
    restorer = Restorer(labels_from(stage1, step, pathlib.Path(FLAGS.workdir) / folder))
    gains = validation_gain.gains(restorer, blurred, sharp)
    rows.append((step, gains))
    print(json.dumps({"step": step, "gain_db": round(float(gains.mean()), 3)}), flush=True)
  print("\n| stage-1 step | realism MMD² (validation photos) | precision | G(s) PSNR | "
        "ours's validation gain dB [95 % CI] | minus the first step's [95 % CI] |")
  print("|---|---|---|---|---|---|")
  for step, gains in rows:
    entry = entries.get(step, {})
    precision = entry.get("realism/precision")
    print(f"| {step} | {entry.get('realism/mmd2', float('nan')):.4f} | "
          f"{'-' if precision is None else f'{precision:.2f}'} | "
          f"{entry.get('hidden/blurred_psnr', float('nan')):.2f} | "
          f"{intervals.paired_difference(gains, np.zeros(len(gains))).format()} | "
          f"{intervals.paired_difference(gains, rows[0][1]).format()} |")


if __name__ == "__main__":
  define_flags()
  app.run(main)
