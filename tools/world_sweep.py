"""Sizes the demo's world before any stage 1 is trained on it: the camera's strength.

For each camera shake (`max_shake`, a fraction of the face's side) this records what the
world offers a method, with no method of ours or the kernel baseline involved:

* the blurred PSNR of the demo's `camera_blurred` test faces at that shake;
* both detectors' success rates (the evaluation's detectors, thresholds, padding and
  any-face rule) on the sharp and the blurred test faces;
* the oracle's gain: the demo's SRN, at the demo's stage-2 budget, trained on the camera's
  own blur of the synthesis faces (`tools/oracle_budget.py`), with its paired 95 % bootstrap
  interval over the test faces.

The rule (issue 24, fixed before the sweep was run): the demo's camera is the shake with the
largest oracle gain among those where blur lowers dlib HOG's detection rate by at least
`--min_detection_drop` (0.15). The chosen shake goes into `configs/demo.py` by hand, with the
table in README.

  python tools/world_sweep.py --shakes=0.1,0.15,0.2,0.3,0.4 --workdir=runs/world_sweep
"""

import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import numpy as np  # noqa: E402
import oracle_budget  # noqa: E402
from absl import app, flags  # noqa: E402

from configs import demo as demo_config  # noqa: E402
from faceblur import detectors, metrics  # noqa: E402
from faceblur.data import factory  # noqa: E402
from faceblur.evaluate import intervals  # noqa: E402
from faceblur.evaluate.evaluation import detect_faces  # noqa: E402
from faceblur.images import to_float  # noqa: E402
from faceblur.train import srn  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("shakes", ["0.1", "0.15", "0.2", "0.3", "0.4"], "Camera shakes to try.")
flags.DEFINE_float("min_detection_drop", 0.15,
                   "The least drop of dlib HOG's rate, sharp to blurred, a chosen world needs.")
flags.DEFINE_string("workdir", "runs/world_sweep", "One sub-folder per shake.")
flags.DEFINE_bool("train_oracle", True, "False: detection and PSNR only (seconds).")


def detection_rates(test_spec, evaluation) -> dict:
  """Both detectors' any-face rates on the sharp and the blurred test faces."""
  pairs = factory.make_paired_source(test_spec, image_size=64)
  sharp = [to_float(pairs[i]["sharp"]) for i in range(len(pairs))]
  blurred = [to_float(pairs[i]["blurred"]) for i in range(len(pairs))]
  rates = {}
  for key, name, threshold in (
      ("mtcnn", evaluation.detector, evaluation.detector_threshold),
      ("dlib_hog", evaluation.second_detector, evaluation.second_detector_threshold)):
    detector = detectors.make_detector(name, threshold=threshold)
    rates[key] = {column: float(np.mean(detect_faces(detector, images,
                                               evaluation.detector_padding)[0]))
                  for column, images in (("sharp", sharp), ("blurred", blurred))}
  return rates


def sweep_row(max_shake: float, workdir: pathlib.Path, train_oracle: bool) -> dict:
  config, test_spec = oracle_budget.oracle_config(
      demo_config.get_config().srn.optimizer.learning_rate,
      demo_config.get_config().srn.num_train_steps, max_shake=max_shake)
  row = {"max_shake": max_shake, "steps": config.num_train_steps,
         "detection": detection_rates(test_spec, demo_config.get_config().evaluate)}
  if train_oracle:
    started = time.perf_counter()
    state = srn.train_and_evaluate(config, workdir / f"shake{max_shake:g}")
    scores = oracle_budget.score(config, state, test_spec)
    gains = scores.pop("gains_db")
    gain = intervals.paired_difference(gains, np.zeros(len(gains)))
    row.update(scores, gain_low=round(gain.low, 3), gain_high=round(gain.high, 3))
    row["train_s"] = round(time.perf_counter() - started, 1)
  else:
    pairs = factory.make_paired_source(test_spec, image_size=64)
    row["blurred_psnr"] = round(float(np.mean([
        metrics.psnr(to_float(pairs[i]["blurred"])[None], to_float(pairs[i]["sharp"])[None])[0]
        for i in range(len(pairs))])), 3)
  return row


def choose(rows: list[dict], min_drop: float) -> dict | None:
  """The rule: the largest oracle gain among shakes where dlib HOG drops by >= `min_drop`."""
  eligible = [row for row in rows if "gain_db" in row and
              row["detection"]["dlib_hog"]["sharp"] - row["detection"]["dlib_hog"]["blurred"]
              >= min_drop - 1e-9]
  return max(eligible, key=lambda row: row["gain_db"], default=None)


def table(rows: list[dict]) -> str:
  lines = ["| max_shake | blurred PSNR | oracle gain [95 % CI] | MTCNN sharp -> blurred | "
           "dlib HOG sharp -> blurred | oracle train s |", "|---|---|---|---|---|---|"]
  for row in rows:
    mtcnn, hog = row["detection"]["mtcnn"], row["detection"]["dlib_hog"]
    gain = (f"{row['gain_db']:+.2f} [{row['gain_low']:+.2f}, {row['gain_high']:+.2f}]"
            if "gain_db" in row else "-")
    lines.append(f"| {row['max_shake']:g} | {row['blurred_psnr']:.2f} | {gain} | "
                 f"{mtcnn['sharp']:.2f} -> {mtcnn['blurred']:.2f} | "
                 f"{hog['sharp']:.2f} -> {hog['blurred']:.2f} | {row.get('train_s', '-')} |")
  return "\n".join(lines)


def main(argv):
  del argv
  workdir = pathlib.Path(FLAGS.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  rows = []
  for max_shake in map(float, FLAGS.shakes):
    row = sweep_row(max_shake, workdir, FLAGS.train_oracle)
    print(json.dumps(row), flush=True)
    rows.append(row)
  (workdir / "sweep.json").write_text(json.dumps(rows, indent=2))
  print("\n" + table(rows))
  chosen = choose(rows, FLAGS.min_detection_drop)
  print("\nrule: largest oracle gain where dlib HOG drops by >= "
        f"{FLAGS.min_detection_drop:g}: " +
        (f"max_shake={chosen['max_shake']:g}" if chosen else "no shake qualifies"))


if __name__ == "__main__":
  app.run(main)
