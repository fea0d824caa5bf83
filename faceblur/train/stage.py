"""A training stage as the shared code sees it, and the one `train_and_evaluate` they share.

Both stages train the same way (a mesh, this host's share of the batch, a state initialised
under `jit`, the parameter overview, one jitted step that donates the state, the resumable
loop) and load for inference the same way (`trained.load_trained`). What differs is small:
the networks, the optimiser's rule, the initial state, the step, the data and the periodic
hooks. Each stage module declares those once as its `STAGE`, and everything else is written
here, in `loop` and in `trained`.
"""

import dataclasses
import pathlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from faceblur.ops import compilation
from faceblur.train import loop, partitioning
from faceblur.train import state as state_lib
from faceblur.train.metric_writers import MetricWriter

Config = ml_collections.ConfigDict
Networks = Mapping[str, state_lib.Network]
Batches = Callable[[int], Iterator[dict[str, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage's parts; the keys of `make_networks` are the `NETWORKS` of its state.

  Attributes:
    job: the config's `job` that trains it, which its checkpoints record.
    make_networks: `config -> {name: Network}`, the graphs the step and inference apply.
    optimizer: `(config, num_train_steps) -> tx`, the stage's own rule (schedule, Adam,
      clipping); `make_optimizer` adds what both stages share.
    init_fn: `(config, tx) -> (key -> state)`, a fresh state, traced under `jit`.
    make_train_step: `(config, networks, tx) -> (state, batch) -> (state, metrics)`.
    sources: `config -> (source, ...)`, the training data; an epoch is the longest one.
    make_batches: `(config, sources, local batch size) -> (start_step -> batches)`.
    make_hooks: `(config, networks, sources, workdir, writer) -> (loop.Periodic, ...)`.
  """

  job: str
  make_networks: Callable[[Config], dict[str, state_lib.Network]]
  optimizer: Callable[[Config, int], optax.GradientTransformation]
  init_fn: Callable[[Config, optax.GradientTransformation],
                    Callable[[jax.Array], state_lib.TrainState]]
  make_train_step: Callable[[Config, Networks, optax.GradientTransformation], loop.TrainStep]
  sources: Callable[[Config], tuple[Any, ...]]
  make_batches: Callable[[Config, tuple[Any, ...], int], Batches]
  make_hooks: Callable[[Config, Networks, tuple[Any, ...], pathlib.Path, MetricWriter],
                       tuple[loop.Periodic, ...]]

  def make_optimizer(self, config: Config,
                     num_train_steps: int) -> optax.GradientTransformation:
    """The stage's optimiser inside the non-finite guard, whose state every checkpoint has."""
    return loop.nonfinite_guard(self.optimizer(config, num_train_steps), config)

  def jit_train_step(self, config: Config, networks: Networks, tx: optax.GradientTransformation,
                     mesh: jax.sharding.Mesh) -> loop.TrainStep:
    """The step `train_and_evaluate` runs: jitted, the state donated, its outputs replicated."""
    replicated = partitioning.replicated(mesh)
    return compilation.jit(self.make_train_step(config, networks, tx), donate_argnums=0,
                           out_shardings=(replicated, replicated))

  def train_and_evaluate(self, config: Config,
                         workdir: str | pathlib.Path) -> state_lib.TrainState:
    """Trains the stage in `workdir`, resuming from its latest checkpoint; the final state."""
    workdir = pathlib.Path(workdir)
    mesh = partitioning.make_mesh(config.num_devices or None)
    local_batch = partitioning.per_process_batch_size(config.batch_size, mesh)
    sources = self.sources(config)
    num_train_steps = loop.num_steps(config, max(len(source) for source in sources))

    networks = self.make_networks(config)
    tx = self.make_optimizer(config, num_train_steps)
    state = state_lib.create_train_state(self.init_fn(config, tx), config.seed, mesh)
    writer = MetricWriter(workdir)
    state_lib.write_parameter_overview(writer, state.params)

    train_step = self.jit_train_step(config, networks, tx, mesh)
    return loop.train(config=config, workdir=workdir, mesh=mesh, state=state,
                      train_step=train_step,
                      batches=self.make_batches(config, sources, local_batch),
                      num_train_steps=num_train_steps, writer=writer,
                      hooks=self.make_hooks(config, networks, sources, workdir, writer))
