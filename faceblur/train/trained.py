"""Loading a finished (or partly finished) stage for inference: synthesis, evaluation, deblur.

A checkpoint carries the config it was trained with, so a user only names the workdir: the
networks are rebuilt from that config and only their parameters restored into them (the
state's network fields, `Stage.make_networks`' names): no optimiser is built, and none of
its state is read.
"""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import ml_collections

from faceblur.errors import CheckpointError
from faceblur.train import cyclegan, partitioning, srn
from faceblur.train.checkpointing import Checkpointer
from faceblur.train.stage import Stage
from faceblur.train.state import Network

STAGES: dict[str, Stage] = {stage.job: stage for stage in (cyclegan.STAGE, srn.STAGE)}


@dataclasses.dataclass
class TrainedModel:
  """A trained stage: `networks[name].apply(params[name], ...)` for each of its networks
  (CycleGAN: 'g', 'f', 'd_blurred', 'd_sharp'; SRN: 'deblurrer')."""

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
  stage = STAGES[job]
  directory = checkpoint_dir(workdir)
  sharding = partitioning.replicated(partitioning.make_mesh(1))
  networks: dict[str, Network] = {}

  def abstract_for(saved: dict) -> dict:
    """The restore target, from the checkpoint's own config (each one tried carries it): the
    step and each network's parameters."""
    config = ml_collections.ConfigDict(saved)
    if config.get("job") != job:
      raise CheckpointError(
          f"{directory}: is a {config.get('job')!r} checkpoint, expected a {job!r} one")
    # Inference needs no mixed-precision training setting to match: use what it was trained with.
    networks.clear()
    networks.update(stage.make_networks(config))
    abstract = {"step": jax.ShapeDtypeStruct((), jnp.int32),
                **{name: network.abstract_params for name, network in networks.items()}}
    return jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), abstract)

  checkpointer = Checkpointer(directory, read_only=True)
  try:  # a damaged newest checkpoint falls back to the newest that restores, with a warning
    _, saved, restored = checkpointer.restore_with_config(abstract_for, step=step, partial=True)
  finally:
    checkpointer.close()
  restored_step = restored.pop("step")
  return TrainedModel(config=ml_collections.ConfigDict(saved), networks=dict(networks),
                      params=restored, step=int(restored_step))
