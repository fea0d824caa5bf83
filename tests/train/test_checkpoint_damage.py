"""A damaged checkpoint (truncated or deleted files, as a broken copy or a disk error leaves
them) costs one warning line and the steps since the previous checkpoint, never the run; and
orbax's chatter stays off the console."""

import logging
import pathlib
import re
import shutil
import sys
import types

import jax
import numpy as np
import pytest
from helpers import assert_one_line_error, run_main, srn_config
from PIL import Image

from faceblur.errors import CheckpointError
from faceblur.train import checkpointing, srn
from faceblur.train.checkpointing import Checkpointer
from faceblur.train.trained import load_trained

ABSL_LINE = re.compile(r"^[EFIW]\d{4} ", re.MULTILINE)


def _params(tree) -> list[np.ndarray]:
  return jax.tree.leaves(jax.device_get(tree))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 4-step SRN run (checkpoints 2 and 4) and its final parameters."""
  workdir = tmp_path_factory.mktemp("damage") / "srn"
  final = srn.train_and_evaluate(srn_config(4), workdir)
  return workdir, _params(final.params)


def _copy(trained, tmp_path) -> pathlib.Path:
  return pathlib.Path(shutil.copytree(trained[0], tmp_path / "srn"))


def _data_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  files = [path for path in (step_dir / "state").rglob("*")
           if path.is_file() and path.parent.name == "d"]
  assert files, f"no array data files in {step_dir}"
  return files


def _damage(step_dir: pathlib.Path, how: str) -> None:
  if how == "truncated data":
    for path in _data_files(step_dir):
      path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  elif how == "deleted data":
    for path in _data_files(step_dir):
      path.unlink()
  elif how == "deleted config":
    (step_dir / "config" / "metadata").unlink()
  elif how == "deleted manifest":  # OCDBT's index of the array files
    for path in (step_dir / "state").rglob("manifest.ocdbt"):
      path.unlink()
  elif how == "corrupted tree metadata":  # the state's JSON description of its arrays
    (step_dir / "state" / "_METADATA").write_text('{"tree_metadata": {"params')
  elif how == "corrupted orbax metadata":  # orbax's own timestamps: the arrays still restore
    (step_dir / "_CHECKPOINT_METADATA").write_text('{"init_timestamp_nsecs": 17\n\x00\x07')
  else:
    raise ValueError(how)


def _warnings(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith("warning:")]


@pytest.mark.parametrize("how", ["truncated data", "deleted data", "deleted config"])
def test_damaged_latest_checkpoint_resumes_from_the_previous_one_to_the_same_bits(
    trained, tmp_path, capsys, how):
  workdir = _copy(trained, tmp_path)
  checkpoints = workdir / "checkpoints"
  _damage(checkpoints / "4", how)
  capsys.readouterr()

  resumed = srn.train_and_evaluate(srn_config(4), workdir)

  captured = capsys.readouterr()
  warnings = _warnings(captured.err)
  assert len(warnings) == 1, captured.err[-3000:]
  assert warnings[0].startswith(f"warning: {checkpoints}/4 cannot be restored (")
  assert f"using {checkpoints}/2 instead" in warnings[0]
  assert f"kept the damaged one as {checkpoints}/4.damaged" in warnings[0]
  assert "Traceback" not in captured.err, captured.err[-3000:]
  assert f"Resuming from {checkpoints}/2" in captured.out
  log = (workdir / "log.txt").read_text()
  assert warnings[0] in log and f"Resuming from {checkpoints}/2" in log
  # Step 4 was saved again next to the damaged one, which is kept as it was.
  assert int(resumed.step) == 4
  assert sorted(path.name for path in checkpoints.iterdir()) == ["2", "4", "4.damaged"]
  if how != "deleted config":
    assert (checkpoints / "4.damaged" / "config" / "metadata").is_file()
  for expected, actual in zip(trained[1], _params(resumed.params), strict=True):
    np.testing.assert_array_equal(actual, expected)
  assert Checkpointer(checkpoints).latest_step() == 4
  assert load_trained(workdir, "srn").step == 4


def test_every_checkpoint_damaged_is_one_line_naming_them_all(trained, tmp_path, capsys):
  workdir = _copy(trained, tmp_path)
  checkpoints = workdir / "checkpoints"
  _damage(checkpoints / "4", "truncated data")
  _damage(checkpoints / "2", "deleted config")
  for attempt in (lambda: srn.train_and_evaluate(srn_config(4), workdir),
                  lambda: load_trained(workdir, "srn")):
    with pytest.raises(CheckpointError) as raised:
      attempt()
    message = str(raised.value)
    assert "\n" not in message, message
    assert message.startswith(f"{checkpoints}: none of its checkpoints can be restored (")
    assert "step 4: OUT_OF_RANGE" in message and "step 2: FileNotFoundError" in message
  assert not _warnings(capsys.readouterr().err)
  assert sorted(path.name for path in checkpoints.iterdir()) == ["2", "4"]  # left as found


def test_inference_falls_back_to_the_previous_checkpoint(trained, tmp_path, capsys):
  workdir = _copy(trained, tmp_path)
  checkpoints = workdir / "checkpoints"
  _damage(checkpoints / "4", "truncated data")
  capsys.readouterr()

  model = load_trained(workdir, "srn")

  assert model.step == 2
  for expected, actual in zip(_params(load_trained(trained[0], "srn", step=2).params),
                              _params(model.params), strict=True):
    np.testing.assert_array_equal(actual, expected)
  warnings = _warnings(capsys.readouterr().err)
  assert len(warnings) == 1 and warnings[0].startswith(f"warning: {checkpoints}/4 cannot be ")
  assert warnings[0].endswith(f"using {checkpoints}/2 instead")  # read-only: nothing moved
  assert sorted(path.name for path in checkpoints.iterdir()) == ["2", "4"]
  with pytest.raises(CheckpointError, match=r"/4: cannot be restored \(OUT_OF_RANGE"):
    load_trained(workdir, "srn", step=4)  # asked for by step: no fallback


def test_a_config_mismatch_is_not_taken_for_damage(trained, tmp_path, capsys):
  """A changed optimiser fails inside orbax's restore as damage does; the config explains it,
  so it stops naming the key instead of falling back to (and failing on) older checkpoints."""
  workdir = _copy(trained, tmp_path)
  config = srn_config(4)
  config.optimizer.lstm_grad_clip_norm = 3.0
  with pytest.raises(CheckpointError) as raised:
    srn.train_and_evaluate(config, workdir)
  message = str(raised.value)
  assert message.startswith(f"{workdir / 'checkpoints'}/4: does not fit this network; "), message
  assert "optimizer.lstm_grad_clip_norm=0.0 (now 3.0)" in message
  assert not _warnings(capsys.readouterr().err)
  assert sorted(path.name for path in (workdir / "checkpoints").iterdir()) == ["2", "4"]


def _deblur_args(workdir: pathlib.Path, tmp_path: pathlib.Path) -> tuple[str, ...]:
  image = tmp_path / "in.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 41, 3), np.uint8)).save(image)
  # The whole-image path: a noise image has no face to warn about (see test_faces.py).
  return ("--config=configs/deblur.py", f"--config.checkpoint={workdir}",
          f"--config.input={image}", f"--config.output={tmp_path / 'out.png'}",
          "--config.regions=whole")


def _assert_quiet_console(result, max_lines: int = 3) -> str:
  """The console (stdout and stderr together) holds at most `max_lines` lines, none of them
  from absl, orbax, tensorstore or asyncio; returns it."""
  output = result.stdout + result.stderr
  assert len(output.splitlines()) <= max_lines, output[-3000:]
  assert not ABSL_LINE.findall(output), output[-3000:]
  for noise in ("Traceback", "Event loop is closed", "exception was never retrieved",
                "Exception ignored", "Failed to json parse", "tensorstore"):
    assert noise not in output, output[-3000:]
  return output


# A corrupted tree metadata JSON fails as these do: see the every-damaged test below.
@pytest.mark.parametrize("how", ["truncated data", "deleted manifest", "corrupted orbax metadata"])
def test_deblur_job_console_is_one_warning_line_for_a_damaged_checkpoint(trained, tmp_path, how):
  """Guards README's promise for a damaged checkpoint: faceblur's one `warning:` line on the
  console, whatever orbax logged about it (in log.txt instead), and the output restored."""
  workdir = _copy(trained, tmp_path)
  checkpoints = workdir / "checkpoints"
  _damage(checkpoints / "4", how)
  args = _deblur_args(workdir, tmp_path)

  result = run_main(*args, f"--workdir={tmp_path / 'logs'}")

  assert result.returncode == 0, result.stderr[-3000:]
  assert "Restored 1 of 1 images" in result.stdout
  _assert_quiet_console(result)
  warnings = _warnings(result.stderr)
  assert len(warnings) == 1, result.stderr[-3000:]
  log = (tmp_path / "logs" / "log.txt").read_text()
  if how == "corrupted orbax metadata":
    assert warnings[0].startswith(f"warning: {checkpoints}/4/_CHECKPOINT_METADATA cannot be "
                                  "read (JSONDecodeError"), warnings[0]
    assert f"restored {checkpoints}/4 without it" in warnings[0]
    assert "Failed to json parse" in log  # orbax's own line, with the file's content
  else:
    assert warnings[0].startswith(f"warning: {checkpoints}/4 cannot be restored ("), warnings[0]
    assert warnings[0].endswith(f"using {checkpoints}/2 instead")
  # orbax's read-only notes went to the log file instead, and --verbosity shows them.
  assert "Given directory is read only" in log
  if how == "truncated data":
    verbose = run_main(*args, "--verbosity=0")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "Given directory is read only" in verbose.stderr


def test_deblur_job_console_is_one_error_line_when_every_checkpoint_is_damaged(trained,
                                                                              tmp_path):
  """Guards the every-checkpoint-damaged case: faceblur's one `error:` line naming each step,
  and no orbax line before it (its `Failed to json parse` records go to log.txt)."""
  workdir = _copy(trained, tmp_path)
  checkpoints = workdir / "checkpoints"
  for step, how in (("4", "corrupted tree metadata"), ("2", "deleted manifest")):
    _damage(checkpoints / step, how)
    _damage(checkpoints / step, "corrupted orbax metadata")

  result = run_main(*_deblur_args(workdir, tmp_path), f"--workdir={tmp_path / 'logs'}")

  output = _assert_quiet_console(result, max_lines=1)
  assert_one_line_error(result, f"{checkpoints}: none of its checkpoints can be restored (",
                        "step 4: JSONDecodeError", "step 2: NOT_FOUND")
  assert not _warnings(output)
  assert "Failed to json parse" in (tmp_path / "logs" / "log.txt").read_text()


def test_a_checkpoint_of_an_earlier_state_layout_is_refused_in_one_line(tmp_path, capsys):
  """The untyped state of earlier versions (params/opt_states/extras dicts) is not damage:
  training and inference stop with one line naming both layouts, and nothing is moved."""
  checkpoints = tmp_path / "srn" / "checkpoints"
  earlier = {"step": np.int32(2), "rng": np.zeros(2, np.uint32), "extras": {},
             "params": {"deblurrer": {"kernel": np.zeros((3, 3), np.float32)}},
             "opt_states": {"deblurrer": {"count": np.int32(2)}}}
  checkpointer = Checkpointer(checkpoints)
  checkpointer.save(2, earlier, srn_config(4), force=True)
  checkpointer.wait_until_finished()
  checkpointer.close()
  for attempt in (lambda: load_trained(checkpoints, "srn"),
                  lambda: srn.train_and_evaluate(srn_config(4), checkpoints.parent)):
    with pytest.raises(CheckpointError) as raised:
      attempt()
    message = str(raised.value)
    assert "\n" not in message, message
    assert message.startswith(f"{checkpoints}/2: its train state has the fields "
                              "opt_states, params, rng, step, where this version expects "), message
    assert "deblurrer" in message and "another faceblur version wrote it" in message
  assert not _warnings(capsys.readouterr().err)
  assert sorted(path.name for path in checkpoints.iterdir()) == ["2"]


def test_a_failed_restores_leftovers_reach_the_log_file_and_never_the_console(
    tmp_path, monkeypatch, capsys):
  """Guards where the tracebacks of tensorstore reads that finish after a failed restore (calls
  into orbax's closed event loop, hundreds per checkpoint, when timing lets them) go: to
  asyncio's logger, which main.py writes to log.txt, and nowhere without that file. Driven
  by hand, since whether a real restore leaves any depends on timing."""
  monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
  checkpointing._quiet_failed_restore_leftovers(tmp_path)
  asyncio_logger = logging.getLogger("asyncio")

  def leftover():
    try:
      raise RuntimeError("Event loop is closed")
    except RuntimeError as error:
      sys.unraisablehook(types.SimpleNamespace(
          exc_type=RuntimeError, exc_value=error, exc_traceback=error.__traceback__,
          err_msg="Exception ignored in: <coroutine>", object=None))

  leftover()  # no log file: dropped
  assert capsys.readouterr().err == ""
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  asyncio_logger.addHandler(handler)
  try:
    leftover()
  finally:
    asyncio_logger.removeHandler(handler)
  (record,) = records
  assert "Event loop is closed" in logging.Formatter().format(record)
  assert capsys.readouterr().err == ""
