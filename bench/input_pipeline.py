"""Does the input pipeline starve the train step? Steps/s with real data vs a constant batch.

  python bench/input_pipeline.py                      # the configs' shapes: 256 px crops,
                                                      # SRN batch 16, CycleGAN batch 4
  python bench/input_pipeline.py --size=64 --srn_batch=4 --cyclegan_batch=1 --steps=15
  python bench/input_pipeline.py --modes= --pipeline_batches=200   # the pipeline alone

Each stage's own `train_and_evaluate` builds everything (sources over folders of PNG faces,
`make_dataset`, `iterate` with the config's `num_workers`, the jitted train step); only the
loop is replaced, by one that runs the real loop body (`next` batch, `shard_batch`, step)
for --steps steps in each of three modes, taking turns (see `time_modes`):

  pipeline  batches from the input pipeline
  host      one constant numpy batch, through `shard_batch` every step (the copy to the
            device stays in)
  device    one constant batch already on the device

and reports steps/s and pipeline/device (issue 5's target: >= 95 %), and the pipeline's
own rate with no step (its headroom). `wait s` is the time
spent in `next(batches)`; JAX dispatches steps asynchronously, so it overlaps the step
running on the device and only part of it is lost time.
"""

import gc
import pathlib
import sys
import tempfile
import time
from unittest import mock

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench.common import machine, print_json, print_table, quiet_logs  # noqa: E402
from configs import common as common_config  # noqa: E402
from configs import cyclegan as cyclegan_config  # noqa: E402
from configs import srn as srn_config  # noqa: E402
from faceblur.data import camera_blur, demo, image_io  # noqa: E402
from faceblur.train import cyclegan, loop, partitioning, srn  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("stages", ["srn", "cyclegan"], "Stages to run.")
flags.DEFINE_integer("size", srn_config.get_config().data.crop_size, "Crop size in pixels.")
flags.DEFINE_integer("file_size", 0, "Side of the PNG faces on disk; 0 = CycleGAN's load size "
                     "for --size (286 for 256).")
flags.DEFINE_integer("num_files", 64, "PNG faces per folder (the pipeline cycles over them).")
flags.DEFINE_integer("srn_batch", srn_config.get_config().batch_size, "SRN batch.")
flags.DEFINE_integer("cyclegan_batch", cyclegan_config.get_config().batch_size,
                     "CycleGAN batch.")
flags.DEFINE_integer("num_workers", -1, "Input worker processes; -1 = the config's "
                     f"({srn_config.get_config().num_workers}), 0 = threads.")
flags.DEFINE_integer("warmup", 4, "Untimed pipeline steps before each timed pipeline turn "
                     "(at least the prefetch depth: num_workers x 2).")
flags.DEFINE_integer("steps", 30, "Timed steps per mode, over all rounds.")
flags.DEFINE_integer("rounds", 3, "Turns each mode takes (interleaved).")
flags.DEFINE_integer("pipeline_batches", 100, "Batches drawn from the pipeline alone, with "
                     "no step, to measure its own rate (0 = skip).")
flags.DEFINE_list("modes", ["pipeline", "host", "device"], "Data modes to time.")

TARGET = 0.95


def _load_size(size: int) -> int:
  """CycleGAN's load size for a crop size, in the reference's proportion (286 for 256)."""
  return int(round(size * 286 / 256))


def _write_faces(root: pathlib.Path, side: int, count: int) -> None:
  """PNG folders: sharp/ and blurred/ (aligned kernel-blurred pairs, for SRN's paired folder),
  and unpaired_blurred/ (other faces, blurred, for CycleGAN's blurred domain)."""
  pairs = demo.KernelBlurredPairs(demo.DemoFaces(size=side, count=count, seed=0), seed=0)
  unpaired = camera_blur.CameraBlurredImages(
      demo.DemoFaces(size=side, count=count, seed=1), seed=1)
  for index in range(count):
    pair = pairs[index]
    image_io.save_image(root / "sharp" / f"{index:05d}.png", pair["sharp"])
    image_io.save_image(root / "blurred" / f"{index:05d}.png", pair["blurred"])
    image_io.save_image(root / "unpaired_blurred" / f"{index:05d}.png", unpaired[index]["image"])


def stage_config(stage: str, root: pathlib.Path):
  """The stage's reference config, reading the PNG folders, sized by the flags."""
  if stage == "srn":
    config = srn_config.get_config()
    config.data.train = common_config.source("paired_folder", path=str(root))
    config.data.test = common_config.source("paired_folder", path="")  # no evaluation
    config.batch_size = FLAGS.srn_batch
  else:
    config = cyclegan_config.get_config()
    config.data.sharp = common_config.source("folder", path=str(root / "sharp"))
    config.data.blurred = common_config.source("folder", path=str(root / "unpaired_blurred"))
    config.data.load_size = _load_size(FLAGS.size)
    config.batch_size = FLAGS.cyclegan_batch
  config.data.crop_size = FLAGS.size
  config.num_train_steps = 1 + (FLAGS.warmup * FLAGS.rounds
                                + FLAGS.steps * len(FLAGS.modes))
  if FLAGS.num_workers >= 0:
    config.num_workers = FLAGS.num_workers
  return config


def _run_steps(holder: dict, train_step, next_batch, num_steps: int) -> tuple[float, float]:
  """The loop body of `faceblur.train.loop.train` `num_steps` times; (seconds, wait seconds)."""
  metrics, wait_s = [], 0.0
  start = time.perf_counter()
  for _ in range(num_steps):
    fetch_start = time.perf_counter()
    batch = next_batch()
    wait_s += time.perf_counter() - fetch_start
    holder["state"], step_metrics = train_step(holder["state"], batch)
    metrics.append(step_metrics)
  jax.block_until_ready((holder["state"], metrics))
  return time.perf_counter() - start, wait_s


def time_modes(*, mesh, state, train_step, batches, **unused) -> dict:
  """Stands in for `loop.train`: times the step on pipeline and constant batches.

  The modes take turns, --rounds times, so a change in the machine's load (a shared CPU)
  hits them alike. The pipeline's workers stay up throughout, as in training; once their
  buffers are full they sleep. Each pipeline turn starts with --warmup untimed steps, which
  use up what the workers prefetched while the other modes ran.
  """
  del unused
  holder = {"state": state}
  start = time.perf_counter()
  iterator = batches(0)
  first = next(iterator)
  result = {"first_batch_s": round(time.perf_counter() - start, 2)}
  host_batch = {key: np.array(value) for key, value in first.items()}
  device_batch = partitioning.shard_batch(host_batch, mesh)
  if FLAGS.modes:  # --modes= (none) measures the pipeline alone, skipping the compilation
    compile_s, _ = _run_steps(holder, train_step, lambda: device_batch, 1)
    result["compile_s"] = round(compile_s, 2)
  feeds = {
      "pipeline": lambda: partitioning.shard_batch(next(iterator), mesh),
      "host": lambda: partitioning.shard_batch(host_batch, mesh),
      "device": lambda: device_batch,
  }
  totals = {mode: [0, 0.0, 0.0] for mode in FLAGS.modes}  # steps, seconds, wait seconds
  try:
    for round_index in range(FLAGS.rounds):
      for mode in FLAGS.modes:
        num_steps = (FLAGS.steps * (round_index + 1) // FLAGS.rounds
                     - FLAGS.steps * round_index // FLAGS.rounds)
        if mode == "pipeline":
          _run_steps(holder, train_step, feeds[mode], FLAGS.warmup)
        seconds, wait_s = _run_steps(holder, train_step, feeds[mode], num_steps)
        totals[mode] = [total + part for total, part in
                        zip(totals[mode], (num_steps, seconds, wait_s), strict=True)]
    if FLAGS.pipeline_batches:  # the pipeline alone: its headroom over the step
      start = time.perf_counter()
      for _ in range(FLAGS.pipeline_batches):
        partitioning.shard_batch(next(iterator), mesh)
      result["pipeline_alone_batches_per_s"] = round(
          FLAGS.pipeline_batches / (time.perf_counter() - start), 1)
  finally:
    iterator.close()
    gc.collect()
  for mode, (num_steps, seconds, wait_s) in totals.items():
    result[mode] = {"steps_per_s": num_steps / seconds, "wait_s": wait_s}
  return result | {"state": holder["state"]}


def bench_stage(stage: str, root: pathlib.Path) -> dict:
  config = stage_config(stage, root)
  module = {"srn": srn, "cyclegan": cyclegan}[stage]
  results = {}

  def fake_train(**kwargs):
    results.update(time_modes(**kwargs))
    return results.pop("state")

  with mock.patch.object(loop, "train", fake_train):
    module.train_and_evaluate(config, root / f"run_{stage}")
  row = {"stage": stage, "size": FLAGS.size, "batch": config.batch_size,
         "num_workers": config.num_workers, "first_batch_s": results["first_batch_s"],
         "compile_s": results.get("compile_s", ""),
         "pipeline_alone_batches_per_s": results.get("pipeline_alone_batches_per_s")}
  for mode in FLAGS.modes:
    row[f"{mode}_steps_per_s"] = round(results[mode]["steps_per_s"], 3)
    row[f"{mode}_wait_s"] = round(results[mode]["wait_s"], 2)
  reference = "device" if "device" in FLAGS.modes else "host"
  if "pipeline" in FLAGS.modes and reference in FLAGS.modes:
    ratio = results["pipeline"]["steps_per_s"] / results[reference]["steps_per_s"]
    row["ratio"] = f"{100 * ratio:.1f}% of {reference}"
    row["meets_target"] = ratio >= TARGET
  return row


def main(argv):
  del argv
  quiet_logs()
  print_json({"machine": machine()})
  rows = []
  with tempfile.TemporaryDirectory(prefix="faceblur_bench_pipeline_") as tmp:
    root = pathlib.Path(tmp)
    file_size = FLAGS.file_size or _load_size(FLAGS.size)
    _write_faces(root, file_size, FLAGS.num_files)
    print_json({"data": f"{FLAGS.num_files} PNG faces per folder, {file_size}x{file_size}",
                "steps": FLAGS.steps, "rounds": FLAGS.rounds,
                "warmup_per_round": FLAGS.warmup})
    for stage in FLAGS.stages:
      rows.append(bench_stage(stage, root))
      print_json(rows[-1])
  columns = {"stage": "stage", "size": "size", "batch": "batch", "num_workers": "workers"}
  for mode in FLAGS.modes:
    columns[f"{mode}_steps_per_s"] = f"{mode} steps/s"
  columns |= {"pipeline_wait_s": "pipeline wait s",
              "pipeline_alone_batches_per_s": "pipeline alone batches/s",
              "ratio": "pipeline / constant",
              "meets_target": ">= 95 %", "compile_s": "compile s"}
  print_table(rows, columns)


if __name__ == "__main__":
  app.run(main)
