"""Atomic, resumable checkpoints through orbax's `CheckpointManager`.

Orbax writes each step into a temporary folder and renames it only once complete, so a
run killed mid-save (even by SIGKILL) leaves the last complete checkpoint as the latest
one. Next to the train state we store the config that produced it, which lets a later
run refuse, in one line, a checkpoint of another network or shape.

Writes go on in the background; a failed one (full disk, read-only or vanished folder) is
reported by the next `save` or `wait_until_finished` as one `StorageError` line naming the
step, the OS's reason and the last complete checkpoint, which orbax never deletes before
its successor is complete.

A checkpoint damaged after the fact (files truncated by a broken copy or a disk error, or
deleted) does not end the run: restoring without a step takes the newest checkpoint that
restores, with one warning line per damaged one skipped. A training run moves a skipped one
aside to `<step>.damaged` (kept, never deleted), so that saving that step again later does
not collide with it. A checkpoint of another stage or config is no damage: it stops with the
one line naming the key, whatever older checkpoints there are. Nor is one whose state has
other fields than this version's (written before the stages' states were typed, say): it
stops with one line naming them.

Inference restores only the networks' fields of a state (a partial restore), so it needs no
optimiser and reads none of the optimiser's arrays.
"""

import json
import logging
import pathlib
import re
import sys
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from faceblur.console import warn
from faceblur.errors import CheckpointError, StorageError
from faceblur.storage import os_reason

STATE_ITEM = "state"
_ORBAX_METADATA_FILE = "_CHECKPOINT_METADATA"
CONFIG_ITEM = "config"
# Config keys that may change between a run and its resumption without changing the state.
_RUN_CONTROL_KEYS = ("num_train_steps", "num_epochs", "stop_after_steps", "num_workers",
                     "max_checkpoints_to_keep", "keep_checkpoint_every_steps", "num_devices",
                     "distributed.")


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


def _reason(error: BaseException, limit: int = 160) -> str:
  """The gist of why a checkpoint did not restore, for one line. tensorstore chains its
  contexts ('OUT_OF_RANGE: Error opening "cast" driver: ...: Requested byte range [0, 12663)
  is not valid ...') and appends kilobytes of spec: keep the status and the innermost cause."""
  text = (str(error).strip().splitlines() or [""])[0]
  text = re.sub(r"\s*\[tensorstore_spec.*$", "", text)
  status = re.match(r"([A-Z][A-Z_]+): (.*)", text)
  if status:
    text = f"{status.group(1)}: {status.group(2).split(': ')[-1]}"
  else:
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
  return text if len(text) <= limit else text[:limit - 3] + "..."


class _Unrestorable(Exception):
  """The files of one checkpoint do not read (internal to the fallback)."""

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


_QUIET_DIRECTORIES: set[str] = set()
_WARNED: set[str] = set()  # each damaged bookkeeping file once per process
_previous_unraisablehook: list[Callable[[Any], None]] = []


def _for_the_log_file_only(record: logging.LogRecord) -> bool:
  """A failed restore's leftovers pass only where main.py gave asyncio's records a log file
  (its console handler drops them): the file keeps all of it, the console none."""
  return bool(logging.getLogger("asyncio").handlers) or not _about_a_failed_restore(record)


def _about_a_failed_restore(record: logging.LogRecord) -> bool:
  error = record.exc_info[1] if record.exc_info else None
  return error is not None and (_is_closed_loop_callback(error) or any(
      path in str(error) for path in _QUIET_DIRECTORIES))


def _is_closed_loop_callback(error: BaseException | None) -> bool:
  return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"


def _unraisablehook(unraisable: Any) -> None:
  if not _is_closed_loop_callback(unraisable.exc_value):
    (_previous_unraisablehook[-1] if _previous_unraisablehook else sys.__unraisablehook__)(
        unraisable)
    return
  try:  # asyncio's logger: filtered above, so it reaches log.txt or nothing
    logging.getLogger("asyncio").warning(
        "after a failed checkpoint restore: %s", unraisable.err_msg or "Exception ignored",
        exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback))
  except Exception:  # noqa: BLE001 (interpreter shutdown: logging may be gone)
    pass


def _quiet_failed_restore_leftovers(directory: pathlib.Path) -> None:
  """A failed orbax restore leaves tensorstore reads in flight: as they finish, even before
  the error reaches us, they call back into orbax's closed event loop (a traceback each
  through `sys.unraisablehook`, hundreds for one checkpoint) or leave futures whose error
  asyncio logs when they are collected. They say nothing the one warning line does not, so
  for every restore from `directory` on they go to asyncio's logger, which main.py writes to
  log.txt and keeps off the console; without main's log file they are dropped."""
  _QUIET_DIRECTORIES.add(str(directory))
  if sys.unraisablehook is not _unraisablehook:
    _previous_unraisablehook.append(sys.unraisablehook)
    sys.unraisablehook = _unraisablehook
  asyncio_logger = logging.getLogger("asyncio")
  if _for_the_log_file_only not in asyncio_logger.filters:
    asyncio_logger.addFilter(_for_the_log_file_only)


def _print_warning(line: str) -> None:
  if jax.process_index() == 0:
    warn(line.removeprefix("warning: "))


def _changed_keys(saved: ml_collections.ConfigDict | dict,
                  wanted: ml_collections.ConfigDict | dict) -> list[tuple[str, Any, Any]]:
  """(dotted key, saved value, wanted value) for every leaf of the two configs that differs."""
  saved, wanted = _flatten(_as_dict(saved)), _flatten(_as_dict(wanted))
  return [(key, saved.get(key), wanted.get(key)) for key in sorted(set(saved) | set(wanted))
          if saved.get(key) != wanted.get(key)]


class Checkpointer:
  """Saves and restores one stage's `TrainState` in `directory`."""

  def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3,
               keep_period: int | None = None, save_interval_steps: int = 1,
               read_only: bool = False):
    """`keep_period`: checkpoints at its multiples are kept beyond `max_to_keep`."""
    self.directory = pathlib.Path(directory).absolute()
    self._read_only = read_only
    if read_only and not self.directory.is_dir():
      raise CheckpointError(f"{self.directory}: no checkpoint folder")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, keep_period=keep_period or None,
        save_interval_steps=save_interval_steps,
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
              *, step: int | None = None, log: Callable[[str], None] | None = None) -> Any:
    """Restores `step` (default: the newest that restores, see the module docstring) into the
    structure and shardings of `abstract_state`. With `config`, a checkpoint of another job,
    model or optimiser is refused in one line instead. Warnings also go to `log`."""
    _, _, state = self.restore_with_config(lambda saved: abstract_state, config, step=step,
                                           log=log)
    return state

  def restore_with_config(self, abstract_for: Callable[[dict[str, Any]], Any],
                          config: ml_collections.ConfigDict | None = None, *,
                          step: int | None = None, log: Callable[[str], None] | None = None,
                          partial: bool = False) -> tuple[int, dict[str, Any], Any]:
    """(step, saved config, state) as `restore`, the restore target built by
    `abstract_for(saved config)`: inference rebuilds the networks from the checkpoint's own
    config, which a damaged checkpoint may not have. A `CheckpointError` from `abstract_for`
    (a checkpoint of the wrong stage) stops the search. `partial`: the target is a dict of
    some of the state's fields, and only those are read."""
    if step is not None:
      try:
        saved, state = self._restore_one(step, abstract_for, config, partial)
      except _Unrestorable as error:
        raise CheckpointError(
            f"{self.directory}/{step}: cannot be restored ({error.reason})") from None
      self._warn_about_damaged_bookkeeping(step, log)
      return step, saved, state
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise CheckpointError(f"{self.directory}: no complete checkpoint found")
    damaged: list[tuple[int, str]] = []
    for candidate in steps:
      try:
        saved, state = self._restore_one(candidate, abstract_for, config, partial)
      except _Unrestorable as error:
        damaged.append((candidate, error.reason))
        continue
      for bad_step, reason in damaged:
        line = (f"warning: {self.directory}/{bad_step} cannot be restored ({reason}); using "
                f"{self.directory}/{candidate} instead{self._move_aside(bad_step)}")
        _print_warning(line)
        if log is not None:
          log(line)
      self._warn_about_damaged_bookkeeping(candidate, log)
      return candidate, saved, state
    hint = "" if self._read_only else "; move the folder away to train afresh"
    raise CheckpointError(
        f"{self.directory}: none of its checkpoints can be restored ("
        + "; ".join(f"step {bad_step}: {reason}" for bad_step, reason in damaged) + ")" + hint)

  def _restore_one(self, step: int, abstract_for: Callable[[dict[str, Any]], Any],
                   config: ml_collections.ConfigDict | None,
                   partial: bool = False) -> tuple[dict[str, Any], Any]:
    """Raises `_Unrestorable` when the files of `step` do not read, `CheckpointError` when
    they do but belong to another network (a config that differs explains the failure) or
    to another layout of the state."""
    _quiet_failed_restore_leftovers(self.directory)
    try:
      saved = self.saved_config(step)
    except Exception as error:  # unreadable, truncated or missing: JSON, OS, orbax errors
      raise _Unrestorable(_reason(error)) from None
    if config is not None:
      self._check_compatible(saved, config)
    abstract_state = abstract_for(saved)
    self._check_fields(step, abstract_state, partial)
    if partial:
      restore = ocp.args.PyTreeRestore(
          abstract_state, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state),
          partial_restore=True)
    else:
      restore = ocp.args.StandardRestore(abstract_state)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**{STATE_ITEM: restore}))
    except Exception as error:  # tensorstore's ValueErrors, a KeyError for a missing item...
      differing = self._differing_keys(saved, config) if config is not None else ""
      if differing:
        raise CheckpointError(f"{self.directory}/{step}: does not fit this network; the "
                              f"config differs in {differing}") from None
      raise _Unrestorable(_reason(error)) from None
    return saved, restored[STATE_ITEM]

  def _warn_about_damaged_bookkeeping(self, step: int,
                                      log: Callable[[str], None] | None) -> None:
    """One warning line for a restored checkpoint whose `_CHECKPOINT_METADATA` does not read.
    It holds orbax's timestamps only (faceblur keeps its config in the `config` item), so the
    arrays restore without it; orbax itself logs the file's whole content, to log.txt only."""
    path = self.directory / str(step) / _ORBAX_METADATA_FILE
    try:
      json.loads(path.read_text())
    except FileNotFoundError:  # older orbax versions do not write it
      return
    except (OSError, UnicodeDecodeError, ValueError) as error:
      line = (f"warning: {path} cannot be read ({_reason(error)}); restored "
              f"{self.directory}/{step} without it (it holds only orbax's timestamps)")
      if line not in _WARNED:
        _WARNED.add(line)
        _print_warning(line)
        if log is not None:
          log(line)

  def _check_fields(self, step: int, abstract_state: Any, partial: bool) -> None:
    """Refuses, in one line, a checkpoint whose state has other top-level fields than the
    target (a partial target: lacks one of them). orbax would fail deep inside for a full
    restore, which would be taken for damage, and silently for a partial one."""
    handler = ocp.PyTreeCheckpointHandler()
    try:
      saved_tree = handler.metadata(self.directory / str(step) / STATE_ITEM).tree
    except Exception as error:  # a missing or unreadable _METADATA: the files are damaged
      raise _Unrestorable(_reason(error)) from None
    finally:
      handler.close()
    saved = {name for name, value in saved_tree.items() if jax.tree.leaves(value)}
    wanted = {_field_name(path[0]) for path, _ in jax.tree_util.tree_leaves_with_path(
        abstract_state)}
    if wanted - saved or (not partial and saved - wanted):
      raise CheckpointError(
          f"{self.directory}/{step}: its train state has the fields {', '.join(sorted(saved))}, "
          f"where this version expects {', '.join(sorted(wanted))} (another faceblur version "
          "wrote it); train again in another workdir, or use that version")

  def _move_aside(self, step: int) -> str:
    """Renames a damaged `step` to `<step>.damaged` so that the run can save `step` again;
    the sentence to append to the warning."""
    if self._read_only:
      return ""
    source = self.directory / str(step)
    target, number = source.with_name(f"{step}.damaged"), 1
    while target.exists():  # damaged again after an earlier move: keep both
      number += 1
      target = source.with_name(f"{step}.damaged.{number}")
    moved = f"; kept the damaged one as {target}"
    if jax.process_index() == 0:
      try:
        source.rename(target)
      except OSError as error:
        moved = f"; could not move the damaged one aside ({os_reason(error)})"
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # noqa: PLC0415

      multihost_utils.sync_global_devices(f"faceblur: moved aside {source}")
    self._manager.reload()
    return moved

  def _differing_keys(self, saved: dict[str, Any], config: ml_collections.ConfigDict,
                      limit: int = 3) -> str:
    """'key=saved (now new), ...' for the config keys that changed since `saved`."""
    changed = [f"{key}={old!r} (now {new!r})"
               for key, old, new in _changed_keys(saved, config)
               if not key.endswith("_every_steps") and not key.startswith(_RUN_CONTROL_KEYS)]
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return ", ".join(changed[:limit]) + more

  def check_compatible(self, config: ml_collections.ConfigDict, step: int | None = None) -> None:
    """Raises a one-line `CheckpointError` naming the first model key (or the job) that
    differs between the saved config and `config`."""
    self._check_compatible(self.saved_config(step), config)

  def _check_compatible(self, saved_config: dict[str, Any],
                        config: ml_collections.ConfigDict) -> None:
    if saved_config.get("job") != config.get("job"):
      raise CheckpointError(
          f"{self.directory}: holds a {saved_config.get('job')!r} checkpoint but this is the "
          f"{config.get('job')!r} job (use another workdir)")
    saved_ema, wanted_ema = saved_config.get("ema_decay", 0.0), config.get("ema_decay", 0.0)
    if bool(saved_ema) != bool(wanted_ema):  # the state has an EMA field or not
      raise CheckpointError(
          f"{self.directory}: checkpoint has ema_decay={saved_ema!r} but the config asks for "
          f"{wanted_ema!r}; a run cannot switch its EMA on or off (use another workdir)")
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


def _field_name(key: Any) -> str:
  """The name a pytree path entry (a dataclass field, a dict key) has in orbax's metadata."""
  for attribute in ("name", "key", "idx"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def abstract_like(state: Any) -> Any:
  """Shape/dtype/sharding skeleton of `state`, the restore target orbax wants."""
  return jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), state)
