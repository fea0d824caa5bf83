"""Atomic, resumable checkpoints through orbax's `CheckpointManager`.

Orbax writes each step into a temporary folder and renames it only once complete, so a
run killed mid-save (even by SIGKILL) leaves the last complete checkpoint as the latest
one. Next to the train state we store the config that produced it, which lets a later
run refuse, in one line, a checkpoint of another network or shape.
"""

import json
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from faceblur.errors import CheckpointError

STATE_ITEM = "state"
CONFIG_ITEM = "config"


def _model_signature(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
  config = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
  return json.loads(json.dumps(config.get("model", {}), sort_keys=True, default=str))


class Checkpointer:
  """Saves and restores one stage's `TrainState` in `directory`."""

  def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3,
               save_interval_steps: int = 1, read_only: bool = False):
    self.directory = pathlib.Path(directory).absolute()
    if read_only and not self.directory.is_dir():
      raise CheckpointError(f"{self.directory}: no checkpoint folder")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
        create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only)
    try:
      self._manager = ocp.CheckpointManager(
          self.directory, item_names=(STATE_ITEM, CONFIG_ITEM), options=options)
    except OSError as error:
      raise CheckpointError(
          f"{self.directory}: cannot write checkpoints ({error.strerror})") from None

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, config: ml_collections.ConfigDict,
           *, force: bool = False) -> bool:
    try:
      return self._manager.save(
          step,
          args=ocp.args.Composite(**{
              STATE_ITEM: ocp.args.StandardSave(state),
              CONFIG_ITEM: ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
          }),
          force=force)
    except OSError as error:
      raise CheckpointError(
          f"{self.directory}: saving step {step} failed ({error.strerror})") from None

  def saved_config(self, step: int | None = None) -> dict[str, Any]:
    step = self._require_step(step)
    restored = self._manager.restore(step, args=ocp.args.Composite(**{
        CONFIG_ITEM: ocp.args.JsonRestore()}))
    return restored[CONFIG_ITEM]

  def restore(self, abstract_state: Any, config: ml_collections.ConfigDict | None = None,
              *, step: int | None = None) -> Any:
    """Restores `step` (default: latest) into the structure and shardings of `abstract_state`."""
    step = self._require_step(step)
    if config is not None:
      self.check_compatible(config, step)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**{
          STATE_ITEM: ocp.args.StandardRestore(abstract_state)}))
    except (ValueError, KeyError, TypeError) as error:
      first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
      raise CheckpointError(
          f"{self.directory}/{step}: does not fit this network ({first_line})") from None
    return restored[STATE_ITEM]

  def check_compatible(self, config: ml_collections.ConfigDict, step: int | None = None) -> None:
    saved = _model_signature(self.saved_config(step))
    wanted = _model_signature(config)
    for key in sorted(set(saved) | set(wanted)):
      if saved.get(key) != wanted.get(key):
        raise CheckpointError(
            f"{self.directory}: checkpoint has model.{key}={saved.get(key)!r} "
            f"but the config asks for {wanted.get(key)!r}")

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def _require_step(self, step: int | None) -> int:
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"{self.directory}: no complete checkpoint found")
    return step


def abstract_like(state: Any) -> Any:
  """Shape/dtype/sharding skeleton of `state`, the restore target orbax wants."""
  return jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), state)
