"""Ours's labels over several stage-1 runs, under two label-free selections of its checkpoint.

One stage-1 run decides ours's demo figures (README, "Four stage-1 runs"), so a statement
about how stage 1 should be trained or selected needs several runs. A selection (`SELECTIONS`)
is the weights it scores (G's EMA or its trained weights) and the score whose lowest value
picks the step (MMD² of blur features, or the spectrum's falloff). For each seed this

1. trains the demo's stage 1 (`configs/demo.py:no_oracle`, stage 1 only, `--config.seed`),
   keeping an EMA of G and F (`--ema_decay`) and a checkpoint every `--sample_every` steps;
   its sampler scores the EMA weights at each of them;
2. scores the weights the run's sampler did not, or a run that predates a score, again
   (`tools/rescore_stage1.py`, into `rescored_<weights>`);
3. makes ours's labels with each of the two `--compare`d selections and trains the demo's SRN
   on them (`tools/stage1_validation_gain.py`, `--stage2_steps`);
4. scores both SRNs on the validation faces (camera photos of the stage-1 blurred domain's
   people, with their ground truth; never a test face).

The table gives, per run and selection, the step, its score (MMD² for the rule that guards
it with the falloff's shift), G's kernels' median RMS radius
and ours's validation gain with its 95 % interval over the faces; the first selection's gain
minus the second's, paired over the faces; and, over the runs, the mean of each with
Student's t 95 % interval (the run is the unit: the faces' intervals do not cover a second
run). Every step resumes: what a folder already holds is not redone.

  python tools/stage1_seeds.py --seeds=0,1,2,3,4 --workdir=runs/stage1_seeds
  python tools/stage1_seeds.py --seeds=0,1,2 --compare=ema_falloff,ema --stage2_steps=400
  python tools/stage1_seeds.py --seeds=9,10,11 --compare=ema_no_wider,ema --stage2_steps=400
  python tools/stage1_seeds.py --seeds=15,16,17,18,19,20 --compare=ema_falloff_w1,ema_no_wider \
    --stage2_steps=400
"""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import kernel_spread  # noqa: E402
import numpy as np  # noqa: E402
import stage1_validation_gain  # noqa: E402
import validation_gain  # noqa: E402
from absl import app, flags  # noqa: E402

from faceblur.evaluate import intervals  # noqa: E402
from faceblur.inference.restorer import Restorer  # noqa: E402
from faceblur.train import cyclegan  # noqa: E402

FLAGS = flags.FLAGS
# Each selection by name: the weights it scores and the label-free score that picks its step.
SELECTIONS = {
    "ema": ("ema", "realism/mmd2"),
    "params": ("params", "realism/mmd2"),
    "ema_falloff": ("ema", "realism/falloff"),
    "params_falloff": ("params", "realism/falloff"),
    "ema_no_wider": ("ema", "realism/mmd2_no_wider"),
    "ema_falloff_w1": ("ema", "realism/falloff_w1"),
}
TITLES = {"ema": "EMA weights, MMD²", "params": "trained weights, MMD²",
          "ema_falloff": "EMA weights, falloff", "params_falloff": "trained weights, falloff",
          "ema_no_wider": "EMA weights, MMD² no wider", "ema_falloff_w1": "EMA weights, falloff W1"}
SCORED = ("realism/mmd2", "realism/falloff", "realism/falloff_shift",  # read from one file
          "realism/falloff_w1")


def run(*arguments: str, log: pathlib.Path) -> None:
  """A tool or main.py in a child process (each parses its own flags), output to `log`."""
  with log.open("w") as stream:
    subprocess.run([sys.executable, *arguments], cwd=ROOT, stdout=stream,
                   stderr=subprocess.STDOUT, check=True)


def has_every_score(folder: pathlib.Path, weights: str) -> bool:
  """Whether `folder`'s selection.json scored `weights` with every score of `SCORED`."""
  path = folder / cyclegan.SELECTION_FILE
  if not path.exists():
    return False
  selection = json.loads(path.read_text())
  return (selection.get("weights", "params") == weights
          and all(key in entry for entry in selection["steps"] for key in SCORED))


def scores_folder(workdir: pathlib.Path, weights: str) -> pathlib.Path:
  """Where `weights`' scores of every sample step are: the run's own selection.json for the
  weights its sampler scored, when it holds every score, else `rescored_<weights>`."""
  own = workdir / "cyclegan"
  return own if has_every_score(own, weights) else workdir / f"rescored_{weights}"


def selection(workdir: pathlib.Path, name: str) -> dict:
  """Selection `name` of the run: its scores and the step its score picks."""
  weights, score = SELECTIONS[name]
  chosen = json.loads((scores_folder(workdir, weights) / cyclegan.SELECTION_FILE).read_text())
  return chosen | {"selected_step": cyclegan.selected_step(chosen["steps"], score),
                   "score": score, "weights": weights}


def prepare(seed: int, workdir: pathlib.Path, names: list[str]) -> None:
  stage1 = workdir / "cyclegan"
  final = FLAGS.stage1_steps
  own = stage1 / cyclegan.SELECTION_FILE
  if not own.exists() or not any(entry["step"] == final
                                 for entry in json.loads(own.read_text())["steps"]):
    every = FLAGS.sample_every
    run("main.py", "--config=configs/demo.py:no_oracle", f"--workdir={workdir}",
        "--config.stages=('cyclegan',)", f"--config.seed={seed}",
        f"--config.cyclegan.num_train_steps={final}",
        f"--config.cyclegan.ema_decay={FLAGS.ema_decay}",
        f"--config.cyclegan.sample_every_steps={every}",
        f"--config.cyclegan.checkpoint_every_steps={every}",
        f"--config.cyclegan.keep_checkpoint_every_steps={every}", log=workdir / "stage1.log")
  for weights in sorted({SELECTIONS[name][0] for name in names}):
    folder = scores_folder(workdir, weights)
    if not has_every_score(folder, weights):  # absent, or from before a score was logged
      run("tools/rescore_stage1.py", str(stage1), f"--weights={weights}", f"--out={folder}",
          log=workdir / f"rescore_{weights}.log")
  for name in names:
    srn = srn_workdir(workdir, name, FLAGS.stage2_steps)
    if not (srn / "checkpoints").is_dir():
      chosen = selection(workdir, name)
      run("tools/stage1_validation_gain.py", f"--stage1={stage1}",
          f"--steps={chosen['selected_step']}", f"--weights={chosen['weights']}",
          f"--stage2_steps={FLAGS.stage2_steps}", f"--workdir={workdir / 'labels'}",
          log=workdir / f"labels_{name}.log")


def srn_workdir(workdir: pathlib.Path, name: str, stage2_steps: int = 0) -> pathlib.Path:
  """stage1_validation_gain.py's SRN folder for selection `name` (two selections that pick
  the same step of the same weights share it)."""
  chosen = selection(workdir, name)
  return (workdir / "labels" / stage1_validation_gain.label_folder(
      chosen["selected_step"], chosen["weights"], stage2_steps) / "srn")


def median_radius(workdir: pathlib.Path, name: str) -> float:
  chosen = selection(workdir, name)
  _, kernels, _ = kernel_spread.generator_kernels(
      str(workdir / "cyclegan"), 1000, chosen["selected_step"], use_ema=chosen["weights"] == "ema")
  return float(np.median(kernel_spread.spread(kernels)[:, 2]))


def main(argv):
  del argv
  root = pathlib.Path(FLAGS.workdir)
  seeds = [int(seed) for seed in FLAGS.seeds]
  names = FLAGS.compare
  if len(names) != 2 or not set(names) <= set(SELECTIONS) or names[0] == names[1]:
    raise app.UsageError(f"--compare takes two of {sorted(SELECTIONS)}")
  blurred, sharp = validation_gain.validation_pairs()
  print(f"| seed | selection | step | its score | G's kernels, median RMS radius px | ours's "
        f"validation gain dB [95 % CI] | {TITLES[names[0]]} minus {TITLES[names[1]]} [95 % CI] |")
  print("|---|---|---|---|---|---|---|")
  means = {name: [] for name in names}
  for seed in seeds:
    workdir = root / f"seed{seed}"
    workdir.mkdir(parents=True, exist_ok=True)
    prepare(seed, workdir, names)
    gains = {name: validation_gain.gains(
        Restorer(srn_workdir(workdir, name, FLAGS.stage2_steps)), blurred, sharp)
        for name in names}
    for name in names:
      chosen = selection(workdir, name)
      entry = {e["step"]: e for e in chosen["steps"]}[chosen["selected_step"]]
      difference = "" if name != names[0] else intervals.paired_difference(
          gains[names[0]], gains[names[1]]).format()
      print(f"| {seed} | {TITLES[name]} | {chosen['selected_step']} | "
            f"{entry[cyclegan.SELECTION_SCORES[chosen['score']].keys[0]]:.4f} | "
            f"{median_radius(workdir, name):.2f} | "
            f"{intervals.paired_difference(gains[name], 0 * gains[name]).format()} | "
            f"{difference} |", flush=True)
      means[name].append(float(gains[name].mean()))
  if len(seeds) < 2:
    return
  differences = np.subtract(means[names[0]], means[names[1]])
  print(f"\nOver {len(seeds)} runs, mean and Student's t 95 % interval: {TITLES[names[0]]} "
        f"{intervals.mean_over_runs(means[names[0]]).format()} dB, {TITLES[names[1]]} "
        f"{intervals.mean_over_runs(means[names[1]]).format()} dB, the difference "
        f"{intervals.mean_over_runs(differences).format()} dB; standard deviation over runs "
        f"{np.std(means[names[0]], ddof=1):.2f} against {np.std(means[names[1]], ddof=1):.2f} dB.")


if __name__ == "__main__":
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Stage-1 seeds (the pipeline's --config.seed).")
  flags.DEFINE_string("workdir", "runs/stage1_seeds", "One folder per seed.")
  flags.DEFINE_float("ema_decay", 0.99, "Stage 1's EMA decay.")
  flags.DEFINE_integer("sample_every", 100, "Stage 1's sample (and selection) interval.")
  flags.DEFINE_integer("stage1_steps", 800, "Stage 1's training steps (the demo's).")
  flags.DEFINE_list("compare", ["ema", "params"], "Two selections (SELECTIONS), the first "
                    "minus the second in the last column.")
  flags.DEFINE_integer("stage2_steps", 0, "Ours's SRN steps (0: the demo's).")
  app.run(main)
