"""Timing and memory helpers shared by the benchmarks."""

import json
import platform
import resource
import statistics
import time
from collections.abc import Callable

import jax


def peak_rss_mib() -> float:
  """Peak resident memory of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_calls(fn: Callable[[], object], *, warmup: int, repeats: int) -> dict[str, float]:
  """Median and spread of `fn()` wall time after `warmup` calls; `fn` must block."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


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


def machine() -> dict[str, str]:
  device = jax.devices()[0]
  return {"platform": platform.platform(), "python": platform.python_version(),
          "jax": jax.__version__, "device": f"{device.platform}:{device.device_kind}",
          "num_devices": str(jax.device_count())}


def print_json(record: dict) -> None:
  print(json.dumps(record, default=str), flush=True)
