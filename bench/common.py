"""Timing and memory helpers shared by the benchmarks."""

import json
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import jax


def peak_rss_mib() -> float:
  """Peak resident memory of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_calls(fn: Callable[[], object], *, warmup: int, repeats: int,
               budget_s: float | None = None) -> dict[str, float]:
  """Median and spread of `fn()` wall time after `warmup` calls; `fn` must block.

  `budget_s` stops repeating once the timed calls have taken that long (at least one runs),
  so minute-long cases on a CPU still end.
  """
  for _ in range(warmup):
    fn()
  times = []
  while len(times) < max(1, repeats) and not (budget_s and times and sum(times) >= budget_s):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
          "repeats": len(times)}


# jax.monitoring events of one compilation: tracing, lowering to MLIR, XLA's compile.
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


class CompileTime:
  """Seconds JAX has spent compiling since this was created, from its monitoring events.

  Exact where "first call minus a warm call" is not: on a busy CPU a multi-second call varies
  by more than a compilation takes.
  """

  def __init__(self):
    self.seconds = 0.0
    jax.monitoring.register_event_duration_secs_listener(self._record)

  def _record(self, event: str, duration_secs: float, **unused) -> None:
    if event in COMPILE_EVENTS:
      self.seconds += duration_secs

  def close(self) -> None:
    jax.monitoring.unregister_event_duration_listener(self._record)


def flops_of(compiled) -> float | None:
  """FLOPs per call from XLA's cost analysis, where the backend reports it."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 — not every backend implements it
    return None
  if isinstance(analysis, list):
    analysis = analysis[0] if analysis else {}
  value = (analysis or {}).get("flops")
  return float(value) if value else None


def matmul_peak_gflops(size: int = 4096, dtype: str = "float32", repeats: int = 5) -> float:
  """GFLOP/s of a jitted `size` x `size` matrix product (median of `repeats`): the measured
  peak that achieved FLOP/s are compared with (issue 17: 4096, float32 on a CPU)."""
  import jax.numpy as jnp  # noqa: PLC0415

  left, right = (jax.random.normal(jax.random.key(seed), (size, size), jnp.dtype(dtype))
                 for seed in (0, 1))
  product = jax.jit(jnp.matmul)
  timing = time_calls(lambda: product(left, right).block_until_ready(), warmup=2,
                      repeats=repeats)
  return 2 * size**3 / timing["median_s"] / 1e9


# How a train step's FLOPs are counted from its networks' layers (`train_step_flops`).
STEP_FLOPS_CONVENTION = (
    "network FLOPs: 2 x multiply-adds of every convolution and transposed convolution "
    "(faceblur.models.flops), x3 for a pass that is trained (forward, input gradient, kernel "
    "gradient) and x2 for a critic pass that needs only one gradient; the same count for "
    "faceblur and PyTorch")


def train_step_flops(stage: str, config, batch_size: int, size: int) -> int:
  """FLOPs of one train step of `stage` ("srn" or "cyclegan") on `batch_size` crops of `size`
  px, counted from the networks' own layers (see STEP_FLOPS_CONVENTION):

  - SRN: 3 x one forward pass of the deblurrer (its 3 scales included).
  - CycleGAN: 6 generator passes (fakes, cycle and identity; 4 without the identity loss)
    at 3x; the critics' 2 passes on fakes in the generator loss at 2x (forward and input
    gradient: their kernels are frozen there); their 4 passes in the critic loss (real and
    pooled fakes) at 2x (forward and kernel gradient: their inputs are data).
  - CycleGAN with the `kernel_blur` G: F's pass on the blurred photos at 3x and its watched
    cycle pass at 1x (no gradient); G's two blurs (2 FLOPs per tap, pixel and channel) at 2x
    each (G(sharp): forward and kernel gradient; G(F(blurred)): forward and input gradient);
    the critics as above.

  Counted under `jax.eval_shape`: no weights are allocated and nothing is computed.
  """
  import jax.numpy as jnp  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415

  from faceblur.models.flops import conv_flops  # noqa: PLC0415
  from faceblur.train import cyclegan, srn  # noqa: PLC0415

  images = jax.ShapeDtypeStruct((batch_size, size, size, 3), jnp.float32)
  if stage == "srn":
    make = srn.module_factory(config)
    return 3 * conv_flops(nnx.eval_shape(lambda: make(rngs=nnx.Rngs(0))), images)
  if stage != "cyclegan":
    raise ValueError(f"unknown stage {stage!r}; choose srn or cyclegan")
  factories = cyclegan.module_factories(config)
  critic = conv_flops(nnx.eval_shape(lambda: factories["d_blurred"](nnx.Rngs(0))), images)
  if config.model.get("generator", "resnet") == "kernel_blur":
    deblurrer = conv_flops(nnx.eval_shape(lambda: factories["f"](nnx.Rngs(0))), images)
    blur = 2 * config.model.kernel_size ** 2 * batch_size * size * size * 3
    return 4 * deblurrer + 2 * 2 * blur + 2 * 2 * critic + 2 * 4 * critic
  generator = conv_flops(nnx.eval_shape(lambda: factories["g"](nnx.Rngs(0))), images)
  generator_passes = 6 if config.loss.identity_weight > 0 else 4
  return 3 * generator_passes * generator + 2 * 2 * critic + 2 * 4 * critic


TORCH_LAYOUTS = ("nchw", "channels_last")


def torch_memory_format(layout: str):
  """torch's memory format for a layout name of TORCH_LAYOUTS."""
  import torch  # noqa: PLC0415

  formats = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
  if layout not in formats:
    raise ValueError(f"unknown PyTorch layout {layout!r}; choose {', '.join(TORCH_LAYOUTS)}")
  return formats[layout]


def torch_to_layout(modules, layout: str, device: str = "cpu") -> None:
  """Moves torch `modules` to `device` and `layout`, in place (optimisers built on their
  parameters keep working: `Module.to` swaps the parameters' data, not the parameters)."""
  memory_format = torch_memory_format(layout)
  for module in modules:
    module.to(device=device, memory_format=memory_format)


def faster_torch(rows: Sequence[dict], key: Callable[[dict], object],
                 time_key: str) -> dict[object, dict]:
  """The fastest PyTorch row (smallest `time_key`) of each `key(row)` among `rows`."""
  best: dict[object, dict] = {}
  for row in rows:
    if row.get("framework") != "pytorch":
      continue
    current = best.get(key(row))
    if current is None or row[time_key] < current[time_key]:
      best[key(row)] = row
  return best


def machine() -> dict[str, str]:
  device = jax.devices()[0]
  return {"platform": platform.platform(), "python": platform.python_version(),
          "jax": jax.__version__, "device": f"{device.platform}:{device.device_kind}",
          "num_devices": str(jax.device_count())}


def quiet_logs() -> None:
  """Keeps orbax's and grain's INFO lines out of the benchmark's output (warnings stay)."""
  from absl import logging  # noqa: PLC0415

  logging.set_verbosity(logging.WARNING)


def print_json(record: dict) -> None:
  print(json.dumps(record, default=str), flush=True)


def print_table(rows: Sequence[dict], columns: dict[str, str]) -> None:
  """A markdown table of `rows`; `columns` maps each row key to its header."""
  print("\n| " + " | ".join(columns.values()) + " |")
  print("|" + "---|" * len(columns))
  for row in rows:
    print("| " + " | ".join(str(row.get(key, "")) for key in columns) + " |")


def run_isolated(script: str | pathlib.Path, args: Sequence[str]) -> dict:
  """Runs `python script *args` in a fresh process and returns the JSON of its last stdout line.

  A case run this way has the process to itself, so its peak RSS (which it reports) is its
  own, not the maximum of every case before it. Its stderr passes through.
  """
  completed = subprocess.run([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                             text=True, check=False)
  if completed.returncode:
    raise RuntimeError(f"{script} {' '.join(args)} exited with {completed.returncode}")
  return json.loads(completed.stdout.strip().splitlines()[-1])


def save_random_checkpoint(stage, config, workdir: str | pathlib.Path) -> pathlib.Path:
  """A step-0 checkpoint of freshly initialised networks in `workdir`, as training writes it.

  `stage` is `faceblur.train.srn` or `faceblur.train.cyclegan`. Speed and memory do not
  depend on the weights, so the inference benchmarks need no trained model.
  """
  from faceblur.train import partitioning  # noqa: PLC0415 — only the inference benchmarks
  from faceblur.train import state as state_lib  # noqa: PLC0415
  from faceblur.train.checkpointing import Checkpointer  # noqa: PLC0415

  workdir = pathlib.Path(workdir)
  tx = stage.STAGE.make_optimizer(config, 1)
  state = state_lib.create_train_state(stage.init_fn(config, tx), config.seed,
                                       partitioning.make_mesh(1))
  checkpointer = Checkpointer(workdir / "checkpoints")
  checkpointer.save(0, state, config, force=True)
  checkpointer.wait_until_finished()
  checkpointer.close()
  return workdir
