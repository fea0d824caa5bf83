"""Loading a finished (or partly finished) stage for inference: synthesis, evaluation, deblur.

A checkpoint carries the config it was trained with, so a user only names the workdir: the
networks are rebuilt from that config and only their parameters restored into them (the
state's network fields, `Stage.make_networks`' names): no optimiser is built, and none of
its state is read. A params-only release (`faceblur.train.release`) loads the same way, by
its folder or by a workdir that holds one in `release/` and no checkpoints.

A run trained with `ema_decay > 0` also has EMA weights; `use_ema=True` uses them in place of
the trained ones (a release exported with `use_ema=True` uses them by default).
"""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import optax

from faceblur.errors import CheckpointError
from faceblur.train import cyclegan, partitioning, release, srn
from faceblur.train.checkpointing import Checkpointer
from faceblur.train.stage import Stage
from faceblur.train.state import Network

STAGES: dict[str, Stage] = {stage.job: stage for stage in (cyclegan.STAGE, srn.STAGE)}
STATE_TYPES = {"cyclegan": cyclegan.CycleGANState, "srn": srn.SRNState}


@dataclasses.dataclass
class TrainedModel:
  """A trained stage: `networks[name].apply(params[name], ...)` for each of its networks
  (CycleGAN: 'g', 'f', 'd_blurred', 'd_sharp'; SRN: 'deblurrer').

  `params` are the weights in use: the EMA ones in place of the trained ones where `weights`
  is 'ema'. `trained_params` are the trained ones, `ema_params` the EMA ones (None without).
  """

  config: ml_collections.ConfigDict
  networks: dict[str, Network]
  params: dict
  step: int
  weights: str = "params"
  trained_params: dict | None = None
  ema_params: dict | None = None

  @property
  def job(self) -> str:
    return self.config.job


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


def release_dir(workdir: str | pathlib.Path) -> pathlib.Path | None:
  """The release `workdir` names: itself, or its `release/` when it has no checkpoints."""
  path = pathlib.Path(workdir)
  if not str(workdir):
    return None
  if release.is_release(path):
    return path
  if not (path / "checkpoints").is_dir() and release.is_release(path / "release"):
    return path / "release"
  return None


def _abstract(tree: dict, sharding) -> dict:
  return jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), tree)


def _stage_of(where: pathlib.Path, what: str, saved_job: object, job: str | None) -> Stage:
  if job is not None and saved_job != job:
    raise CheckpointError(f"{where}: is a {saved_job!r} {what}, expected a {job!r} one")
  if saved_job not in STAGES:
    raise CheckpointError(f"{where}: is a {saved_job!r} {what}, not one of a trained stage "
                          f"({', '.join(STAGES)})")
  return STAGES[saved_job]


def _no_ema(where: pathlib.Path) -> CheckpointError:
  return CheckpointError(f"{where}: has no EMA weights (trained with ema_decay=0); load it "
                         "without use_ema")


def _in_use(params: dict, ema: dict | None, use_ema: bool) -> dict:
  return {**params, **(ema or {})} if use_ema else dict(params)


def load_trained(workdir: str | pathlib.Path, job: str | None = None, *,
                 step: int | None = None, use_ema: bool | None = None) -> TrainedModel:
  """Restores the weights of a `job` ('cyclegan' or 'srn'; None: either) run or release, on
  the default devices. `use_ema`: use the EMA weights (None: a release's default, for a
  checkpoint the trained weights)."""
  found_release = release_dir(workdir)
  if found_release is not None:
    return _load_release(found_release, job, step=step, use_ema=use_ema)
  directory = checkpoint_dir(workdir)
  sharding = partitioning.replicated(partitioning.local_mesh())
  networks: dict[str, Network] = {}
  ema_networks: list[str] = []

  def abstract_for(saved: dict) -> dict:
    """The restore target, from the checkpoint's own config (each one tried carries it): the
    step, each network's parameters and, if it has them, their EMA."""
    config = ml_collections.ConfigDict(saved)
    stage = _stage_of(directory, "checkpoint", config.get("job"), job)
    has_ema = bool(config.get("ema_decay", 0.0))
    if use_ema and not has_ema:
      raise _no_ema(directory)
    # Inference needs no mixed-precision training setting to match: use what it was trained with.
    networks.clear()
    networks.update(stage.make_networks(config))
    abstract = {"step": jax.ShapeDtypeStruct((), jnp.int32),
                **{name: network.abstract_params for name, network in networks.items()}}
    ema_networks[:] = STATE_TYPES[stage.job].ema_networks() if has_ema else []
    if ema_networks:
      abstract["ema"] = optax.EmaState(
          count=jax.ShapeDtypeStruct((), jnp.int32),
          ema={name: networks[name].abstract_params for name in ema_networks})
    return _abstract(abstract, sharding)

  checkpointer = Checkpointer(directory, read_only=True)
  try:  # a damaged newest checkpoint falls back to the newest that restores, with a warning
    _, saved, restored = checkpointer.restore_with_config(abstract_for, step=step, partial=True)
  finally:
    checkpointer.close()
  restored_step = restored.pop("step")
  ema_state = restored.pop("ema", None)
  ema = dict(ema_state.ema) if ema_state is not None else None
  return TrainedModel(config=ml_collections.ConfigDict(saved), networks=dict(networks),
                      params=_in_use(restored, ema, bool(use_ema)), step=int(restored_step),
                      weights="ema" if use_ema else "params", trained_params=restored,
                      ema_params=ema)


def _load_release(directory: pathlib.Path, job: str | None, *, step: int | None,
                  use_ema: bool | None) -> TrainedModel:
  metadata = release.read_metadata(directory)
  config = ml_collections.ConfigDict(metadata["config"])
  stage = _stage_of(directory, "release", metadata["job"], job)
  if step is not None and step != metadata["step"]:
    raise CheckpointError(f"{directory}: is a release of step {metadata['step']}, not {step}")
  if use_ema is None:
    use_ema = metadata["default_weights"] == "ema"
  if use_ema and not metadata["ema_networks"]:
    raise _no_ema(directory)
  all_networks = stage.make_networks(config)
  unknown = sorted(set(metadata["networks"]) - set(all_networks))
  if unknown:
    raise CheckpointError(f"{directory / release.RELEASE_FILE}: names networks "
                          f"{', '.join(unknown)} that a {stage.job!r} stage does not have")
  networks = {name: all_networks[name] for name in metadata["networks"]}
  abstract = {"params": {name: network.abstract_params for name, network in networks.items()}}
  if metadata["ema_networks"]:
    abstract["ema"] = {name: networks[name].abstract_params for name in metadata["ema_networks"]}
  sharding = partitioning.replicated(partitioning.local_mesh())
  restored = release.restore_weights(directory, _abstract(abstract, sharding))
  params, ema = restored["params"], restored.get("ema")
  return TrainedModel(config=config, networks=networks, params=_in_use(params, ema, use_ema),
                      step=int(metadata["step"]), weights="ema" if use_ema else "params",
                      trained_params=params, ema_params=ema)
