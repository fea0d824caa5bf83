"""How faceblur compiles its networks: `jax.jit` plus XLA options that make CPUs fast.

On CPU, jaxlib 0.10 hands convolutions to YNNPACK by default. For our training steps that is
the slow choice: YNNPACK computes the kernel gradients of the wide 3x3 convolutions (CycleGAN's
residual blocks, SRN's ConvLSTM) and of the 7x7 convolution to 3 channels that ends the
generator much more slowly than XLA's own convolutions. So every network compiles through
here, keeping YNNPACK for reductions and single matrix products only. SRN's forward pass
alone is the exception (`library_convolutions=True`, its restore function): YNNPACK's
convolutions are faster for it on an AVX-512 CPU. The measurements: "Figures behind code
choices" and "Deblur latency and memory" in `bench/RESULTS.md`. Other backends compile
exactly as `jax.jit` does, and so does every backend with `FACEBLUR_CPU_KERNELS=off` in the
environment (`faceblur.ops`'s one switch for its CPU tricks; for comparisons, or in case a
later jaxlib makes another choice faster).
"""

from collections.abc import Callable
from typing import Any

import jax

from faceblur import ops

CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type":
        "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


def jit(fn: Callable, *, library_convolutions: bool = False, **kwargs: Any):
  """`jax.jit(fn, **kwargs)`, with `CPU_COMPILER_OPTIONS` while `faceblur.ops`' CPU tricks
  apply; `library_convolutions=True` leaves XLA:CPU's defaults (YNNPACK's convolutions)."""
  if ops.cpu_tricks_apply() and not library_convolutions:
    kwargs.setdefault("compiler_options", CPU_COMPILER_OPTIONS)
  return jax.jit(fn, **kwargs)
