"""Data parallelism over a device mesh, on one host or many.

Every stage trains the same way: the batch is split over the `data` axis of a 1-D `Mesh`,
the train state is replicated, and `jax.jit` inserts the gradient all-reduce. The same code
runs on one CPU, on simulated CPU devices (`--xla_force_host_platform_device_count`), on a
GPU box, on a TPU pod slice, and on several hosts after `jax.distributed.initialize`.
"""


import itertools
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from faceblur.errors import ConfigError

DATA_AXIS = "data"


def initialize_distributed(config: ml_collections.ConfigDict) -> None:
  """Joins a multi-process run when the config (or the cluster environment) asks for it.

  `config.distributed` holds `coordinator_address`, `num_processes` and `process_id`;
  empty values are left to JAX, which detects Slurm, Open MPI and Cloud TPU by itself.
  """
  dist = config.get("distributed")
  if dist is None or not dist.get("enabled", False):
    return
  if jax.distributed.is_initialized():
    return
  kwargs = {}
  if dist.get("coordinator_address"):
    kwargs["coordinator_address"] = dist.coordinator_address
  if dist.get("num_processes", 0):
    kwargs["num_processes"] = dist.num_processes
  if dist.get("process_id", -1) >= 0:
    kwargs["process_id"] = dist.process_id
  if dist.get("local_device_ids"):
    kwargs["local_device_ids"] = list(dist.local_device_ids)
  # CPU hosts talk over gloo (asking for the backend here would initialise it too early).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D data-parallel mesh over all (or the first `num_devices`) devices.

  Auto axis types let `jit` propagate shardings from the inputs, so gradients of a conv
  over a sharded batch need no explicit `out_sharding`.
  """
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise ConfigError(f"num_devices={num_devices} but only {len(devices)} devices are visible")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def local_mesh(num_devices: int = 1) -> Mesh:
  """A mesh over this process's first devices: inference, which every host runs on its own
  (a mesh of the first global devices holds none of host 1's, which could not read into it)."""
  return Mesh(np.asarray(jax.local_devices()[:num_devices]), (DATA_AXIS,),
              axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def shard_batch(batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's numpy batch as global arrays split along the mesh's data axis.

  Non-numeric leaves (the records' names) stay on the host and are left out.
  """
  sharding = batch_sharded(mesh)
  return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
          for key, value in batch.items()
          if isinstance(value, np.ndarray) and value.dtype.kind in "biuf"}


def per_process_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """The share of the global batch each host loads; the batch must split evenly over devices."""
  num_devices = mesh.devices.size
  if global_batch_size % num_devices:
    raise ConfigError(
        f"batch_size={global_batch_size} does not divide over {num_devices} devices; "
        f"use a multiple of {num_devices}")
  return global_batch_size // jax.process_count()


_barrier_ids = itertools.count()


def compile_on_every_process(jitted: Callable, *args, timeout_s: float = 3600.0):
  """`jitted` compiled for `args`, returned once every process has compiled it as well.

  Hosts can finish compiling minutes apart (one finds the program in its compilation cache,
  another does not), while the first collective over gloo, on CPU hosts, waits only 30 s for
  its peers. A barrier of the coordination service (not a collective) after compiling lets
  the slower hosts catch up. On one process this is just the ahead-of-time compilation.
  """
  compiled = jitted.lower(*args).compile()
  wait_for_every_process("compiled", timeout_s=timeout_s)
  return compiled


def wait_for_every_process(name: str, *, timeout_s: float = 3600.0) -> None:
  """Returns once every process has called it (with the same `name`, in the same order).

  A barrier of the coordination service, not a collective: the first collective over gloo
  waits only 30 s for its peers, and hosts can be minutes apart. No-op on one process.
  """
  if jax.process_count() > 1:
    from jax._src import distributed  # noqa: PLC0415 — the barrier jax's own checkpointing uses

    distributed.global_state.client.wait_at_barrier(
        f"faceblur_{name}_{next(_barrier_ids)}", int(timeout_s * 1000))


def every_process(flag: bool, *, timeout_s: float = 3600.0) -> bool:
  """Whether `flag` holds on every process (once all of them have got here)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # noqa: PLC0415

  wait_for_every_process("agree", timeout_s=timeout_s)
  return bool(np.all(multihost_utils.process_allgather(np.asarray(flag))))
