"""Params-only releases of a trained stage: what inference needs, none of what training needs.

A checkpoint holds the whole train state (optimiser moments, image pools, RNG), so loading it
ties inference to the optimiser's layout. A release holds only the networks' weights and
the config that builds the networks, so a change to the optimiser never breaks it:

  <release>/release.json   format and version, the stage (`job`), the step, the networks, the
                           training face size, whether EMA weights are held and which weights
                           inference uses by default, the whole training config
  <release>/params/        orbax PyTree {"params": {network: weights}, "ema": {network: EMA}}
  <release>/deblurrer.stablehlo   (the export job) the restoring network as `jax.export`
                           bytes, runnable with jax alone (see `faceblur.inference.export`)

Releases are written to `<release>.writing` and renamed into place, so a release folder is
always complete; writing over an older release replaces it. A missing or damaged release is
one `CheckpointError` line naming the file.
"""

import json
import pathlib
import shutil
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from faceblur.errors import CheckpointError, ConfigError, StorageError
from faceblur.storage import os_reason
from faceblur.train.checkpointing import _quiet_failed_restore_leftovers, _reason

FORMAT = "faceblur-release"
VERSION = 1
RELEASE_FILE = "release.json"
PARAMS_DIR = "params"
WEIGHTS = ("params", "ema")  # the two sets of weights a release may hold


def is_release(path: str | pathlib.Path) -> bool:
  return (pathlib.Path(path) / RELEASE_FILE).is_file()


def training_image_size(config: ml_collections.ConfigDict | dict) -> int | None:
  """The side of the faces a stage was trained on (its crops)."""
  data = config.get("data") or {}
  return data.get("crop_size")


def write_release(directory: str | pathlib.Path, *, job: str, step: int,
                  config: ml_collections.ConfigDict, params: dict[str, Any],
                  ema: dict[str, Any] | None = None, default_weights: str = "params",
                  files: dict[str, bytes] | None = None) -> pathlib.Path:
  """Writes a release of `params` (and `ema`, the EMA weights by network) into `directory`.

  Every process calls it (orbax writes the arrays once); `files` are extra files by name.
  """
  directory = pathlib.Path(directory).absolute()
  if default_weights not in WEIGHTS or (default_weights == "ema" and not ema):
    raise ConfigError(f"a release's default weights must be one of {WEIGHTS} that it holds")
  if directory.exists() and not is_release(directory) and (
      not directory.is_dir() or any(directory.iterdir())):
    raise ConfigError(f"{directory}: exists and is not a release; choose another output")
  config_dict = json.loads(config.to_json_best_effort())
  metadata = {
      "format": FORMAT, "version": VERSION, "job": job, "step": int(step),
      "networks": sorted(params), "ema_networks": sorted(ema or {}),
      "ema_decay": config_dict.get("ema_decay", 0.0), "default_weights": default_weights,
      "image_size": training_image_size(config_dict), "files": sorted(files or {}),
      "config": config_dict,
  }
  staging = directory.with_name(directory.name + ".writing")
  primary = jax.process_index() == 0
  try:
    if primary and staging.exists():
      shutil.rmtree(staging)  # what an interrupted write left
    _sync(f"faceblur: release staging {staging}")
    tree = {"params": params, **({"ema": ema} if ema else {})}
    checkpointer = ocp.StandardCheckpointer()
    try:
      checkpointer.save(staging / PARAMS_DIR, tree)
      checkpointer.wait_until_finished()
    finally:
      checkpointer.close()
    if primary:
      for name, content in (files or {}).items():
        (staging / name).write_bytes(content)
      (staging / RELEASE_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
      old = directory.with_name(directory.name + ".old")
      if old.exists():
        shutil.rmtree(old)
      if directory.exists():
        directory.rename(old)
      staging.rename(directory)
      if old.exists():
        shutil.rmtree(old)
    _sync(f"faceblur: release written {directory}")
  except (OSError, ValueError) as error:  # tensorstore raises ValueError('... os_error_code')
    raise StorageError(f"{directory}: cannot write the release ({os_reason(error)})") from None
  return directory


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415

    multihost_utils.sync_global_devices(name)


def read_metadata(directory: str | pathlib.Path) -> dict[str, Any]:
  """`release.json` of `directory`, checked; a one-line `CheckpointError` if it is not one."""
  path = pathlib.Path(directory) / RELEASE_FILE
  try:
    metadata = json.loads(path.read_text())
  except FileNotFoundError:
    raise CheckpointError(f"{directory}: not a faceblur release (no {RELEASE_FILE})") from None
  except (OSError, ValueError) as error:
    raise CheckpointError(f"{path}: cannot be read ({_reason(error)})") from None
  if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
    raise CheckpointError(f"{path}: not a faceblur release file")
  if metadata.get("version") != VERSION:
    raise CheckpointError(f"{path}: release version {metadata.get('version')!r}; this faceblur "
                          f"reads version {VERSION}")
  missing = [key for key in ("job", "step", "networks", "ema_networks", "default_weights",
                             "config") if key not in metadata]
  if missing:
    raise CheckpointError(f"{path}: lacks {', '.join(missing)}")
  return metadata


def restore_weights(directory: str | pathlib.Path, abstract: dict[str, Any]) -> dict[str, Any]:
  """The weights of a release into `abstract` ({"params": ..., "ema": ...} of
  `jax.ShapeDtypeStruct`s with shardings); a one-line `CheckpointError` if they do not read."""
  path = pathlib.Path(directory).absolute() / PARAMS_DIR
  if not path.is_dir():
    raise CheckpointError(f"{path}: missing; the release is incomplete, export it again")
  _quiet_failed_restore_leftovers(path)
  checkpointer = ocp.StandardCheckpointer()
  try:
    return checkpointer.restore(path, abstract)
  except Exception as error:  # tensorstore's ValueErrors, orbax's KeyErrors, OS errors
    raise CheckpointError(f"{path}: cannot be restored ({_reason(error)}); the release is "
                          "damaged, export it again") from None
  finally:
    checkpointer.close()


def write_after_training(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                         state: Any) -> None:
  """With `config.write_release`, the release of a run that ended without error (its last
  step, or `stop_after_steps`) in `<workdir>/release`, unless that release is of this step."""
  if not config.get("write_release", False):
    return
  directory = pathlib.Path(workdir) / "release"
  step = int(jax.device_get(state.step))
  if is_release(directory):
    try:
      if read_metadata(directory)["step"] == step:
        return
    except CheckpointError:
      pass  # damaged: write it again
  write_release(directory, job=config.job, step=step, config=config, params=state.params,
                ema=state.ema_params)
  if jax.process_index() == 0:
    print(f"Release of step {step} written to {directory}", flush=True)
