"""How far the demo's stage 2 can get on the camera's blur, as a function of its budget.

The oracle of `configs/demo.py:oracle` is the demo's SRN trained on pairs made by the very
camera that blurs the `camera_blurred` test set: no stage 1 can give ours better labels, so
its PSNR gain bounds what ours can reach with the same network, steps and learning rate.
This tool trains that SRN alone (no stage 1, no synthesis: its sharp faces are the synthesis
source's, all of them, where the pipeline's oracle sees the 80 % synthesis keeps for training)
for each (learning rate, steps) asked for, and scores the finest estimate on the demo's
`camera_blurred` test faces as the evaluation does (PSNR on RGB in [0, 1], whole 64 px faces).

  python tools/oracle_budget.py --learning_rates=3e-4,1e-3 --steps=400,1600 \
    --workdir=runs/oracle_budget

One JSON line per run, then a table. Each run resumes in its own sub-folder of --workdir.
"""

import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from configs import common  # noqa: E402
from configs import demo as demo_config  # noqa: E402
from faceblur import metrics  # noqa: E402
from faceblur.data import factory  # noqa: E402
from faceblur.images import to_float  # noqa: E402
from faceblur.train import srn  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Flags of the command line only: tools/world_sweep.py imports this module too."""
  flags.DEFINE_list("learning_rates", ["3e-4"], "Adam's initial learning rates to try.")
  flags.DEFINE_list("steps", ["400"], "Training steps to try (the demo trains 400).")
  flags.DEFINE_string("workdir", "runs/oracle_budget", "One sub-folder per run.")


def oracle_config(learning_rate: float, steps: int, max_shake: float | None = None):
  """The demo's oracle SRN, on the synthesis source's sharp faces through the test camera.

  `max_shake` (default: the demo's camera) changes the camera of the training pairs and of
  the returned `camera_blurred` test set together.
  """
  demo = demo_config.get_config("oracle")
  max_shake = demo_config.CAMERA_SHAKE if max_shake is None else max_shake
  config = demo.srn_oracle
  config.data.train = common.source(
      "camera_blurred", base=demo.synthesize.source.to_dict(), seed=config.data.train.seed,
      max_shake=max_shake)
  config.data.test = common.source("folder", path="")  # scored below, not during training
  config.optimizer.learning_rate = learning_rate
  config.num_train_steps = steps
  config.checkpoint_every_steps = steps
  config.log_every_steps = max(1, steps // 8)
  test_spec = demo.evaluate.test_sets.camera_blurred
  test_spec.max_shake = max_shake
  return config, test_spec


def score(config, state, test_spec) -> dict:
  """Mean PSNR of the blurred and restored `camera_blurred` faces against their ground truth,
  and the per-face gains (restored minus blurred, dB) under `gains_db`."""
  test = factory.make_paired_source(test_spec, image_size=64)
  restore = srn.make_restore_fn(srn.make_networks(config)[srn.NETWORK])
  blurred_psnr, restored_psnr = [], []
  for index in range(len(test)):
    pair = test[index]
    blurred, sharp = to_float(pair["blurred"])[None], to_float(pair["sharp"])[None]
    blurred_psnr.append(float(metrics.psnr(blurred, sharp)[0]))
    restored_psnr.append(float(metrics.psnr(restore(state.deblurrer, blurred), sharp)[0]))
  return {"blurred_psnr": round(float(np.mean(blurred_psnr)), 3),
          "restored_psnr": round(float(np.mean(restored_psnr)), 3),
          "gain_db": round(float(np.mean(restored_psnr) - np.mean(blurred_psnr)), 3),
          "gains_db": [r - b for r, b in zip(restored_psnr, blurred_psnr, strict=True)]}


def main(argv):
  del argv
  rows = []
  for learning_rate in map(float, FLAGS.learning_rates):
    for steps in map(int, FLAGS.steps):
      config, test_spec = oracle_config(learning_rate, steps)
      started = time.perf_counter()
      workdir = pathlib.Path(FLAGS.workdir) / f"lr{learning_rate:g}_{steps}"
      state = srn.train_and_evaluate(config, workdir)
      scores = score(config, state, test_spec)
      del scores["gains_db"]
      row = {"learning_rate": learning_rate, "steps": steps,
             "train_s": round(time.perf_counter() - started, 1), **scores}
      print(json.dumps(row), flush=True)
      rows.append(row)
  print("\n| learning rate | steps | camera_blurred PSNR blurred -> oracle | gain dB | train s |")
  print("|---|---|---|---|---|")
  for row in rows:
    print(f"| {row['learning_rate']:g} | {row['steps']} | {row['blurred_psnr']:.2f} -> "
          f"{row['restored_psnr']:.2f} | {row['gain_db']:+.2f} | {row['train_s']} |")


if __name__ == "__main__":
  define_flags()
  app.run(main)
