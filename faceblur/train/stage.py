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

from faceblur.errors import CheckpointError
from faceblur.ops import compilation
from faceblur.train import checkpointing, loop, partitioning, release
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
    init_source = None
    if config.get("init_from") and not _has_checkpoints(workdir):
      init_source = self.check_init_from(config)  # before anything is compiled
    sources = self.sources(config)
    num_train_steps = loop.num_steps(config, max(len(source) for source in sources))

    networks = self.make_networks(config)
    tx = self.make_optimizer(config, num_train_steps)
    state = state_lib.create_train_state(self.init_fn(config, tx), config.seed, mesh)
    writer = MetricWriter(workdir)
    if init_source is not None:
      state = self.init_from(config, init_source, state, networks, mesh, writer)
    state_lib.write_parameter_overview(writer, state.params)

    train_step = self.jit_train_step(config, networks, tx, mesh)
    return loop.train(config=config, workdir=workdir, mesh=mesh, state=state,
                      train_step=train_step,
                      batches=self.make_batches(config, sources, local_batch),
                      num_train_steps=num_train_steps, writer=writer,
                      hooks=self.make_hooks(config, networks, sources, workdir, writer))

  def check_init_from(self, config: Config) -> pathlib.Path:
    """The release or checkpoint folder `config.init_from` names, once its saved config is
    this stage's with this model config; else one `CheckpointError` line, as resuming gives."""
    source = pathlib.Path(str(config.init_from)).expanduser()
    found = _release_or_checkpoints(source)
    if found.name == "checkpoints":
      reader = checkpointing.Checkpointer(found, read_only=True)
      try:
        saved = reader.saved_config()
      except Exception:  # noqa: BLE001 — unreadable: restoring it names the damage
        saved = None
      finally:
        reader.close()
    else:
      metadata = release.read_metadata(found)
      saved = dict(metadata["config"], job=metadata["job"])
    if saved is not None:
      if saved.get("job") != self.job:
        raise CheckpointError(f"init_from={source}: holds a {saved.get('job')!r} stage, but "
                              f"this is the {self.job!r} stage")
      for key, old, new in checkpointing._changed_keys(saved.get("model", {}),  # noqa: SLF001
                                                       config.get("model", {})):
        raise CheckpointError(f"init_from={source}: has model.{key}={old!r} but the config "
                              f"asks for {new!r}")
    return found

  def init_from(self, config: Config, found: pathlib.Path, state: state_lib.TrainState,
                networks: Networks, mesh: jax.sharding.Mesh,
                writer: MetricWriter) -> state_lib.TrainState:
    """`state` with the weights of `found` (a release, or the newest checkpoint of a
    `checkpoints/` folder that restores; `check_init_from` vetted it) in place of its initial
    ones: the optimiser and step stay fresh and the EMA restarts from them."""
    sharding = partitioning.replicated(mesh)

    def abstract(names) -> dict:
      return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                                            sharding=sharding),
                          {name: networks[name].abstract_params for name in names})

    if found.name != "checkpoints":
      metadata = release.read_metadata(found)
      names = [name for name in metadata["networks"] if name in networks]
      params = release.restore_weights(found, {"params": abstract(names)})["params"]
      step = metadata["step"]
    else:
      reader = checkpointing.Checkpointer(found, read_only=True)
      try:
        step, _, params = reader.restore_with_config(lambda saved: abstract(networks),
                                                     partial=True)
      finally:
        reader.close()
    state = state.replace(**params)
    if state.ema is not None:
      state = state_lib.start_ema(state, state_lib.ema_decay(config))
    writer.write_text(f"Initialised {', '.join(params)} from {found} (its step {step}); "
                      "fresh optimiser, step 0")
    return state


def _has_checkpoints(workdir: pathlib.Path) -> bool:
  """Whether `workdir` holds a checkpoint a run would resume from (then `init_from` is moot)."""
  folder = workdir / "checkpoints"
  return folder.is_dir() and any(path.name.isdigit() for path in folder.iterdir())


def _release_or_checkpoints(source: pathlib.Path) -> pathlib.Path:
  """The release `source` names (itself or its `release/`), or its `checkpoints/` folder."""
  if release.is_release(source):
    return source
  if (source / "checkpoints").is_dir():
    return source / "checkpoints"
  if release.is_release(source / "release"):
    return source / "release"
  raise CheckpointError(f"init_from={source}: neither a release nor a stage workdir with "
                        "checkpoints")
