"""SRN's forward pass with YNNPACK's convolutions against XLA's own, PyTorch beside.

  python bench/forward.py                       # the demo evaluation's batch, 256 px, 720p
  python bench/forward.py --cases=demo_eval --rounds=5

`faceblur.ops.compilation.jit(..., forward_only=True)` picks the convolutions of a forward pass
(the restore functions, MTCNN) by the CPU: YNNPACK's where it has AVX-512, XLA's own elsewhere.
This measures that choice on the machine at hand. Each case jits the same network twice, once
with XLA:CPU's defaults (YNNPACK's convolutions) and once with `CPU_COMPILER_OPTIONS` (XLA's),
and PyTorch's eager forward (`bench/torch_reference.py`, both layouts) runs beside; the three
are timed in interleaved rounds (one call each per round, `--rounds` rounds, median), so a
drift of this VM's speed reaches them alike. Random weights: speed does not depend on them.

Cases (batch x side, SRN width):
  demo_eval   16 x 64, configs/demo.py's width: the evaluation's restore batches
  ref_256     4 x 256, configs/srn.py's width
  deblur_720p 1 x 1280x720, configs/srn.py's width: the deblur job's whole-frame call
"""

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
  TORCH_LAYOUTS,
  machine,
  print_json,
  print_table,
  quiet_logs,
  torch_memory_format,
  torch_to_layout,
)
from configs import demo as demo_config  # noqa: E402
from configs import srn as srn_config  # noqa: E402
from faceblur.ops import compilation  # noqa: E402
from faceblur.train import srn  # noqa: E402
from faceblur.train import state as state_lib  # noqa: E402

FLAGS = flags.FLAGS
CASES = {"demo_eval": ("demo", 16, 64, 64), "ref_256": ("reference", 4, 256, 256),
         "deblur_720p": ("reference", 1, 720, 1280)}
flags.DEFINE_list("cases", list(CASES), f"Which of {', '.join(CASES)}.")
flags.DEFINE_integer("rounds", 7, "Interleaved timed rounds after one untimed (median).")
flags.DEFINE_list("frameworks", ["faceblur", "pytorch"], "faceblur and/or pytorch.")


def _config(shapes: str):
  return demo_config.get_config().srn if shapes == "demo" else srn_config.get_config()


def _faceblur_calls(config, images: np.ndarray) -> dict:
  """name -> a blocking call of the jitted forward pass, one per convolution choice."""
  network = srn.make_networks(config)[srn.NETWORK]
  make = srn.module_factory(config)
  params = jax.jit(lambda: state_lib.split_params(make(rngs=nnx.Rngs(0)))[1])()

  def forward(params, blurred):
    return jnp.clip(network.apply(params, blurred)[-1], 0.0, 1.0)

  batch = jnp.asarray(images)
  calls = {}
  for name, options in (("faceblur YNNPACK convs", None),
                        ("faceblur XLA convs", compilation.CPU_COMPILER_OPTIONS)):
    compiled = jax.jit(forward, compiler_options=options).lower(params, batch).compile()
    calls[name] = lambda compiled=compiled: compiled(params, batch).block_until_ready()
  return calls


def _pytorch_calls(config, images: np.ndarray) -> dict:
  import torch  # noqa: PLC0415

  from bench import torch_reference  # noqa: PLC0415

  torch.manual_seed(0)
  calls = {}
  for layout in TORCH_LAYOUTS:
    network = torch_reference.SRNDeblurNet(width=config.model.features).eval()
    torch_to_layout([network], layout)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(
        memory_format=torch_memory_format(layout))

    def call(network=network, batch=batch):
      with torch.inference_mode():
        network(batch)

    calls[f"pytorch {layout}"] = call
  return calls


def bench_case(case: str) -> list[dict]:
  shapes, batch_size, height, width = CASES[case]
  config = _config(shapes)
  images = np.random.default_rng(0).random((batch_size, height, width, 3), dtype=np.float32)
  calls = {}
  if "faceblur" in FLAGS.frameworks:
    calls |= _faceblur_calls(config, images)
  if "pytorch" in FLAGS.frameworks:
    calls |= _pytorch_calls(config, images)
  times: dict[str, list[float]] = {name: [] for name in calls}
  for round_index in range(FLAGS.rounds + 1):
    for name, call in calls.items():
      start = time.perf_counter()
      call()
      if round_index:  # the first round warms up
        times[name].append(time.perf_counter() - start)
  fastest = min(statistics.median(values) for values in times.values())
  return [{"case": case, "batch": batch_size, "size": f"{width}x{height}",
           "width": config.model.features, "framework": name,
           "median_s": round(statistics.median(values), 4),
           "min_s": round(min(values), 4),
           "vs_fastest": round(statistics.median(values) / fastest, 2)}
          for name, values in times.items()]


def main(argv):
  del argv
  quiet_logs()
  unknown = sorted(set(FLAGS.cases) - set(CASES))
  if unknown:
    raise app.UsageError(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(CASES)}")
  print_json({"machine": machine(), "cpu_has_avx512": compilation.cpu_has_avx512(),
              "jax": jax.__version__})
  rows = [row for case in FLAGS.cases for row in bench_case(case)]
  for row in rows:
    print_json(row)
  print_table(rows, {"case": "case", "framework": "framework", "median_s": "median s",
                     "min_s": "min s", "vs_fastest": "time / fastest"})


if __name__ == "__main__":
  app.run(main)
