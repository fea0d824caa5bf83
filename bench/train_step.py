"""Images/s of one train step per stage, faceblur against a PyTorch re-implementation.

  python bench/train_step.py                       # the reference shapes (slow on a CPU)
  python bench/train_step.py --shapes=demo         # configs/demo.py's networks and batches
  python bench/train_step.py --size=64 --repeats=3 # quick look
  python bench/train_step.py --shapes=demo --rounds=3 # interleaved rounds, for ratios
  python bench/train_step.py --frameworks=faceblur # without torch installed

Shapes: `--shapes=reference` (issue 5, the default): CycleGAN ResNet-9 at 256 px, batch 1 and
4; SRN at 256 px crops, batch 4 and 16. `--shapes=demo` and `--shapes=study` (issue 25) take
each stage's networks (widths, blocks, residual option), crop size and batch size from
`configs/demo.py` or `configs/study.py` (the `cyclegan` and `srn` stages of `get_config()`),
so the benchmark follows those configs; `--size` and the batch flags override them. Stage 1 is
then the config's own variant (`kernel_blur_plain`, whose G can only blur), or another with
`--stage1_variant` (`paper`: the CycleGAN at those widths). For
faceblur: the jitted step of the training code and its compile time. For PyTorch
(`bench/torch_reference.py`, eager, as the official code runs): the same networks, losses and
optimisers, built from the same config (`torch_reference.step_from_config`), timed in both
memory layouts, NCHW (the reference code's) and channels_last (often faster on CPUs); the
ratio is against the faster of the two (issue 17). Each case runs in a fresh process, so peak
memory is per case and the frameworks never share the CPU's threads. One JSON line per case,
then a table with faceblur / faster PyTorch in images/s
(> 1: faceblur faster).

FLOP/s come from the networks' own FLOPs (`bench.common.train_step_flops`: convolutions
counted from the layers, x3 for trained passes), the same figure for both frameworks, against
a measured peak: a jitted 4096 x 4096 float32 matrix product (`--peak_gflops` to give one).
XLA's cost analysis of the compiled step is kept in the JSON (`xla_gflops_per_step`) only: on
a CPU it counts the reformulated convolutions' extra work.

`--torch_device=cuda` times PyTorch on a GPU (`bench/gpu.py` does so); `--mixed_precision`
runs faceblur in bfloat16 and PyTorch under `torch.autocast(bfloat16)`.
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

from bench.common import (  # noqa: E402
  STEP_FLOPS_CONVENTION,
  TORCH_LAYOUTS,
  faster_torch,
  flops_of,
  machine,
  matmul_peak_gflops,
  peak_rss_mib,
  print_json,
  time_calls,
  torch_memory_format,
  torch_to_layout,
  train_step_flops,
)
from configs import cyclegan as cyclegan_config  # noqa: E402
from configs import demo as demo_config  # noqa: E402
from configs import srn as srn_config  # noqa: E402
from configs import study as study_config  # noqa: E402
from faceblur.ops import compilation  # noqa: E402
from faceblur.train import cyclegan, partitioning, srn  # noqa: E402
from faceblur.train import state as state_lib  # noqa: E402

FLAGS = flags.FLAGS
SHAPES = ("reference", "demo", "study")
REFERENCE_SIZE = 256
REFERENCE_BATCHES = {"cyclegan": ["1", "4"], "srn": ["4", "16"]}
flags.DEFINE_enum("shapes", "reference", SHAPES, "Whose networks, crops and batches: the "
                  "reference configs' (configs/cyclegan.py, configs/srn.py; 256 px) or those of "
                  "configs/demo.py or configs/study.py.")
flags.DEFINE_enum("stage1_variant", None, list(cyclegan_config.VARIANTS), "Stage 1's variant "
                  "(configs/cyclegan.py) for the demo's and the study's shapes; default: the "
                  "config's own (kernel_blur_plain). The reference shapes are the paper's.")
flags.DEFINE_integer("size", None, "Crop size in pixels (default: 256 for the reference "
                     "shapes, each stage's config.data.crop_size otherwise).")
flags.DEFINE_list("cyclegan_batches", None, "CycleGAN batch sizes (default: 1,4 for the "
                  "reference shapes, the config's batch_size otherwise).")
flags.DEFINE_list("srn_batches", None, "SRN batch sizes (default: 4,16 for the reference "
                  "shapes, the config's batch_size otherwise).")
flags.DEFINE_integer("warmup", 1, "Untimed steps after compilation.")
flags.DEFINE_integer("repeats", 5, "Timed steps (the median is reported).")
flags.DEFINE_integer("rounds", 1, "Runs every case this many times, interleaved (each round "
                     "runs all cases once), and reports the median of the rounds' medians and "
                     "each round's ratio: this VM's speed drifts over minutes, so one round can "
                     "time the drift rather than the frameworks.")
flags.DEFINE_bool("mixed_precision", False, "bfloat16 activations (PyTorch: autocast bf16).")
flags.DEFINE_list("stages", ["cyclegan", "srn"], "Which stages to time.")
flags.DEFINE_bool("compiler_options", True, "faceblur's CPU compiler options "
                  "(faceblur.ops.compilation); false: plain jax.jit.")
flags.DEFINE_list("frameworks", ["faceblur", "pytorch"], "faceblur and/or pytorch.")
flags.DEFINE_list("torch_layouts", list(TORCH_LAYOUTS), "PyTorch memory layouts to time.")
flags.DEFINE_string("torch_device", "cpu", "PyTorch's device: cpu or cuda.")
flags.DEFINE_float("peak_gflops", 0.0, "The peak GFLOP/s that achieved FLOP/s are a fraction "
                   "of; 0 = measure a jitted 4096^2 float32 matrix product here.")
flags.DEFINE_string("case", None, "Internal: run one 'framework:stage:batch[:layout]' case "
                    "and exit.")


def shapes_config(stage: str, shapes: str):
  """`stage`'s config as `shapes` names it, before the benchmark's overrides."""
  if shapes == "reference":
    return cyclegan_config.get_config() if stage == "cyclegan" else srn_config.get_config()
  config = {"demo": demo_config, "study": study_config}[shapes].get_config()[stage]
  if stage == "cyclegan" and FLAGS.stage1_variant:
    cyclegan_config.apply_variant(config, FLAGS.stage1_variant)
  return config


def crop_size(stage: str) -> int:
  """`--size`, else the shapes' crop size for `stage`."""
  if FLAGS.size:
    return FLAGS.size
  if FLAGS.shapes == "reference":
    return REFERENCE_SIZE
  return shapes_config(stage, FLAGS.shapes).data.crop_size


def batch_sizes(stage: str) -> list[int]:
  """The batch flag of `stage`, else the shapes' batch sizes."""
  batches = FLAGS.cyclegan_batches if stage == "cyclegan" else FLAGS.srn_batches
  if batches is None:
    batches = (REFERENCE_BATCHES[stage] if FLAGS.shapes == "reference"
               else [shapes_config(stage, FLAGS.shapes).batch_size])
  return [int(batch) for batch in batches]


def stage_config(stage: str, size: int):
  config = shapes_config(stage, FLAGS.shapes)
  config.mixed_precision = FLAGS.mixed_precision
  config.data.crop_size = size
  return config


def bench_faceblur(stage: str, batch_size: int, size: int) -> dict:
  module = {"cyclegan": cyclegan, "srn": srn}[stage]
  config = stage_config(stage, size)
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
  num_params = sum(np.size(leaf) for leaf in jax.tree.leaves(state.params))
  record = _record("faceblur", stage, batch_size, size, timing, num_params, compile_s=compile_s)
  xla_flops = flops_of(compiled)
  record["xla_gflops_per_step"] = round(xla_flops / 1e9, 2) if xla_flops else None
  record["compiler_options"] = FLAGS.compiler_options
  record["dtype"] = "bfloat16" if FLAGS.mixed_precision else "float32"
  return record


def bench_pytorch(stage: str, batch_size: int, size: int, layout: str) -> dict:
  import torch

  from bench import torch_reference

  device = FLAGS.torch_device
  if device == "cuda":
    torch.backends.cudnn.benchmark = True  # let cuDNN pick its fastest algorithms
  torch.manual_seed(0)
  step = torch_reference.step_from_config(stage, stage_config(stage, size))
  torch_to_layout(step.networks().values(), layout, device)
  memory_format = torch_memory_format(layout)
  generator = torch.Generator().manual_seed(0)
  sharp, blurred = (torch.rand(batch_size, 3, size, size, generator=generator)
                    .to(device).contiguous(memory_format=memory_format) for _ in range(2))
  if isinstance(step, torch_reference.CycleGANStep):  # the official loader gives [-1, 1]
    sharp, blurred = sharp * 2 - 1, blurred * 2 - 1

  def run_step():
    with torch.autocast(device, dtype=torch.bfloat16, enabled=FLAGS.mixed_precision):
      step(sharp, blurred)  # returns float(loss): waits for the device
    if device == "cuda":
      torch.cuda.synchronize()

  timing = time_calls(run_step, warmup=FLAGS.warmup + 1, repeats=FLAGS.repeats)
  record = _record("pytorch", stage, batch_size, size, timing,
                   torch_reference.parameter_count(step))
  record |= {"layout": layout, "device": device, "threads": torch.get_num_threads(),
             "dtype": "autocast bfloat16" if FLAGS.mixed_precision else "float32"}
  return record


def _record(framework, stage, batch_size, size, timing, num_params, *, compile_s=None) -> dict:
  step_s = timing["median_s"]
  return {"framework": framework, "stage": stage, "batch": batch_size, "size": size,
          "params": int(num_params), "step_s": round(step_s, 4),
          "min_step_s": round(timing["min_s"], 4), "images_per_s": round(batch_size / step_s, 3),
          "compile_s": round(compile_s, 2) if compile_s is not None else None,
          "peak_rss_mib": round(peak_rss_mib())}


def add_flops(row: dict, gflops_per_step: float, peak_gflops: float | None) -> dict:
  """`row` with its network GFLOP/step, achieved GFLOP/s and % of `peak_gflops`."""
  achieved = gflops_per_step / row["step_s"]
  row["gflops_per_step"] = round(gflops_per_step, 2)
  row["achieved_gflops_per_s"] = round(achieved, 2)
  row["percent_of_peak"] = round(100 * achieved / peak_gflops, 1) if peak_gflops else None
  return row


def case_args() -> list[str]:
  """The flags a case's child process needs."""
  return [f"--shapes={FLAGS.shapes}", *([f"--size={FLAGS.size}"] if FLAGS.size else []),
          *([f"--stage1_variant={FLAGS.stage1_variant}"] if FLAGS.stage1_variant else []),
          f"--warmup={FLAGS.warmup}", f"--repeats={FLAGS.repeats}",
          f"--mixed_precision={FLAGS.mixed_precision}",
          f"--compiler_options={FLAGS.compiler_options}", f"--torch_device={FLAGS.torch_device}"]


def _run_case_in_child(case: str, env: dict) -> dict:
  """Runs one case in a fresh interpreter and returns its JSON record."""
  argv = [sys.executable, __file__, f"--case={case}", *case_args()]
  result = subprocess.run(argv, capture_output=True, text=True, env=env)
  if result.returncode:
    sys.exit(f"case {case} failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def combine_rounds(records: list[dict], gflops: float, peak: float) -> dict:
  """One case over its rounds: the median of the rounds' median steps, the fastest step, the
  first round's compile time and the largest peak memory."""
  row = dict(records[0])
  row["step_s"] = round(float(np.median([r["step_s"] for r in records])), 4)
  row["min_step_s"] = min(r["min_step_s"] for r in records)
  row["images_per_s"] = round(row["batch"] / row["step_s"], 3)
  row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in records)
  row["round_step_s"] = [r["step_s"] for r in records]
  return add_flops(row, gflops, peak)


def print_round_ratios(rounds: list[list[dict]]) -> None:
  """faceblur / faster PyTorch within each round: how far the verdict moves with the drift."""
  ratios: dict[tuple, list[float]] = {}
  for records in rounds:
    fastest = faster_torch(records, lambda r: (r["stage"], r["batch"]), "step_s")
    for r in records:
      reference = fastest.get((r["stage"], r["batch"]))
      if r["framework"] == "faceblur" and reference:
        ratios.setdefault((r["stage"], r["batch"]), []).append(
            reference["step_s"] / r["step_s"])
  for (stage, batch), values in ratios.items():
    print(f"{stage} batch {batch}: faceblur / faster PyTorch by round "
          f"{', '.join(f'{v:.2f}' for v in values)} (median {np.median(values):.2f})")


def _versions() -> dict:
  versions = machine()
  try:
    import torch
    versions["torch"] = torch.__version__
  except ImportError:
    versions["torch"] = None
  return versions


def print_step_table(rows: list[dict]) -> None:
  """The markdown table: each faceblur row's ratio is against the faster PyTorch layout."""
  print("\n| stage | batch | size | framework | layout | step s | images/s | "
        "faceblur / faster PyTorch | compile s | GFLOP/step | GFLOP/s | % of peak | "
        "peak RSS MiB |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  # From the step times, not the rounded images/s: at 0.04 images/s rounding moves the ratio.
  fastest = faster_torch(rows, lambda r: (r["stage"], r["batch"]), "step_s")
  for r in rows:
    reference = fastest.get((r["stage"], r["batch"]))
    ratio = (f"**{reference['step_s'] / r['step_s']:.2f}** (vs {reference['layout']})"
             if r["framework"] == "faceblur" and reference else "")
    print(f"| {r['stage']} | {r['batch']} | {r['size']} | {r['framework']} | "
          f"{r.get('layout', '')} | {r['step_s']} | {r['images_per_s']} | {ratio} | "
          f"{r['compile_s'] or ''} | {r.get('gflops_per_step', '')} | "
          f"{r.get('achieved_gflops_per_s', '')} | {r.get('percent_of_peak') or ''} | "
          f"{r['peak_rss_mib']} |")


def main(argv):
  del argv
  if FLAGS.case:
    framework, stage, batch_size, *layout = FLAGS.case.split(":")
    if framework == "faceblur":
      record = bench_faceblur(stage, int(batch_size), crop_size(stage))
    else:
      record = bench_pytorch(stage, int(batch_size), crop_size(stage), *(layout or ["nchw"]))
    record["shapes"] = FLAGS.shapes
    print_json(record)
    return
  child_env = dict(os.environ)
  # This process only counts FLOPs and measures the CPU peak: it must not take a GPU's
  # memory away from the cases it starts.
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  unknown = sorted(set(FLAGS.torch_layouts) - set(TORCH_LAYOUTS))
  if unknown:
    sys.exit(f"--torch_layouts: unknown {', '.join(unknown)}; choose {', '.join(TORCH_LAYOUTS)}")
  peak = FLAGS.peak_gflops or matmul_peak_gflops()
  print_json({"machine": _versions(), "peak_gflops_per_s": round(peak, 1),
              "peak": "given" if FLAGS.peak_gflops else "jitted 4096^2 float32 matmul",
              "flops": STEP_FLOPS_CONVENTION, "shapes": FLAGS.shapes})
  cases = {}  # case -> its network GFLOP per step
  for stage in FLAGS.stages:
    size = crop_size(stage)
    for batch_size in batch_sizes(stage):
      gflops = train_step_flops(stage, stage_config(stage, size), batch_size, size) / 1e9
      for framework in FLAGS.frameworks:
        layouts = FLAGS.torch_layouts if framework == "pytorch" else [None]
        for layout in layouts:
          cases[f"{framework}:{stage}:{batch_size}" + (f":{layout}" if layout else "")] = gflops
  rounds = []
  for index in range(FLAGS.rounds):
    records = []
    for case, gflops in cases.items():
      records.append(add_flops(_run_case_in_child(case, child_env), gflops, peak))
      print_json({**records[-1], "round": index})
    rounds.append(records)
  rows = [combine_rounds([records[index] for records in rounds], gflops, peak)
          for index, gflops in enumerate(cases.values())]
  print_step_table(rows)
  if FLAGS.rounds > 1:
    print_round_ratios(rounds)
  counts = {}
  for r in rows:
    counts.setdefault((r["stage"], r["batch"]), set()).add(r["params"])
  for key, values in counts.items():
    if len(values) > 1:
      print(f"warning: {key} parameter counts differ between frameworks: {sorted(values)}")


if __name__ == "__main__":
  app.run(main)
