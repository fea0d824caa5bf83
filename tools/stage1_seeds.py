"""Ours's labels over several stage-1 runs, with G's EMA weights and with its trained ones.

One stage-1 run decides ours's demo figures (README, "Four stage-1 runs"), so a statement
about how stage 1 should be trained needs several runs. For each seed this

1. trains the demo's stage 1 (`configs/demo.py:no_oracle`, stage 1 only, `--config.seed`),
   keeping an EMA of G and F (`--ema_decay`) and a checkpoint every `--sample_every` steps;
   its sampler selects a step label-free by the EMA weights' blur realism;
2. selects a step label-free again by the trained weights' realism (`tools/rescore_stage1.py`);
3. makes ours's labels with each selection and trains the demo's SRN on them
   (`tools/stage1_validation_gain.py`);
4. scores both SRNs on the validation faces (camera photos of the stage-1 blurred domain's
   people, with their ground truth; never a test face).

The table gives, per run and selection, the step, its MMD², G's kernels' median RMS radius
and ours's validation gain with its 95 % interval over the faces; the EMA's gain minus the
trained weights' paired over the faces; and, over the runs, the mean of each column with
Student's t 95 % interval (the run is the unit: the faces' intervals do not cover a
second run). Every step resumes: what a folder already holds is not redone.

  python tools/stage1_seeds.py --seeds=0,1,2,3,4 --workdir=runs/stage1_seeds
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
SELECTIONS = ("ema", "params")  # the EMA weights' selection, the trained weights'


def run(*arguments: str, log: pathlib.Path) -> None:
  """A tool or main.py in a child process (each parses its own flags), output to `log`."""
  with log.open("w") as stream:
    subprocess.run([sys.executable, *arguments], cwd=ROOT, stdout=stream,
                   stderr=subprocess.STDOUT, check=True)


def selection(workdir: pathlib.Path, weights: str) -> dict:
  """The run's own selection (EMA) or its rescore with the trained weights."""
  folder = workdir / "cyclegan" if weights == "ema" else workdir / "rescored_params"
  return json.loads((folder / cyclegan.SELECTION_FILE).read_text())


def prepare(seed: int, workdir: pathlib.Path) -> None:
  stage1 = workdir / "cyclegan"
  final = FLAGS.stage1_steps
  if not any(entry["step"] == final for entry in
             (selection(workdir, "ema")["steps"] if (stage1 / cyclegan.SELECTION_FILE).exists()
              else [])):
    every = FLAGS.sample_every
    run("main.py", "--config=configs/demo.py:no_oracle", f"--workdir={workdir}",
        "--config.stages=('cyclegan',)", f"--config.seed={seed}",
        f"--config.cyclegan.num_train_steps={final}",
        f"--config.cyclegan.ema_decay={FLAGS.ema_decay}",
        f"--config.cyclegan.sample_every_steps={every}",
        f"--config.cyclegan.checkpoint_every_steps={every}",
        f"--config.cyclegan.keep_checkpoint_every_steps={every}", log=workdir / "stage1.log")
  if not (workdir / "rescored_params" / cyclegan.SELECTION_FILE).exists():
    run("tools/rescore_stage1.py", str(stage1), "--weights=params",
        f"--out={workdir / 'rescored_params'}", log=workdir / "rescore.log")
  for weights in SELECTIONS:
    srn = srn_workdir(workdir, weights)
    if not (srn / "checkpoints").is_dir():
      run("tools/stage1_validation_gain.py", f"--stage1={stage1}",
          f"--steps={selection(workdir, weights)['selected_step']}", f"--weights={weights}",
          f"--workdir={workdir / 'labels'}", log=workdir / f"labels_{weights}.log")


def srn_workdir(workdir: pathlib.Path, weights: str) -> pathlib.Path:
  """stage1_validation_gain.py's SRN folder for this selection."""
  step = selection(workdir, weights)["selected_step"]
  return workdir / "labels" / stage1_validation_gain.label_folder(step, weights) / "srn"


def median_radius(workdir: pathlib.Path, weights: str) -> float:
  step = selection(workdir, weights)["selected_step"]
  _, kernels, _ = kernel_spread.generator_kernels(str(workdir / "cyclegan"), 1000, step,
                                                  use_ema=weights == "ema")
  return float(np.median(kernel_spread.spread(kernels)[:, 2]))


def main(argv):
  del argv
  root = pathlib.Path(FLAGS.workdir)
  seeds = [int(seed) for seed in FLAGS.seeds]
  blurred, sharp = validation_gain.validation_pairs()
  print("| seed | selection | step | MMD² | G's kernels, median RMS radius px | ours's "
        "validation gain dB [95 % CI] | EMA minus trained [95 % CI] |")
  print("|---|---|---|---|---|---|---|")
  means = {weights: [] for weights in SELECTIONS}
  for seed in seeds:
    workdir = root / f"seed{seed}"
    workdir.mkdir(parents=True, exist_ok=True)
    prepare(seed, workdir)
    gains = {weights: validation_gain.gains(Restorer(srn_workdir(workdir, weights)), blurred,
                                            sharp) for weights in SELECTIONS}
    for weights in SELECTIONS:
      chosen = selection(workdir, weights)
      entry = {e["step"]: e for e in chosen["steps"]}[chosen["selected_step"]]
      difference = "" if weights != "ema" else intervals.paired_difference(
          gains["ema"], gains["params"]).format()
      name = "EMA weights" if weights == "ema" else "trained weights"
      print(f"| {seed} | {name} | {chosen['selected_step']} | {entry['realism/mmd2']:.3f} | "
            f"{median_radius(workdir, weights):.2f} | "
            f"{intervals.paired_difference(gains[weights], 0 * gains[weights]).format()} | "
            f"{difference} |", flush=True)
      means[weights].append(float(gains[weights].mean()))
  if len(seeds) < 2:
    return
  differences = np.subtract(means["ema"], means["params"])
  print(f"\nOver {len(seeds)} runs, mean and Student's t 95 % interval: EMA weights "
        f"{intervals.mean_over_runs(means['ema']).format()} dB, trained weights "
        f"{intervals.mean_over_runs(means['params']).format()} dB, EMA minus trained "
        f"{intervals.mean_over_runs(differences).format()} dB; standard deviation over runs "
        f"{np.std(means['ema'], ddof=1):.2f} against {np.std(means['params'], ddof=1):.2f} dB.")


if __name__ == "__main__":
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Stage-1 seeds (the pipeline's --config.seed).")
  flags.DEFINE_string("workdir", "runs/stage1_seeds", "One folder per seed.")
  flags.DEFINE_float("ema_decay", 0.99, "Stage 1's EMA decay.")
  flags.DEFINE_integer("sample_every", 100, "Stage 1's sample (and selection) interval.")
  flags.DEFINE_integer("stage1_steps", 800, "Stage 1's training steps (the demo's).")
  app.run(main)
