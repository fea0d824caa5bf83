"""Atomic, resumable checkpoints through orbax's `CheckpointManager`.

Orbax writes each step into a temporary folder and renames it only once complete, so a
run killed mid-save (even by SIGKILL) leaves the last complete checkpoint as the latest
one. Next to the train state we store the config that produced it, which lets a later
run refuse, in one line, a checkpoint of another network or shape.

Writes go on in the background; a failed one (full disk, read-only or vanished folder) is
reported by the next `save` or `wait_until_finished` as one `StorageError` line naming the
step, the OS's reason and the last complete checkpoint, which orbax never deletes before
its successor is complete.
"""

import json
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from faceblur.errors import CheckpointError, StorageError, os_reason

STATE_ITEM = "state"
CONFIG_ITEM = "config"
# Config keys that may change between a run and its resumption without changing the state.
_RUN_CONTROL_KEYS = ("num_train_steps", "num_epochs", "stop_after_steps", "num_workers",
                     "max_checkpoints_to_keep", "num_devices", "distributed.")


def _as_dict(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
  config = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
  return json.loads(json.dumps(config, sort_keys=True, default=str))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(tree, dict):
    return {prefix: tree}
  flat = {}
  for key, value in tree.items():
    flat.update(_flatten(value, f"{prefix}{key}." if isinstance(value, dict) else prefix + key))
  return flat


def _changed_keys(saved: ml_collections.ConfigDict | dict,
                  wanted: ml_collections.ConfigDict | dict) -> list[tuple[str, Any, Any]]:
  """(dotted key, saved value, wanted value) for every leaf of the two configs that differs."""
  saved, wanted = _flatten(_as_dict(saved)), _flatten(_as_dict(wanted))
  return [(key, saved.get(key), wanted.get(key)) for key in sorted(set(saved) | set(wanted))
          if saved.get(key) != wanted.get(key)]


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
    self._writing_step: int | None = None  # a save that may still fail in the background
    try:
      self._manager = ocp.CheckpointManager(
          self.directory, item_names=(STATE_ITEM, CONFIG_ITEM), options=options)
    except OSError as error:
      raise StorageError(
          f"{self.directory}: cannot write checkpoints ({os_reason(error)})") from None

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, config: ml_collections.ConfigDict,
           *, force: bool = False) -> bool:
    self.wait_until_finished()  # the previous save's failure is reported as that step's
    try:
      saved = self._manager.save(
          step,
          args=ocp.args.Composite(**{
              STATE_ITEM: ocp.args.StandardSave(state),
              CONFIG_ITEM: ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
          }),
          force=force)
    except (OSError, ValueError) as error:  # tensorstore raises ValueError('... os_error_code')
      raise self._write_error(step, error) from None
    if saved:
      self._writing_step = step
    return saved

  def _write_error(self, step: int | None, error: BaseException) -> StorageError:
    last = self.latest_step()
    kept = f"{self.directory}/{last}" if last is not None else "none"
    return StorageError(f"{self.directory}: writing checkpoint {step} failed "
                        f"({os_reason(error)}); last complete checkpoint: {kept}")

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
      differing = self._differing_keys(config, step) if config is not None else ""
      raise CheckpointError(
          f"{self.directory}/{step}: does not fit this network"
          + (f"; the config differs in {differing}" if differing else f" ({first_line})")
      ) from None
    return restored[STATE_ITEM]

  def _differing_keys(self, config: ml_collections.ConfigDict, step: int,
                      limit: int = 3) -> str:
    """'key=saved (now new), ...' for the config keys that changed since `step` was saved."""
    changed = [f"{key}={saved!r} (now {wanted!r})"
               for key, saved, wanted in _changed_keys(self.saved_config(step), config)
               if not key.endswith("_every_steps") and not key.startswith(_RUN_CONTROL_KEYS)]
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return ", ".join(changed[:limit]) + more

  def check_compatible(self, config: ml_collections.ConfigDict, step: int | None = None) -> None:
    """Raises a one-line `CheckpointError` naming the first model key (or the job) that
    differs between the saved config and `config`."""
    saved_config = self.saved_config(step)
    if saved_config.get("job") != config.get("job"):
      raise CheckpointError(
          f"{self.directory}: holds a {saved_config.get('job')!r} checkpoint but this is the "
          f"{config.get('job')!r} job (use another workdir)")
    for key, saved, wanted in _changed_keys(saved_config.get("model", {}),
                                            config.get("model", {})):
      raise CheckpointError(f"{self.directory}: checkpoint has model.{key}={saved!r} "
                            f"but the config asks for {wanted!r}")

  def wait_until_finished(self) -> None:
    """Blocks until the last save is on disk; raises `StorageError` if it failed."""
    step, self._writing_step = self._writing_step, None
    try:
      self._manager.wait_until_finished()
    except (OSError, ValueError) as error:
      raise self._write_error(step, error) from None

  def close(self) -> None:
    """Releases orbax's threads. Call `wait_until_finished` first: a failed save is not
    reported here (this also runs while another error is on its way out)."""
    try:
      self._manager.close()
    except (OSError, ValueError):
      pass

  def _require_step(self, step: int | None) -> int:
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"{self.directory}: no complete checkpoint found")
    return step


def abstract_like(state: Any) -> Any:
  """Shape/dtype/sharding skeleton of `state`, the restore target orbax wants."""
  return jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), state)
