"""Images/s of one jitted train step per stage, compile time, FLOPs and peak host memory.

  python bench/train_step.py                       # the reference shapes (slow on a CPU)
  python bench/train_step.py --size=64 --repeats=3 # quick look

Shapes (issue 5): CycleGAN ResNet-9 at 256 px, batch 1 and 4; SRN at 256 px crops, batch 4
and 16. One JSON line per case, then a table.
"""

import sys
import time

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from bench.common import flops_of, machine, peak_rss_mib, print_json, time_calls  # noqa: E402
from configs import cyclegan as cyclegan_config  # noqa: E402
from configs import srn as srn_config  # noqa: E402
from faceblur.data import pipeline as data_pipeline  # noqa: E402
from faceblur.train import cyclegan, partitioning, srn  # noqa: E402
from faceblur.train import state as state_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("size", 256, "Crop size in pixels.")
flags.DEFINE_list("cyclegan_batches", ["1", "4"], "CycleGAN batch sizes.")
flags.DEFINE_list("srn_batches", ["4", "16"], "SRN batch sizes.")
flags.DEFINE_integer("warmup", 1, "Untimed steps after compilation.")
flags.DEFINE_integer("repeats", 5, "Timed steps (the median is reported).")
flags.DEFINE_bool("mixed_precision", False, "bfloat16 activations.")
flags.DEFINE_list("stages", ["cyclegan", "srn"], "Which stages to time.")


def bench_case(stage: str, batch_size: int, size: int) -> dict:
  module = {"cyclegan": cyclegan, "srn": srn}[stage]
  config = (cyclegan_config.get_config() if stage == "cyclegan" else srn_config.get_config())
  config.mixed_precision = FLAGS.mixed_precision
  config.data.crop_size = size
  mesh = partitioning.make_mesh()
  tx = module.make_optimizer(config, 1000)
  state = state_lib.create_train_state(module.init_fn(config, tx), 0, mesh)
  networks = cyclegan.make_networks(config) if stage == "cyclegan" else srn.make_network(config)
  rng = np.random.default_rng(0)
  keys = ("sharp", "blurred")
  batch = {key: rng.random((batch_size, size, size, 3), dtype=np.float32) for key in keys}
  batch = data_pipeline.shard_batch(batch, mesh)
  replicated = partitioning.replicated(mesh)
  step = jax.jit(module.make_train_step(config, networks, tx), donate_argnums=0,
                 out_shardings=(replicated, replicated))
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  holder = {"state": state}

  def run_step():
    holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready(metrics)

  timing = time_calls(run_step, warmup=FLAGS.warmup, repeats=FLAGS.repeats)
  flops = flops_of(compiled)
  return {"stage": stage, "batch": batch_size, "size": size, "compile_s": round(compile_s, 2),
          "step_s": round(timing["median_s"], 4),
          "images_per_s": round(batch_size / timing["median_s"], 3),
          "gflops_per_step": round(flops / 1e9, 2) if flops else None,
          "achieved_gflops_per_s": round(flops / 1e9 / timing["median_s"], 2) if flops else None,
          "peak_rss_mib": round(peak_rss_mib())}


def main(argv):
  del argv
  print_json({"machine": machine()})
  rows = []
  for stage in FLAGS.stages:
    batches = FLAGS.cyclegan_batches if stage == "cyclegan" else FLAGS.srn_batches
    for batch_size in map(int, batches):
      rows.append(bench_case(stage, batch_size, FLAGS.size))
      print_json(rows[-1])
  print("\n| stage | batch | size | step s | images/s | compile s | GFLOP/step | GFLOP/s "
        "| peak RSS MiB |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['stage']} | {r['batch']} | {r['size']} | {r['step_s']} | {r['images_per_s']} | "
          f"{r['compile_s']} | {r['gflops_per_step']} | {r['achieved_gflops_per_s']} | "
          f"{r['peak_rss_mib']} |")


if __name__ == "__main__":
  app.run(main)
