"""Images/s of one train step per stage, faceblur against a PyTorch re-implementation.

  python bench/train_step.py                       # the reference shapes (slow on a CPU)
  python bench/train_step.py --size=64 --repeats=3 # quick look
  python bench/train_step.py --frameworks=faceblur # without torch installed

Shapes (issue 5): CycleGAN ResNet-9 at 256 px, batch 1 and 4; SRN at 256 px crops, batch 4
and 16. For faceblur: the jitted step of the training code, compile time, XLA's FLOP count
and achieved FLOP/s. For PyTorch (`bench/torch_reference.py`, eager, NCHW, as the official
code runs): the same networks, losses and optimisers. Each case runs in a fresh process, so
peak memory is per case and the two frameworks never share the CPU's threads. One JSON line
per case, then a table with the ratio faceblur / PyTorch in images/s (> 1: faceblur faster).
"""

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from bench.common import flops_of, machine, peak_rss_mib, print_json, time_calls  # noqa: E402
from configs import cyclegan as cyclegan_config  # noqa: E402
from configs import srn as srn_config  # noqa: E402
from faceblur.ops import compilation  # noqa: E402
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
flags.DEFINE_bool("compiler_options", True, "faceblur's CPU compiler options "
                  "(faceblur.ops.compilation); false: plain jax.jit.")
flags.DEFINE_list("frameworks", ["faceblur", "pytorch"], "faceblur and/or pytorch.")
flags.DEFINE_string("case", None, "Internal: run one 'framework:stage:batch' case and exit.")


def bench_faceblur(stage: str, batch_size: int, size: int) -> dict:
  module = {"cyclegan": cyclegan, "srn": srn}[stage]
  config = (cyclegan_config.get_config() if stage == "cyclegan" else srn_config.get_config())
  config.mixed_precision = FLAGS.mixed_precision
  config.data.crop_size = size
  mesh = partitioning.make_mesh()
  tx = module.STAGE.make_optimizer(config, 1000)
  state = state_lib.create_train_state(module.init_fn(config, tx), 0, mesh)
  networks = module.make_networks(config)
  rng = np.random.default_rng(0)
  keys = ("sharp", "blurred")
  batch = {key: rng.random((batch_size, size, size, 3), dtype=np.float32) for key in keys}
  batch = partitioning.shard_batch(batch, mesh)
  replicated = partitioning.replicated(mesh)
  jit = compilation.jit if FLAGS.compiler_options else jax.jit
  step = jit(module.make_train_step(config, networks, tx), donate_argnums=0,
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
  num_params = sum(np.size(leaf) for leaf in jax.tree.leaves(state.params))
  record = _record("faceblur", stage, batch_size, size, timing, num_params, compile_s=compile_s,
                   flops=flops)
  record["compiler_options"] = FLAGS.compiler_options
  return record


def bench_pytorch(stage: str, batch_size: int, size: int) -> dict:
  import torch

  from bench import torch_reference

  torch.manual_seed(0)
  step = (torch_reference.CycleGANStep() if stage == "cyclegan"
          else torch_reference.SRNStep())
  generator = torch.Generator().manual_seed(0)
  sharp, blurred = (torch.rand(batch_size, 3, size, size, generator=generator) for _ in range(2))
  if stage == "cyclegan":  # the official data loader normalises to [-1, 1]
    sharp, blurred = sharp * 2 - 1, blurred * 2 - 1
  timing = time_calls(lambda: step(sharp, blurred), warmup=FLAGS.warmup + 1,
                      repeats=FLAGS.repeats)
  record = _record("pytorch", stage, batch_size, size, timing,
                   torch_reference.parameter_count(step))
  record["threads"] = torch.get_num_threads()
  return record


def _record(framework, stage, batch_size, size, timing, num_params, *, compile_s=None,
            flops=None) -> dict:
  step_s = timing["median_s"]
  return {"framework": framework, "stage": stage, "batch": batch_size, "size": size,
          "params": int(num_params), "step_s": round(step_s, 4),
          "min_step_s": round(timing["min_s"], 4), "images_per_s": round(batch_size / step_s, 3),
          "compile_s": round(compile_s, 2) if compile_s is not None else None,
          "gflops_per_step": round(flops / 1e9, 2) if flops else None,
          "achieved_gflops_per_s": round(flops / 1e9 / step_s, 2) if flops else None,
          "peak_rss_mib": round(peak_rss_mib())}


def _run_case_in_child(case: str) -> dict:
  """Runs one case in a fresh interpreter and returns its JSON record."""
  argv = [sys.executable, __file__, f"--case={case}", f"--size={FLAGS.size}",
          f"--warmup={FLAGS.warmup}", f"--repeats={FLAGS.repeats}",
          f"--mixed_precision={FLAGS.mixed_precision}",
          f"--compiler_options={FLAGS.compiler_options}"]
  result = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ))
  if result.returncode:
    sys.exit(f"case {case} failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def _versions() -> dict:
  versions = machine()
  try:
    import torch
    versions["torch"] = torch.__version__
  except ImportError:
    versions["torch"] = None
  return versions


def main(argv):
  del argv
  if FLAGS.case:
    framework, stage, batch_size = FLAGS.case.split(":")
    run = bench_faceblur if framework == "faceblur" else bench_pytorch
    print_json(run(stage, int(batch_size), FLAGS.size))
    return
  print_json({"machine": _versions()})
  rows = []
  for stage in FLAGS.stages:
    batches = FLAGS.cyclegan_batches if stage == "cyclegan" else FLAGS.srn_batches
    for batch_size in map(int, batches):
      for framework in FLAGS.frameworks:
        rows.append(_run_case_in_child(f"{framework}:{stage}:{batch_size}"))
        print_json(rows[-1])
  print("\n| stage | batch | size | framework | step s | images/s | faceblur / PyTorch | "
        "compile s | GFLOP/step | GFLOP/s | peak RSS MiB |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  # From the step times, not the rounded images/s: at 0.04 images/s rounding moves the ratio.
  torch_step = {(r["stage"], r["batch"]): r["step_s"] for r in rows
                if r["framework"] == "pytorch"}
  for r in rows:
    reference = torch_step.get((r["stage"], r["batch"]))
    ratio = (f"{reference / r['step_s']:.2f}"
             if r["framework"] == "faceblur" and reference else "")
    print(f"| {r['stage']} | {r['batch']} | {r['size']} | {r['framework']} | {r['step_s']} | "
          f"{r['images_per_s']} | {ratio} | {r['compile_s'] or ''} | "
          f"{r['gflops_per_step'] or ''} | {r['achieved_gflops_per_s'] or ''} | "
          f"{r['peak_rss_mib']} |")
  counts = {}
  for r in rows:
    counts.setdefault((r["stage"], r["batch"]), set()).add(r["params"])
  for key, values in counts.items():
    if len(values) > 1:
      print(f"warning: {key} parameter counts differ between frameworks: {sorted(values)}")


if __name__ == "__main__":
  app.run(main)
