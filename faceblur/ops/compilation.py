"""How faceblur compiles its networks: `jax.jit` plus XLA options that make CPUs fast.

On CPU, jaxlib 0.10 hands convolutions to YNNPACK by default. For our training steps that is
the slow choice: YNNPACK computes the kernel gradients of the wide 3x3 convolutions (CycleGAN's
residual blocks, SRN's ConvLSTM) and of the 7x7 convolution to 3 channels that ends the
generator much more slowly than XLA's own convolutions. So every network compiles through
here, keeping YNNPACK for reductions and single matrix products only. A forward pass alone
(`forward_only=True`: the restore functions, the detector) keeps YNNPACK's convolutions where
the CPU has AVX-512, where they were the faster forward pass. On a CPU without it XLA's own
are much faster on small faces and tie at 720p. The measurements: "Figures behind code
choices", "Deblur latency and memory" and "The forward pass's convolutions on a CPU without
AVX-512" in `bench/RESULTS.md`. Other backends compile
exactly as `jax.jit` does, and so does every backend with `FACEBLUR_CPU_KERNELS=off` in the
environment (`faceblur.ops`'s one switch for its CPU tricks; for comparisons, or in case a
later jaxlib makes another choice faster).
"""

import functools
import pathlib
from collections.abc import Callable
from typing import Any

import jax

from faceblur import ops

CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type":
        "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}
# For a function that runs once (a train state's initialisers): LLVM's optimisations take
# most of its compile time, which no run pays back ("The demo's wall time" in bench/RESULTS.md).
RUN_ONCE_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


@functools.cache
def cpu_has_avx512() -> bool:
  """Whether this host's CPU has AVX-512 (read from /proc/cpuinfo; False where it is absent)."""
  try:
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    return False
  return "avx512f" in cpuinfo.split()


def jit(fn: Callable, *, forward_only: bool = False, run_once: bool = False, **kwargs: Any):
  """`jax.jit(fn, **kwargs)`, with `CPU_COMPILER_OPTIONS` while `faceblur.ops`' CPU tricks
  apply. `forward_only=True` (no gradients are taken of `fn`) leaves XLA:CPU's defaults, i.e.
  YNNPACK's convolutions, on a CPU with AVX-512. `run_once=True` (a function called once per
  process, such as an initialiser) compiles without LLVM's optimisations instead: the compile
  is about 3x faster, and the results differ from an optimised build only in rounding."""
  if ops.cpu_tricks_apply() and run_once:
    kwargs.setdefault("compiler_options", RUN_ONCE_COMPILER_OPTIONS)
  elif ops.cpu_tricks_apply() and not (forward_only and cpu_has_avx512()):
    kwargs.setdefault("compiler_options", CPU_COMPILER_OPTIONS)
  return jax.jit(fn, **kwargs)
