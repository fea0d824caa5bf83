"""Loading a finished (or partly finished) stage for inference: synthesis, evaluation, deblur.

A checkpoint carries the config it was trained with, so a user only names the workdir: the
networks are rebuilt from that config and the parameters restored into them.
"""

import dataclasses
import pathlib

import jax
import ml_collections

from faceblur.errors import CheckpointError
from faceblur.train import partitioning
from faceblur.train.checkpointing import Checkpointer
from faceblur.train.state import Network, TrainState


@dataclasses.dataclass
class TrainedModel:
  config: ml_collections.ConfigDict
  networks: dict[str, Network]
  params: dict
  step: int


def checkpoint_dir(workdir: str | pathlib.Path) -> pathlib.Path:
  """Accepts a stage workdir or its `checkpoints/` folder."""
  path = pathlib.Path(workdir)
  if not str(workdir):
    raise CheckpointError("no checkpoint given (set the workdir of a trained stage)")
  if (path / "checkpoints").is_dir():
    return path / "checkpoints"
  if path.is_dir():
    return path
  raise CheckpointError(f"{path}: no such checkpoint folder")


def load_trained(workdir: str | pathlib.Path, job: str, *,
                 step: int | None = None) -> TrainedModel:
  """Restores the parameters of a `job` ('cyclegan' or 'srn') run, on the default devices."""
  from faceblur.train import cyclegan, srn  # noqa: PLC0415 — avoid an import cycle

  stages = {
      "cyclegan": (cyclegan.make_networks, cyclegan.make_optimizer, cyclegan.init_fn),
      "srn": (lambda config: {srn.NETWORK: srn.make_network(config)}, srn.make_optimizer,
              srn.init_fn),
  }
  directory = checkpoint_dir(workdir)
  mesh = partitioning.make_mesh(1)
  sharding = partitioning.replicated(mesh)

  def abstract_for(saved: dict) -> TrainState:
    """The restore target, from the checkpoint's own config (each one tried carries it)."""
    config = ml_collections.ConfigDict(saved)
    if config.get("job") != job:
      raise CheckpointError(
          f"{directory}: is a {config.get('job')!r} checkpoint, expected a {job!r} one")
    _, make_optimizer, init_fn = stages[job]
    # Inference needs no mixed-precision training setting to match: use what it was trained with.
    tx = make_optimizer(config, 1)
    abstract = jax.eval_shape(init_fn(config, tx), jax.random.PRNGKey(0))
    return jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), abstract)

  checkpointer = Checkpointer(directory, read_only=True)
  try:  # a damaged newest checkpoint falls back to the newest that restores, with a warning
    _, saved, restored = checkpointer.restore_with_config(abstract_for, step=step)
  finally:
    checkpointer.close()
  config = ml_collections.ConfigDict(saved)
  make_networks = stages[job][0]
  return TrainedModel(config=config, networks=make_networks(config), params=restored.params,
                      step=int(restored.step))
