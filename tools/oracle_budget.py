"""How far the demo's stage 2 can get on the camera's blur, as a function of its budget.

The oracle of `configs/demo.py:oracle` is the demo's SRN trained on pairs made by the very
camera that blurs the `camera_blurred` test set: no stage 1 can give ours better labels, so
its PSNR gain bounds what ours can reach with the same network, steps and learning rate.
This tool trains that SRN alone (no stage 1, no synthesis: its sharp faces are the synthesis
source's, all of them, where the pipeline's oracle sees the 80 % synthesis keeps for training)
for each (learning rate, steps, other settings) asked for, and scores the finest estimate as
the evaluation does (PSNR on RGB in [0, 1], whole 64 px faces).

Stage-2 settings are chosen here, so by default the faces scored are a *validation* set:
camera photos of the stage-1 blurred domain's people (`demo.BASE_GROUPS["blurred"]`), never a
test face. `--score_on=test` scores the demo's `camera_blurred` test set instead, as the world
sweep needs (it sizes the world, it chooses no setting of a method).

`--settings` takes runs separated by `;`, each a comma-separated list of `key=value` on the
SRN config (`optimizer.warmup_steps=50,batch_size=8`), and `camera.<field>=value` on the
camera of the training pairs only (`camera.max_contrast=0`: what labels without the camera's
tone curve are worth).

  python tools/oracle_budget.py --learning_rates=3e-4,1e-3 --steps=400,1600 \
    --workdir=runs/oracle_budget
  python tools/oracle_budget.py --settings="camera.jpeg_quality=None;optimizer.warmup_steps=40"

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
from faceblur.evaluate import intervals  # noqa: E402
from faceblur.images import to_float  # noqa: E402
from faceblur.train import srn  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Flags of the command line only: tools/world_sweep.py imports this module too."""
  flags.DEFINE_list("learning_rates", [], "Adam's peak learning rates to try (none: the "
                    "demo's).")
  flags.DEFINE_list("steps", [], "Training steps to try (none: the demo's).")
  flags.DEFINE_string("workdir", "runs/oracle_budget", "One sub-folder per run.")
  flags.DEFINE_enum("score_on", "validation", ["validation", "test"],
                    "validation: camera photos of the blurred domain's people; test: the "
                    "demo's camera_blurred test set (never for choosing a setting).")
  flags.DEFINE_string("settings", "", "Runs separated by ';', each 'key=value,...' (module doc).")


def validation_spec(test_spec):
  """`test_spec` (the demo's camera_blurred) on the stage-1 blurred domain's people."""
  spec = test_spec.copy_and_resolve_references()
  spec.base.split = "blurred"
  spec.seed = test_spec.seed + 1000
  return spec


def apply_settings(config, text: str) -> str:
  """Applies 'key=value,...' to the SRN config (`camera.` keys: its training camera); returns
  a name for the run's folder."""
  import ast  # noqa: PLC0415

  camera = dict(config.data.train.camera or {})
  for item in filter(None, text.split(",")):
    key, _, value = item.partition("=")
    value = ast.literal_eval(value)
    if key.startswith("camera."):
      camera[key.removeprefix("camera.")] = value
      continue
    *groups, field = key.split(".")
    node = config
    for group in groups:
      node = node[group]
    if field not in node:
      raise KeyError(f"unknown SRN config key {key!r}")
    node[field] = value
  if camera:
    config.data.train.camera = camera
  return text.replace("=", "").replace(",", "_").replace("camera.", "cam_") or "default"


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
  demo_rate = demo_config.get_config().srn.optimizer.learning_rate
  for learning_rate in [float(rate) for rate in FLAGS.learning_rates] or [demo_rate]:
    for steps in map(int, FLAGS.steps or [demo_config.get_config().srn.num_train_steps]):
      for settings in FLAGS.settings.split(";"):
        config, test_spec = oracle_config(learning_rate, steps)
        name = apply_settings(config, settings)
        scored_spec = test_spec if FLAGS.score_on == "test" else validation_spec(test_spec)
        started = time.perf_counter()
        workdir = pathlib.Path(FLAGS.workdir) / f"lr{learning_rate:g}_{steps}_{name}"
        state = srn.train_and_evaluate(config, workdir)
        train_s = round(time.perf_counter() - started, 1)
        scores = score(config, state, scored_spec)
        gains = np.asarray(scores.pop("gains_db"))
        gain = intervals.paired_difference(gains, np.zeros(len(gains)))
        # Paired against the first run on the same faces: is this setting better?
        first = gains if not rows else rows[0]["gains"]
        versus_first = intervals.paired_difference(gains, first)
        row = {"learning_rate": learning_rate, "steps": steps, "settings": settings,
               "scored_on": FLAGS.score_on, "train_s": train_s, **scores,
               "gain_interval_db": [round(gain.low, 3), round(gain.high, 3)],
               "minus_first_db": round(versus_first.mean, 3),
               "minus_first_interval_db": [round(versus_first.low, 3),
                                           round(versus_first.high, 3)]}
        print(json.dumps(row), flush=True)
        rows.append({**row, "gains": gains, "gain": gain, "versus_first": versus_first})
  print(f"\n| learning rate | steps | settings | {FLAGS.score_on} PSNR blurred -> oracle | "
        f"gain dB [95 % CI] | minus the first run [95 % CI] | train s |")
  print("|---|---|---|---|---|---|---|")
  for row in rows:
    print(f"| {row['learning_rate']:g} | {row['steps']} | {row['settings'] or '-'} | "
          f"{row['blurred_psnr']:.2f} -> {row['restored_psnr']:.2f} | "
          f"{row['gain'].format()} | {row['versus_first'].format()} | {row['train_s']} |")


if __name__ == "__main__":
  define_flags()
  app.run(main)
